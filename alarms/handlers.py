"""Operator commands as a table of handlers: one small function per command.

`HANDLERS` maps each command model (alarms/commands.py) to its `CommandSpec`: the
handler and the permission it needs. A handler gets the service's state (`Desk`), the
command, the `Caller` and the `Batch` to fill; it changes alarm or playbook state, adds
transitions, log rows and events, and returns the details of its answer — or raises
CommandError / StepError, whose text goes back to the operator. The service checks the
permission, runs the handler under its lock, logs the command and runs the batch through
the stages (alarms/stages.py). Select and operate (select-before-operate) write to a PLC
outside the lock and have their own flow (alarms/control.py).

Who sent a command is the `Caller`. Today that is the operator the payload names, allowed
by `alarms.operators`; an identity learned from the transport (the broker account, a
client certificate) and roles per permission replace it without touching a handler.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from alarms import commands as cmds
from alarms import entries, payloads
from alarms.batch import Batch
from alarms.commands import Caller
from alarms.control import control_command
from alarms.engine import AlarmEngine, CommandError
from alarms.instances import PlaybookInstance, StepError
from alarms.model import FieldReading
from alarms.settings import StationInfo
from stationd.signals import BY_NAME


class Desk(Protocol):
    """The alarm state a handler works on (alarms.service.AlarmService fits)."""

    engine: AlarmEngine
    instances: MutableMapping[str, PlaybookInstance]

    @property
    def stations(self) -> Mapping[str, StationInfo]: ...


Handler = Callable[[Desk, Any, Caller, Batch], dict[str, Any]]
ControlHandler = Callable[[Any, Any, Caller, float], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    #: what the command does to the site, for deciding who may send it
    permission: str
    #: runs under the service's lock; None for the control flow below
    handle: Handler | None = None
    #: select / operate: its own flow around the write (alarms/control.py)
    control: ControlHandler | None = None


def ack(desk: Desk, c: cmds.Ack, caller: Caller, batch: Batch) -> dict[str, Any]:
    alarm_id = c.alarm_id
    if not alarm_id:
        rec = desk.engine.by_incident(c.incident_id or "")
        if rec is None:
            raise CommandError(f"incident {c.incident_id!r} is not open (事件不存在)")
        alarm_id = rec.alarm_id
    batch.transitions.append(desk.engine.ack(alarm_id, caller.operator, batch.now, c.reason))
    return {}


def shelve(desk: Desk, c: cmds.Shelve, caller: Caller, batch: Batch) -> dict[str, Any]:
    batch.transitions += desk.engine.shelve(
        c.alarm_id, c.minutes, caller.operator, batch.now, c.reason
    )
    return {}


def unshelve(desk: Desk, c: cmds.Unshelve, caller: Caller, batch: Batch) -> dict[str, Any]:
    batch.transitions.append(desk.engine.unshelve(c.alarm_id, caller.operator, batch.now, c.reason))
    return {}


def step(desk: Desk, c: cmds.StepDone | cmds.StepSkip, caller: Caller, batch: Batch) -> dict:
    inst = desk.instances.get(c.incident)
    if inst is None:
        raise StepError(f"incident {c.incident!r} has no open playbook (无此预案实例)")
    status = "done" if isinstance(c, cmds.StepDone) else "skipped"
    reason = c.reason if isinstance(c, cmds.StepSkip) else c.note
    st = inst.mark(c.step, status, caller.operator, batch.now, reason)
    batch.changed.add(inst.incident_id)
    batch.entries.append(entries.step(batch.now, inst, st, status, caller.operator, reason))
    batch.events.append(
        payloads.step_event(batch.now, inst, st.id, status, caller.operator, reason)
    )
    return {"incident_id": inst.incident_id, "step": st.id, "status": status}


def note(desk: Desk, c: cmds.Note, caller: Caller, batch: Batch) -> dict[str, Any]:
    batch.entries.append(entries.note(batch.now, caller.operator, c.text, c.station, c.incident))
    batch.events.append(
        payloads.note_event(batch.now, caller.operator, c.text, c.incident, c.station)
    )
    return {}


def field_reading(
    desk: Desk, c: cmds.FieldReadingCmd, caller: Caller, batch: Batch
) -> dict[str, Any]:
    """A manual reading taken on site (plan 6.3: more field readings while blind),
    checked against the station list and the signal's physical range."""
    if desk.stations and c.station not in desk.stations:
        raise CommandError(f"unknown station {c.station!r} (站点不存在)")
    spec = BY_NAME.get(c.signal)
    if spec is None:
        raise CommandError(f"unknown signal {c.signal!r}; use a canonical signal name")
    if not (math.isfinite(c.value) and spec.lo <= c.value <= spec.hi):
        raise CommandError(
            f"{c.signal} = {c.value} is outside its physical range [{spec.lo}, {spec.hi}] {spec.unit}"
        )
    now = batch.now
    batch.field_readings.append(
        FieldReading(now, c.station, c.signal, c.value, caller.operator, c.note)
    )
    batch.entries.append(
        entries.field_reading(now, caller.operator, c.station, spec, c.value, c.note)
    )
    batch.events.append(
        payloads.field_reading_event(now, caller.operator, c.station, c.signal, c.value)
    )
    return {}


HANDLERS: dict[type, CommandSpec] = {
    cmds.Ack: CommandSpec("acknowledge", ack),
    cmds.Shelve: CommandSpec("shelve", shelve),
    cmds.Unshelve: CommandSpec("shelve", unshelve),
    cmds.StepDone: CommandSpec("report_step", step),
    cmds.StepSkip: CommandSpec("report_step", step),
    cmds.Note: CommandSpec("note", note),
    cmds.FieldReadingCmd: CommandSpec("field_reading", field_reading),
    cmds.Select: CommandSpec("control", control=control_command),
    cmds.Operate: CommandSpec("control", control=control_command),
}
