"""The alarm service as a pipeline of small stages, in the manner of Alertmanager's notify.

Every tick and every operator command becomes one `Batch` (alarms/batch.py) that runs
through the same stages, in this order:

| stage | does |
|---|---|
| engine | ISA-18.2 states from the findings, with suppression by design (alarms/engine.py, alarms/suppression.py) — or a command handler's transitions (alarms/handlers.py) |
| `PlaybookStage` | starts a playbook per new incident, closes it with the incident; expires forgotten steps; escalates missed deadlines |
| `PagingStage` | what the pagers must hear of it: trigger, acknowledge, resolve, escalate (alarms/pager/stage.py) |
| `StoreStage` | alarm records, changed playbooks and the pages, in one SQLite transaction |
| `LogStage` | the dispatch log rows, then the log hooks (the historian) |
| `MqttStage` | retained alarm and playbook documents, the events, the status |
| `RetireStage` | forgets playbooks that are finished and whose incident closed |
| `DeliveryStage` | hands the recorded pages to the pagers, once (alarms/pager/stage.py) |
| `HookStage` | transitions and field readings to their hooks (the historian) |

Each stage is a small class with `async run(batch)`, built with exactly what it needs,
so each can be tested alone. The service composes them (alarms/service.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any, Protocol

from alarms import entries, payloads
from alarms.batch import Batch
from alarms.dispatch_log import DispatchLog, LogEntry
from alarms.engine import AlarmEngine
from alarms.hooks import Hook, call_hooks
from alarms.instances import PlaybookInstance
from alarms.model import ESCALATED, AlarmState
from alarms.mqtt import MqttBridge
from alarms.playbooks import PlaybookLibrary
from alarms.settings import StationInfo
from alarms.store import StateStore

log = logging.getLogger(__name__)

Stations = Callable[[], Mapping[str, StationInfo]]
Playbooks = Callable[[], PlaybookLibrary]


class Stage(Protocol):
    async def run(self, batch: Batch) -> None: ...


class Pipeline:
    """Stages in order; a batch goes through all of them."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = list(stages)

    async def run(self, batch: Batch) -> Batch:
        for stage in self.stages:
            await stage.run(batch)
        return batch


def station_name(stations: Mapping[str, StationInfo], station: str, fallback: str) -> str:
    info = stations.get(station)
    return info.name if info is not None and info.name else fallback


class PlaybookStage:
    """Playbook instances follow their incidents; missed deadlines escalate (plan steps)."""

    def __init__(
        self,
        engine: AlarmEngine,
        instances: MutableMapping[str, PlaybookInstance],
        playbooks: Playbooks,
    ) -> None:
        self.engine = engine
        self.instances = instances
        self.playbooks = playbooks

    async def run(self, batch: Batch) -> None:
        lib = self.playbooks()
        now = batch.now
        out = []
        for t in batch.transitions:
            pb = lib.for_kind(t.kind)
            t = dataclasses.replace(t, playbook_id=pb.id if pb else "")
            out.append(t)
            opened = t.cause == "activate" and t.from_state is not AlarmState.RTN_UNACK
            if opened and pb is not None and t.incident_id not in self.instances:
                self.instances[t.incident_id] = PlaybookInstance.start(
                    pb, t.incident_id, t.alarm_id, t.kind, t.subject, t.station, t.severity, now
                )
                batch.changed.add(t.incident_id)
            rec = self.engine.records[t.alarm_id]
            inst = self.instances.get(t.incident_id)
            if inst is not None and rec.incident_id != t.incident_id and inst.incident_open:
                inst.close_incident(now)
                batch.changed.add(t.incident_id)
        batch.transitions = out
        for inst in list(self.instances.values()):
            self._deadlines(inst, batch)

    def _deadlines(self, inst: PlaybookInstance, batch: Batch) -> None:
        now = batch.now
        for step in inst.expire(now):
            batch.changed.add(inst.incident_id)
            batch.entries.append(entries.step_expired(now, inst, step))
        for step in inst.overdue(now):
            # a missed deadline raises the severity one step and tells the pager, once a step
            inst.severity = ESCALATED[inst.severity]
            batch.changed.add(inst.incident_id)
            reason = f"step {step.id} overdue (deadline {step.deadline_min} min)"
            et = self.engine.escalate(inst.incident_id, inst.severity, now, reason)
            if et is not None:
                et = dataclasses.replace(et, playbook_id=inst.playbook_id)
                batch.transitions.append(et)
                batch.escalations.append((et, step.id))
            batch.entries.append(entries.escalation(now, inst, step))
            batch.events.append(payloads.escalation_event(now, inst, step.id))


