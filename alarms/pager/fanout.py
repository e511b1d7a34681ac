"""The pager fan-out: hand every pager event to each configured adapter.

`Pager.notify()` only enqueues (each adapter has its own bounded outbox and worker), so
one pager being down or slow never delays the alarm engine or the other pagers. The
lead's wiring: `pager = Pager.from_config(config.pager)`, `await pager.start()`, pass
`pager.notify` to the alarm engine as its pager hook, `await pager.stop()` at shutdown.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol

from alarms.model import PagerEvent
from alarms.pager.alertmanager import AlertmanagerAdapter
from alarms.pager.config import LinksConfig, PagerConfig
from alarms.pager.delivery import DeliveryCounters, HttpSink
from alarms.pager.pagerduty import PagerDutyAdapter
from alarms.pager.webhook import WebhookAdapter

log = logging.getLogger(__name__)


class PagerAdapter(Protocol):
    name: str

    @property
    def sinks(self) -> tuple[HttpSink, ...]: ...

    def notify(self, event: PagerEvent) -> None: ...

    async def start(self) -> None: ...

    async def stop(self, deadline_s: float) -> None: ...


class Pager:
    """Owns the adapters; start them, fan events out, stop them draining."""

    def __init__(
        self,
        adapters: Sequence[PagerAdapter],
        *,
        drain_timeout_s: float = 5.0,
        links: LinksConfig | None = None,
    ) -> None:
        names = [a.name for a in adapters]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate pager adapter names: {names}")
        self.adapters: tuple[PagerAdapter, ...] = tuple(adapters)
        self.drain_timeout_s = drain_timeout_s
        self.links = links or LinksConfig()
        self.render_errors = 0  # events an adapter could not even turn into a request
        self._started = False
        self._stopped = False

    @classmethod
    def from_config(
        cls,
        section: PagerConfig | Mapping[str, Any] | None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> Pager:
        """Build from the `pager:` section; secrets are read now, so a missing key fails
        at start-up with the variable or file named, not at the first alarm."""
        if section is None:
            config = PagerConfig()
        elif isinstance(section, PagerConfig):
            config = section
        else:
            config = PagerConfig.model_validate(dict(section))
        adapters: list[PagerAdapter] = []
        if config.alertmanager is not None:
            adapters.append(AlertmanagerAdapter(config.alertmanager))
        if config.pagerduty is not None:
            key = config.pagerduty.routing_key(environ)
            adapters.append(PagerDutyAdapter(config.pagerduty, key))
        if config.webhook is not None:
            adapters.append(WebhookAdapter(config.webhook, config.webhook.headers(environ)))
        return cls(adapters, drain_timeout_s=config.drain_timeout_s, links=config.links)

    def with_links(self, event: PagerEvent) -> PagerEvent:
        """The event with its runbook and console links filled in from `pager.links`."""
        lk = self.links
        if not (lk.runbook_url or lk.console_url) or event.runbook_url or event.console_url:
            return event
        values = {
            "site": event.site,
            "station": event.station,
            "subject": event.subject,
            "kind": event.kind,
            "incident": event.incident_id,
            "alarm_id": event.alarm_id,
            "playbook": event.playbook_id,
            "plan_section": event.routing.get("plan_section", ""),
        }
        return dataclasses.replace(
            event,
            runbook_url=lk.render(lk.runbook_url, values),
            console_url=lk.render(lk.console_url, values),
        )

    def notify(self, event: PagerEvent) -> None:
        """Queue the event on every adapter; never blocks, never raises."""
        event = self.with_links(event)
        for adapter in self.adapters:
            try:
                adapter.notify(event)
            except Exception:
                # One adapter's bad rendering must not keep the event from the others.
                self.render_errors += 1
                log.exception(
                    "pager %s: could not queue %s incident=%s",
                    adapter.name,
                    event.action,
                    event.incident_id,
                )

    def resend(self) -> int:
        """Re-send active alerts to Alertmanager now (it also does so every
        resend_interval_s on its own); returns how many alerts were queued."""
        return sum(a.resend() for a in self.adapters if isinstance(a, AlertmanagerAdapter))

    def restore(self, events: Iterable[PagerEvent]) -> int:
        """After a restart, hand over the incidents still active (their last event).

        PagerDuty and webhooks keep the incident on their side; Alertmanager forgets an
        alert that is not re-sent, so its adapter adopts them and resumes re-sending.
        Returns how many events were adopted.
        """
        n = 0
        for event in map(self.with_links, events):
            for adapter in self.adapters:
                if isinstance(adapter, AlertmanagerAdapter) and event.action != "resolve":
                    adapter.restore(event)
                    n += 1
        return n

    def counters(self) -> dict[str, DeliveryCounters]:
        """Per outbox: "alertmanager" (or "alertmanager@host:port" per cluster peer),
        "pagerduty", "webhook"."""
        return {sink.name: sink.counters for a in self.adapters for sink in a.sinks}

    def queued(self) -> dict[str, int]:
        return {sink.name: sink.queued for a in self.adapters for sink in a.sinks}

    async def start(self) -> None:
        """Open the adapters' HTTP sessions and start their workers (once; a stopped
        Pager is not restarted: build a new one)."""
        if self._started:
            return
        self._started = True
        started: list[PagerAdapter] = []
        try:
            for adapter in self.adapters:
                await adapter.start()
                started.append(adapter)
        except BaseException:
            await asyncio.gather(*(a.stop(0) for a in reversed(started)), return_exceptions=True)
            raise
        log.info("pager started: %s", ", ".join(a.name for a in self.adapters) or "no adapters")

    async def stop(self, deadline_s: float | None = None) -> None:
        """Drain every adapter in parallel within one deadline, then close them."""
        if self._stopped:
            return
        self._stopped = True
        deadline = self.drain_timeout_s if deadline_s is None else deadline_s
        results = await asyncio.gather(
            *(a.stop(deadline) for a in self.adapters), return_exceptions=True
        )
        for adapter, result in zip(self.adapters, results, strict=True):
            if isinstance(result, BaseException):
                log.error("pager %s: error while stopping: %r", adapter.name, result)
        for name, c in self.counters().items():
            log.info(
                "pager %s stopped: sent=%d failed=%d dropped=%d retried=%d",
                name,
                c.sent,
                c.failed,
                c.dropped,
                c.retried,
            )

    async def __aenter__(self) -> Pager:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
