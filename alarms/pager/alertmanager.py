"""Pager adapter for Prometheus Alertmanager (API v2, `POST /api/v2/alerts`).

Alertmanager identifies an alert by the fingerprint of its labels, so the labels carry
only what is the same on every replica daemon (finding kind, site, station, subject,
severity, incident id, and the routing labels crews are dispatched by: branch, feeder,
heat source, estate, service centre, playbook, plan section — all from the config) and
two replicas fold into one alert. The playbook's runbook link is the `runbook_url`
annotation, the console or dashboard the alert's `generatorURL`. An ack in stationd
silences the incident (alarms/pager_silences.py) until it clears. Like Prometheus, we send an
explicit `endsAt` a few re-send periods ahead and re-send active alerts every period:
if this daemon dies, Alertmanager resolves its alerts on its own instead of paging
forever; a resolve is the same alert with `endsAt` set to the resolve time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from alarms.model import PagerEvent
from alarms.pager.config import AlertmanagerConfig
from alarms.pager.delivery import HttpSink, RetryPolicy, cancel_and_wait, rfc3339
from alarms.pager.resolved import ResolvedIncidents
from alarms.pager.silences import Silences

log = logging.getLogger(__name__)

#: active alerts are given an end this many re-send periods ahead (Prometheus uses 4)
ENDS_AT_PERIODS = 4
#: Alertmanager takes a list of alerts per request; one request per this many
BATCH_MAX = 64


def alert_labels(event: PagerEvent) -> dict[str, str]:
    """The identity of the alert: nothing here may differ between replica daemons."""
    labels = {
        "alertname": event.kind,
        "site": event.site,
        "station": event.station,
        "subject": event.subject,
        "severity": event.severity,
        "incident": event.incident_id,
        "playbook": event.playbook_id,
        **event.routing,
    }
    # An empty label is the same as no label to Alertmanager; leave it out (fleet alarms
    # have no station).
    return {k: v for k, v in labels.items() if v}


def alert_annotations(event: PagerEvent) -> dict[str, str]:
    ann = {
        "summary": event.summary_zh or event.summary_en,
        "summary_zh": event.summary_zh,
        "summary_en": event.summary_en,
        "first_steps": "\n".join(event.first_steps),
        "playbook": event.playbook_id,
        "alarm_id": event.alarm_id,
        "station_name": event.station_name,
        "stations": ",".join(event.stations),
        "runbook_url": event.runbook_url,
    }
    if event.action == "acknowledge" and event.operator:
        ann["acknowledged_by"] = event.operator
    if event.action == "escalate" and event.step_id:
        ann["escalated_step"] = event.step_id
    return {k: v for k, v in ann.items() if v}


@dataclass(slots=True)
class _Active:
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    generator_url: str = ""


class AlertmanagerAdapter:
    """Keeps the incidents that are active and mirrors them into Alertmanager.

    With several URLs (the peers of an Alertmanager cluster, which expects every client
    to send to every peer, as Prometheus does) each peer gets its own outbox, so one
    peer being down delays nothing on the others.
    """

    name = "alertmanager"

    def __init__(self, config: AlertmanagerConfig, *, batch_max: int = BATCH_MAX) -> None:
        self.config = config
        urls = config.urls
        retry = RetryPolicy(config.max_attempts, config.initial_backoff_s, config.max_backoff_s)
        self.sinks: tuple[HttpSink, ...] = tuple(
            HttpSink(
                self.name if len(urls) == 1 else f"{self.name}@{urlsplit(url).netloc}",
                f"{url}/api/v2/alerts",
                queue_size=config.queue_size,
                timeout_s=config.timeout_s,
                retry=retry,
                batch_max=batch_max,
                encode=list,  # the API takes an array of alerts, even of one
            )
            for url in urls
        )
        self._active: dict[str, _Active] = {}
        self._resolved = ResolvedIncidents()
        self._resend_task: asyncio.Task[None] | None = None
        self.silences: Silences | None = (
            Silences(urls, ttl_s=config.ack_silence_s, timeout_s=config.timeout_s, retry=retry)
            if config.silence_on_ack
            else None
        )

    @property
    def active_incidents(self) -> list[str]:
        return list(self._active)

    def notify(self, event: PagerEvent) -> None:
        now = time.time()
        iid = event.incident_id
        if event.action == "resolve":
            old = self._active.pop(iid, None)
            if old is None:
                # Not known here (e.g. raised before a restart): the labels rebuild the same
                # fingerprint, which is all Alertmanager needs to resolve it.
                old = _Active(
                    alert_labels(event),
                    alert_annotations(event),
                    event.starts_at,
                    event.console_url,
                )
            self._resolved.add(iid)
            ends = event.ends_at if event.ends_at is not None else now
            self._offer(old, ends, iid)
            if self.silences is not None:
                # found by its matcher, so a silence made before a restart goes too
                self.silences.cleared(iid)
            return
        if event.action != "trigger" and iid in self._resolved:
            log.info("pager alertmanager: %s for resolved incident=%s not sent", event.action, iid)
            return
        new = _Active(
            alert_labels(event), alert_annotations(event), event.starts_at, event.console_url
        )
        old = self._active.get(iid)
        if old is not None:
            # Earlier notes (who acknowledged, which step escalated) stay on the alert.
            new.annotations = {**old.annotations, **new.annotations}
            if event.action == "acknowledge":
                # Only a trigger or an escalation changes the severity (the identity).
                new.labels = old.labels
            elif old.labels != new.labels:
                # An escalation raised the severity: a new label set is a new alert, so end
                # the old one or Alertmanager would page both until they time out.
                self._offer(old, now, iid)
        self._resolved.discard(iid)
        self._active[iid] = new
        self._offer(new, now + self._ttl(), iid)
        if event.action == "acknowledge" and self.silences is not None:
            # a dispatcher has taken it: no more re-notification until it clears
            self.silences.acknowledged(iid, event.operator)

    def restore(self, event: PagerEvent) -> None:
        """Adopt an incident that is still active after a daemon restart, so it keeps
        being re-sent (else Alertmanager would let it time out while the alarm stands);
        an acknowledged one keeps (or gets back) its silence."""
        if event.action != "resolve":
            self.notify(event)
            if event.details.get("state") == "acked" and self.silences is not None:
                self.silences.acknowledged(event.incident_id, event.operator)

    def resend(self) -> int:
        """Re-post every active alert with a fresh `endsAt`; returns how many were queued.

        A peer whose outbox is still busy is skipped (it is slow or down): the queued
        items already carry the alerts, and piling re-sends on them would only cause drops.
        """
        if self.silences is not None:
            self.silences.renew()
        sinks = [s for s in self.sinks if s.idle]
        if not sinks or not self._active:
            return 0
        ends = time.time() + self._ttl()
        for iid, alert in self._active.items():
            self._offer(alert, ends, iid, sinks)
        return len(self._active)

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()
        if self.silences is not None:
            await self.silences.start()
        if self._resend_task is None:
            self._resend_task = asyncio.create_task(
                self._resend_loop(), name="pager-alertmanager-resend"
            )

    async def stop(self, deadline_s: float) -> None:
        if self._resend_task is not None:
            await cancel_and_wait(self._resend_task)
            self._resend_task = None
        await asyncio.gather(
            *(sink.stop(deadline_s) for sink in self.sinks),
            *([self.silences.stop(deadline_s)] if self.silences is not None else []),
        )

    def _ttl(self) -> float:
        return ENDS_AT_PERIODS * self.config.resend_interval_s

    def _offer(
        self, alert: _Active, ends_at: float, iid: str, sinks: Sequence[HttpSink] | None = None
    ) -> None:
        body: dict[str, Any] = {
            "labels": alert.labels,
            "annotations": alert.annotations,
            "startsAt": rfc3339(alert.starts_at),
            # Alertmanager refuses an end before the start (a clock step, a late resolve).
            "endsAt": rfc3339(max(ends_at, alert.starts_at)),
        }
        if alert.generator_url:
            body["generatorURL"] = alert.generator_url
        for sink in self.sinks if sinks is None else sinks:
            sink.offer(body, iid)

    async def _resend_loop(self) -> None:
        # Deadlines from the loop clock, so the period does not drift by the work done.
        loop = asyncio.get_running_loop()
        interval = self.config.resend_interval_s
        deadline = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            # After a stall, skip the missed periods instead of re-sending in a burst.
            deadline = max(deadline + interval, loop.time() + interval / 2)
            n = self.resend()
            log.debug("pager alertmanager: re-sent %d active alert(s)", n)
