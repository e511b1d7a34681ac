"""The alarm service's paging stages: what the pagers must hear, and handing it over once.

`PagingStage` turns a batch's transitions into pager events — `trigger` when an alarm
raises, `acknowledge` on the first ack, `resolve` when a raised alarm clears (or is
shelved or suppressed), `escalate` when a playbook step misses its deadline — each with a
dedup key; the store stage records them in the same transaction as the state that caused
them. `DeliveryStage` then hands every recorded, undelivered page to the pager hooks
(`Pager.notify`, which only enqueues) and marks it delivered: a restart delivers what a
crash left and never pages twice.

The page store is the state store's `pages` table (alarms/store.py): a durable page
store that marks a page delivered only when a pager acknowledged it would replace
`DeliveryStage` and keep the same records.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from alarms.batch import Batch
from alarms.engine import AlarmEngine
from alarms.hooks import call_hooks
from alarms.model import AlarmState, PagerEvent, Transition
from alarms.pager.routing import page_summary, routing_labels
from alarms.playbooks import PlaybookLibrary
from alarms.settings import StationInfo
from alarms.store import StateStore

S = AlarmState


def pager_action(t: Transition) -> str:
    """The pager action a transition asks for ("" for none)."""
    was_raised = t.from_state in (S.UNACK, S.ACKED)
    if t.cause == "activate":
        return "trigger"
    if t.cause == "ack" and t.from_state is S.UNACK:
        return "acknowledge"
    if t.cause in ("clear", "suppress", "shelve") and was_raised and t.incident_id:
        return "resolve"
    return ""


class PagingStage:
    """Pager events for a batch's transitions and escalations, with their dedup keys."""

    def __init__(
        self,
        site: str,
        engine: AlarmEngine,
        playbooks: Callable[[], PlaybookLibrary],
        stations: Callable[[], Mapping[str, StationInfo]],
    ) -> None:
        self.site = site
        self.engine = engine
        self.playbooks = playbooks
        self.stations = stations

    async def run(self, batch: Batch) -> None:
        for t in batch.transitions:
            action = pager_action(t)
            if action:
                batch.pages.append(self.page(t, action))
        for t, step_id in batch.escalations:
            batch.pages.append(self.page(t, "escalate", step_id))

    def page(self, t: Transition, action: str, step_id: str = "") -> tuple[str, PagerEvent]:
        """(dedup key, event): the key names the incident, the action and the time, so a
        replayed batch records nothing twice."""
        rec = self.engine.records[t.alarm_id]
        pb = self.playbooks().for_kind(t.kind)
        info = self.stations().get(t.station)
        name = info.name if info else ""
        where_zh = (name or t.subject) or self.site
        subject = t.station or t.subject
        ev = PagerEvent(
            incident_id=t.incident_id,
            alarm_id=t.alarm_id,
            kind=t.kind,
            site=self.site,
            station=t.station,
            subject=t.subject,
            severity=t.severity,
            action=action,  # type: ignore[arg-type]
            # the station named once: the messages begin with its id and name
            summary_zh=page_summary(
                where_zh, pb.title.zh if pb else t.kind, t.message_zh, subject, name
            ),
            summary_en=page_summary(
                t.subject or self.site,
                pb.title.en if pb else t.kind,
                t.message_en,
                subject,
                name,
                ": ",
            ),
            first_steps=pb.first_steps() if pb else [],
            starts_at=rec.incident_onset,
            ends_at=t.time if action == "resolve" else None,
            playbook_id=pb.id if pb else "",
            station_name=info.name if info else "",
            stations=t.stations,
            value=t.value if math.isfinite(t.value) else 0.0,
            step_id=step_id,
            operator=t.operator,
            details={"cause": t.cause, "reason": t.reason, "state": str(t.to_state)},
            routing=routing_labels(
                t.station, t.stations, self.stations(), pb.plan_section if pb else ""
            ),
        )
        return f"{t.incident_id}/{action}/{t.time:.3f}/{step_id}", ev

    def active_pages(self) -> list[PagerEvent]:
        """The trigger event of every incident still raised (unack or acked), for handing
        to the pagers after a restart: Alertmanager forgets alerts that are not re-sent.
        Nothing is paged by this."""
        out = []
        for rec in self.engine.active():
            if rec.state not in (S.UNACK, S.ACKED) or not rec.incident_id:
                continue
            t = Transition(
                time=rec.incident_onset,
                alarm_id=rec.alarm_id,
                incident_id=rec.incident_id,
                from_state=S.NORMAL,
                to_state=rec.state,
                cause="activate",
                kind=rec.kind,
                subject=rec.subject,
                station=rec.station,
                severity=rec.severity,
                priority=rec.priority,
                value=rec.value,
                message_zh=rec.message_zh,
                message_en=rec.message_en,
                stations=rec.stations,
                operator=rec.acked_by,  # an acked incident keeps its pager silence
            )
            out.append(self.page(t, "trigger")[1])
        return out


class DeliveryStage:
    """Recorded pages to the pager hooks, each once; counted in `delivered`."""

    def __init__(self, store: StateStore, hooks: Sequence[Callable[[PagerEvent], Any]]) -> None:
        self.store = store
        self.hooks = hooks
        self.delivered = 0

    async def run(self, batch: Batch) -> None:
        if batch.new_pages:
            await self.deliver()

    async def deliver(self) -> None:
        """Every undelivered page, in the order recorded (also at start: what a crash
        between recording and handing over left)."""
        pending = await asyncio.to_thread(self.store.undelivered_pages)
        if not pending:
            return
        for _key, data in pending:
            data["stations"] = tuple(data.get("stations", ()))
            ev = PagerEvent(**data)
            await call_hooks(self.hooks, ev)
            self.delivered += 1
        # the pager adapters own retries; handing over is what "paged" means here
        await asyncio.to_thread(self.store.mark_delivered, [k for k, _ in pending])
