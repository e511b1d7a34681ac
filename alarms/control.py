"""Select-before-operate as a command flow: the only path that writes to a PLC.

`select` answers exactly what operate would write; `operate` (the same operator, naming
the selection, within its window) writes it, reads it back from the polled data and,
once confirmed, marks the playbook step done. Every stage — selected, operated,
confirmed, unconfirmed, failed, refused — is one dispatch-log row and one `control`
event, run through the service's stages like any other batch. The write and the
read-back run outside the service's lock: the ticks that carry the read-back value must
keep flowing meanwhile. The primitives (open selections, the write, the read-back) are
alarms/control_desk.py; the conditions a control must meet are listed there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from alarms import commands as cmds
from alarms import entries, payloads
from alarms.batch import Batch
from alarms.commands import Caller
from alarms.control_desk import (
    ControlDesk,
    ControlRefused,
    ControlWriter,
    FrameView,
    Outcome,
    Selection,
)
from alarms.engine import CommandError
from alarms.instances import PlaybookInstance, StepError
from alarms.settings import ControlSettings, StationInfo

__all__ = [
    "ControlDesk",
    "ControlRefused",
    "ControlSettings",
    "ControlWriter",
    "FrameView",
    "Outcome",
    "Selection",
    "control_command",
]


class ControlHost(Protocol):
    """What the control flow needs of the alarm service (AlarmService fits)."""

    lock: asyncio.Lock
    control: ControlDesk
    clock: Callable[[], float]

    @property
    def instances(self) -> Mapping[str, PlaybookInstance]: ...

    @property
    def stations(self) -> Mapping[str, StationInfo]: ...

    async def run_batch(self, batch: Batch) -> Batch: ...


async def control_command(
    host: ControlHost, c: cmds.Select | cmds.Operate, caller: Caller, now: float
) -> dict[str, Any]:
    """Run a select or an operate; always returns a stationd.cmd_result/1 document."""

    def answer(ok: bool, error: str | None, detail: dict[str, Any]) -> dict[str, Any]:
        return cmds.result(c.request_id, c.command, caller.operator, ok, now, error, detail)

    async with host.lock:
        inst = host.instances.get(c.incident)
        try:
            if inst is None:
                raise StepError(f"incident {c.incident!r} has no open playbook (无此预案实例)")
            if isinstance(c, cmds.Select):
                info = host.stations.get(inst.station)
                sel = host.control.select(
                    inst, c.step, caller.operator, now, info.name if info else ""
                )
            else:
                sel = host.control.take(c.select_id, c.incident, c.step, caller.operator, now)
        except (CommandError, StepError) as e:
            await _refused(host, c, caller, now, inst, str(e))
            return answer(False, str(e), {})
        action = "selected" if isinstance(c, cmds.Select) else "operated"
        await _record(host, sel, action, c.request_id, now, inst)
    if isinstance(c, cmds.Select):
        return answer(True, None, {**sel.describe(), "window_s": host.control.settings.window_s})

    outcome = await host.control.execute(sel)
    done_at = host.clock()
    async with host.lock:
        inst = host.instances.get(sel.incident_id)
        await _record(
            host, sel, outcome.status, c.request_id, done_at, inst, outcome.error, outcome.readback
        )
        if outcome.confirmed and inst is not None:
            await _step_done(host, inst, sel, done_at)
    detail = {
        **sel.describe(),
        "status": outcome.status,
        "written": outcome.written,
        "confirmed": outcome.confirmed,
        "readback": outcome.readback,
    }
    if not outcome.confirmed:
        return answer(False, f"{outcome.status}: {outcome.error} (遥控未确认)", detail)
    return answer(True, None, detail)


async def _record(
    host: ControlHost,
    sel: Selection,
    action: str,
    request_id: str,
    now: float,
    inst: PlaybookInstance | None,
    detail: str = "",
    readback: float | None = None,
) -> None:
    """One dispatch-log row and one `control` event per stage of a control."""
    entry = entries.control(now, sel, action, request_id, inst, detail, readback)
    event = payloads.control_event(
        action, now, sel.incident_id, entry.alarm_id, sel.step, sel.station, sel.point,
        sel.value, sel.operator, sel.select_id, detail,
    )  # fmt: skip
    await host.run_batch(Batch(now, entries=[entry], events=[event]))


async def _refused(
    host: ControlHost,
    c: cmds.Select | cmds.Operate,
    caller: Caller,
    now: float,
    inst: PlaybookInstance | None,
    error: str,
) -> None:
    point, value = "", None
    if inst is not None:
        try:
            ctl = inst.step(c.step).control
        except StepError:
            ctl = None
        if ctl is not None:
            point, value = str(ctl["point"]), float(ctl["value"])
    select_id = c.select_id if isinstance(c, cmds.Operate) else ""
    entry = entries.control_refused(
        now, c.command, caller.operator, c.request_id, c.incident, c.step, inst, point, value,
        select_id, error,
    )  # fmt: skip
    event = payloads.control_event(
        "refused", now, c.incident, entry.alarm_id, c.step, entry.station, point, value,
        caller.operator, select_id, error,
    )  # fmt: skip
    await host.run_batch(Batch(now, entries=[entry], events=[event]))


async def _step_done(host: ControlHost, inst: PlaybookInstance, sel: Selection, now: float) -> None:
    """A confirmed control is the step done, by the operator who operated it."""
    st = inst.step(sel.step)
    if st.status != "pending":
        return
    note = f"遥控确认 / control confirmed: {sel.point} = {sel.value:g}"
    inst.mark(sel.step, "done", sel.operator, now, note)
    await host.run_batch(
        Batch(
            now,
            entries=[entries.step(now, inst, st, "done", sel.operator, note)],
            events=[payloads.step_event(now, inst, st.id, "done", sel.operator, note)],
            changed={inst.incident_id},
        )
    )