class StoreStage:
    """Alarm records, changed playbooks and new pages on disk, in one transaction, so a
    crash leaves the old state or the new one and never a page without its cause."""

    def __init__(
        self,
        store: StateStore,
        engine: AlarmEngine,
        instances: Mapping[str, PlaybookInstance],
    ) -> None:
        self.store = store
        self.engine = engine
        self.instances = instances

    async def run(self, batch: Batch) -> None:
        live = [i for i in sorted(batch.changed) if i in self.instances]
        batch.closed = {i for i in live if self.instances[i].status == "closed"}
        new_keys = await asyncio.to_thread(
            self.store.save,
            self.engine.snapshot(),
            [(self.instances[i].to_dict(), i in batch.closed) for i in live],
            [(k, p.to_dict()) for k, p in batch.pages],
        )
        batch.new_pages = bool(new_keys)


class LogStage:
    """The dispatch log: the command first, the transitions, then the rest; then the log
    hooks (the daemon copies commands, steps, readings and controls to the historian)."""

    def __init__(self, dlog: DispatchLog, hooks: Sequence[Hook], stations: Stations) -> None:
        self.log = dlog
        self.hooks = hooks
        self.stations = stations

    async def run(self, batch: Batch) -> None:
        known = self.stations()
        rows = list(batch.lead)
        rows += [
            entries.transition(t, station_name(known, t.station, t.subject))
            for t in batch.transitions
            if t.cause != "escalate"  # an escalation has its own row (PlaybookStage)
        ]
        rows += batch.entries
        await self.append(rows)

    async def append(self, rows: list[LogEntry]) -> None:
        await asyncio.to_thread(self.log.append, rows)
        for e in rows:
            await call_hooks(self.hooks, e)


class MqttStage:
    """The dispatch room's view: retained alarm and playbook documents (emptied when
    normal or closed), every event, and the status when the count of active alarms moved."""

    def __init__(
        self,
        bridge: MqttBridge,
        site: str,
        site_name: str,
        engine: AlarmEngine,
        instances: Mapping[str, PlaybookInstance],
        playbooks: Playbooks,
        stations: Stations,
    ) -> None:
        self.bridge = bridge
        self.site = site
        self.site_name = site_name
        self.engine = engine
        self.instances = instances
        self.playbooks = playbooks
        self.stations = stations
        self._last_active = -1

    def alarm_document(self, alarm_id: str) -> dict[str, Any]:
        rec = self.engine.records[alarm_id]
        pb = self.playbooks().for_kind(rec.kind)
        info = self.stations().get(rec.station)
        return payloads.alarm(self.site, rec, info.name if info else "", pb.id if pb else "")

    async def run(self, batch: Batch) -> None:
        topics = self.bridge.topics
        msgs: list[tuple[str, dict[str, Any] | None, bool]] = []
        for t in batch.transitions:
            rec = self.engine.records[t.alarm_id]
            doc = None if rec.state is AlarmState.NORMAL else self.alarm_document(t.alarm_id)
            msgs.append((topics.alarm(rec.subject, rec.kind), doc, True))
            msgs.append((topics.events, payloads.event(self.site, payloads.transition_event(t)), False))  # fmt: skip
        for e in batch.events:
            msgs.append((topics.events, payloads.event(self.site, e), False))
        for iid in sorted(batch.changed):
            inst = self.instances.get(iid)
            if inst is not None:
                doc = None if inst.status == "closed" else payloads.playbook(self.site, inst)
                msgs.append((topics.playbook(iid), doc, True))
        await self.bridge.publish(msgs)
        await self.publish_status()

    async def publish_status(self) -> None:
        active = self.engine.active()
        if len(active) == self._last_active:
            return
        self._last_active = len(active)
        unacked = sum(1 for r in active if r.state in (AlarmState.UNACK, AlarmState.RTN_UNACK))
        doc = self.bridge.status_payload(
            "online", site_name=self.site_name, active_alarms=len(active), unacked_alarms=unacked
        )
        await self.bridge.publish([(self.bridge.topics.status, doc, True)])


class RetireStage:
    """Forget playbook instances that are finished and whose incident closed (saved and
    published as closed by the stages before)."""

    def __init__(self, instances: MutableMapping[str, PlaybookInstance]) -> None:
        self.instances = instances

    async def run(self, batch: Batch) -> None:
        for i in batch.closed:
            self.instances.pop(i, None)


class HookStage:
    """Transitions and manual field readings to their hooks (the daemon's historian)."""

    def __init__(self, transition_hooks: Sequence[Hook], reading_hooks: Sequence[Hook]) -> None:
        self.transition_hooks = transition_hooks
        self.reading_hooks = reading_hooks

    async def run(self, batch: Batch) -> None:
        for t in batch.transitions:
            await call_hooks(self.transition_hooks, t)
        for r in batch.field_readings:
            await call_hooks(self.reading_hooks, r)
