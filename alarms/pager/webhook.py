"""Pager adapter for a plain JSON webhook: POST each pager event as UTF-8 JSON.

The body is the PagerEvent itself plus a `schema` version, an `id` (the incident id, the
receiver's dedup key) and RFC 3339 copies of the times; Chinese text is sent as is, not
as \\u escapes. `alarms/schemas/pager_webhook_v1.json` describes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from alarms.model import PagerEvent
from alarms.pager.config import WebhookConfig
from alarms.pager.delivery import HttpSink, RetryPolicy, rfc3339

SCHEMA = "stationd.pager.webhook/1"


_FIELDS = tuple(f.name for f in dataclasses.fields(PagerEvent))


def webhook_body(event: PagerEvent) -> dict[str, Any]:
    # The same keys as PagerEvent.to_dict(), built shallowly: asdict()'s deep copy was
    # 90 % of notify()'s cost. The containers are copied one level, which is all the
    # engine could mutate after handing the event over.
    body: dict[str, Any] = {"schema": SCHEMA, "id": event.incident_id}
    for name in _FIELDS:
        body[name] = getattr(event, name)
    body["first_steps"] = list(event.first_steps)
    body["stations"] = list(event.stations)
    body["details"] = dict(event.details)
    body["starts_at_rfc3339"] = rfc3339(event.starts_at)
    body["ends_at_rfc3339"] = None if event.ends_at is None else rfc3339(event.ends_at)
    return body


class WebhookAdapter:
    name = "webhook"

    def __init__(self, config: WebhookConfig, headers: Mapping[str, str] | None = None) -> None:
        self.config = config
        self._sink = HttpSink(
            self.name,
            config.url,
            headers=headers,
            queue_size=config.queue_size,
            timeout_s=config.timeout_s,
            retry=RetryPolicy(config.max_attempts, config.initial_backoff_s, config.max_backoff_s),
        )

    @property
    def sinks(self) -> tuple[HttpSink, ...]:
        return (self._sink,)

    def notify(self, event: PagerEvent) -> None:
        self._sink.offer(webhook_body(event), event.incident_id)

    async def start(self) -> None:
        await self._sink.start()

    async def stop(self, deadline_s: float) -> None:
        await self._sink.stop(deadline_s)
