"""Pager adapter for PagerDuty Events API v2 (`POST {url}/v2/enqueue`).

Each incident is one PagerDuty alert keyed by `dedup_key` = the incident id, which is
the same on both replica daemons, so their events fold into one alert. An escalation
(a playbook deadline missed) is a new `trigger` on the same key with the raised
severity: PagerDuty applies it to the open alert. Custom details carry the routing
facts Alertmanager gets as labels (branch, feeder, heat source, estate, service centre,
plan section) and the runbook and console links, which also go in `links`. The request
format follows the
published Events API v2 reference; `alarms/schemas/pagerduty_event_v2.json` is its
JSON Schema, used by the tests.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from alarms.model import PagerEvent
from alarms.pager.config import PagerDutyConfig
from alarms.pager.delivery import HttpSink, RateLimit, RetryPolicy, rfc3339
from alarms.pager.resolved import ResolvedIncidents

log = logging.getLogger(__name__)

#: stationd severity -> the four Events API v2 severities
PD_SEVERITY: dict[str, str] = {
    "critical": "critical",
    "major": "error",
    "minor": "warning",
    "notice": "info",
}
SUMMARY_MAX = 1024  # Events API v2 limit on payload.summary
DEDUP_KEY_MAX = 255  # Events API v2 limit on dedup_key


def _summary(event: PagerEvent) -> str:
    text = " / ".join(s for s in (event.summary_zh, event.summary_en) if s) or event.alarm_id
    if event.action == "escalate":
        text = f"【升级 escalated】{text}"
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


def pagerduty_event(event: PagerEvent, routing_key: str) -> dict[str, Any]:
    """Build the Events API v2 request body for one pager event."""
    if len(event.incident_id) > DEDUP_KEY_MAX:
        raise ValueError(f"incident id longer than {DEDUP_KEY_MAX} chars: {event.incident_id!r}")
    action = "trigger" if event.action in ("trigger", "escalate") else event.action
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": event.incident_id,
    }
    if action != "trigger":
        return body
    severity = PD_SEVERITY.get(event.severity)
    if severity is None:
        log.warning(
            "pager pagerduty: unknown severity %r on incident=%s, sent as error",
            event.severity,
            event.incident_id,
        )
        severity = "error"
    details: dict[str, Any] = {
        "alarm_id": event.alarm_id,
        "incident_id": event.incident_id,
        "site": event.site,
        "station": event.station,
        "station_name": event.station_name,
        "subject": event.subject,
        "stations": list(event.stations),
        "severity": event.severity,
        "value": event.value,
        "summary_zh": event.summary_zh,
        "summary_en": event.summary_en,
        "playbook_id": event.playbook_id,
        "first_steps": list(event.first_steps),
        # the same routing facts Alertmanager gets as labels, and the same links
        **event.routing,
    }
    if event.runbook_url:
        details["runbook_url"] = event.runbook_url
    if event.console_url:
        details["console_url"] = event.console_url
    if event.step_id:
        details["escalated_step"] = event.step_id
    if event.details:
        details["details"] = event.details
    body["payload"] = {
        "summary": _summary(event),
        # The affected system is the station (or branch/source for fleet alarms), never
        # this daemon's host: replicas must send identical events.
        "source": f"{event.site}/{event.station or event.subject}",
        "severity": severity,
        "timestamp": rfc3339(event.starts_at if event.action == "trigger" else time.time()),
        "component": event.station_name or event.station or event.subject,
        "group": event.site,
        "class": event.kind,
        "custom_details": details,
    }
    body["client"] = "stationd"
    links = [
        {"href": url, "text": text}
        for url, text in (
            (event.runbook_url, "预案 playbook"),
            (event.console_url, "调度台 console"),
        )
        if url
    ]
    if links:
        body["links"] = links
    if event.console_url:
        body["client_url"] = event.console_url
    return body


class PagerDutyAdapter:
    name = "pagerduty"

    def __init__(self, config: PagerDutyConfig, routing_key: str) -> None:
        self.config = config
        self._routing_key = routing_key
        self._resolved = ResolvedIncidents()
        self._sink = HttpSink(
            self.name,
            f"{config.url}/v2/enqueue",
            queue_size=config.queue_size,
            timeout_s=config.timeout_s,
            retry=RetryPolicy(config.max_attempts, config.initial_backoff_s, config.max_backoff_s),
            rate_limit=None if config.max_per_minute is None else RateLimit(config.max_per_minute),
        )

    @property
    def sinks(self) -> tuple[HttpSink, ...]:
        return (self._sink,)

    def notify(self, event: PagerEvent) -> None:
        iid = event.incident_id
        if event.action == "resolve":
            self._resolved.add(iid)
        elif event.action == "trigger":
            self._resolved.discard(iid)
        elif iid in self._resolved:
            # A trigger (escalation) on a resolved dedup key would open a new alert.
            log.info("pager pagerduty: %s for resolved incident=%s not sent", event.action, iid)
            return
        self._sink.offer(pagerduty_event(event, self._routing_key), iid)

    async def start(self) -> None:
        await self._sink.start()

    async def stop(self, deadline_s: float) -> None:
        await self._sink.stop(deadline_s)
