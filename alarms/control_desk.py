"""Select-before-operate primitives: open selections, the write and the read-back.

The plan (000 方案2 二.2) allows no equipment to be operated except on a dispatcher's
instruction, and DESIGN.md keeps control off by default. So a step's control action (say
7.1 "stop the circulation pump": `circ_pump_running = 0`) is written only when

1. the site enables it (`alarms: {control: {enabled: true}}`),
2. the incident's station allow-lists the point (`control: {allow: [...]}` in stations.yaml),
3. an operator `select`s the step and gets back exactly what will be written (station,
   point, value, current value), and
4. the same operator `operate`s that selection, naming its `select_id`, within the window.

The write goes through the daemon's writer (`Poller.write`, the station's own
connection); the value is then read back from the fleet frame on the following ticks
and the control is confirmed or reported failed. This module decides and writes
(`ControlDesk`); the command flow around it — logging every stage, publishing it,
marking the step done — is alarms/control.py.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from alarms.engine import CommandError
from alarms.instances import PlaybookInstance
from alarms.settings import ControlSettings
from stationd.signals import INDEX

#: the daemon's writer: `Poller.write(station_id, point, value)`
ControlWriter = Callable[[str, str, float], Awaitable[None]]
#: points a station allow-lists, looked up at each command (a config reload may change them)
AllowList = Callable[[str], frozenset[str]]


class FrameView(Protocol):
    """What control reads back from: stationd.frame.FleetFrame fits."""

    index: dict[str, int]

    @property
    def now(self) -> float: ...

    def latest(self) -> Any: ...


class ControlRefused(CommandError):
    """A select or operate that must not write; the text goes back to the operator."""


@dataclass(frozen=True, slots=True)
class Selection:
    select_id: str
    incident_id: str
    step: str
    operator: str
    station: str
    station_name: str
    point: str
    value: float
    current: float | None  # the point's value in the newest tick (None: not in the frame)
    selected_at: float
    expires_at: float

    def describe(self) -> dict[str, Any]:
        """The select answer: exactly what operate would write."""
        return {
            "select_id": self.select_id,
            "incident_id": self.incident_id,
            "step": self.step,
            "station": self.station,
            "station_name": self.station_name,
            "point": self.point,
            "value": self.value,
            "current": self.current,
            "selected_at": self.selected_at,
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened after operate: written? confirmed by the read-back?"""

    written: bool
    confirmed: bool
    readback: float | None
    error: str = ""

    @property
    def status(self) -> str:
        if not self.written:
            return "failed"
        return "confirmed" if self.confirmed else "unconfirmed"


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= max(1e-3, 1e-3 * abs(b))


class ControlDesk:
    """Open selections and the write path for one daemon."""

    def __init__(
        self,
        settings: ControlSettings | None = None,
        allow: Mapping[str, tuple[str, ...] | frozenset[str]] | AllowList | None = None,
    ) -> None:
        self.settings = settings or ControlSettings()
        if callable(allow):
            self.allowed: AllowList = allow
        else:
            table = {sid: frozenset(points) for sid, points in (allow or {}).items()}
            self.allowed = lambda sid: table.get(sid, frozenset())
        self.writer: ControlWriter | None = None
        self._frame: Callable[[], FrameView | None] = lambda: None
        self._open: dict[str, Selection] = {}

    def attach(
        self,
        writer: ControlWriter,
        frame: FrameView | Callable[[], FrameView] | None = None,
    ) -> None:
        """The write path, and the frame to read back from — or a function returning the
        daemon's current frame, which a config reload replaces."""
        self.writer = writer
        if frame is None or hasattr(frame, "latest"):
            self._frame = lambda: frame  # type: ignore[return-value]
        else:
            self._frame = frame  # type: ignore[assignment]

    @property
    def frame(self) -> FrameView | None:
        return self._frame()

    # -- reading the frame ---------------------------------------------------------------
    def current(self, station: str, point: str) -> float | None:
        """The point's value in the newest tick; None when the frame does not hold it."""
        f = self.frame
        col = INDEX.get(point)
        if f is None or col is None or station not in f.index or math.isnan(f.now):
            return None
        v = float(f.latest()[f.index[station], col])
        return None if math.isnan(v) else v

    # -- select ----------------------------------------------------------------------------
    def select(
        self,
        inst: PlaybookInstance,
        step_id: str,
        operator: str,
        now: float,
        station_name: str = "",
    ) -> Selection:
        """Check everything operate will need, open the window, say what will be written."""
        step = inst.step(step_id)  # StepError names the known steps
        if not self.settings.enabled:
            raise ControlRefused(
                "control is disabled for this site (alarms.control.enabled is false) (遥控未启用)"
            )
        if step.control is None:
            raise ControlRefused(f"step {step_id!r} has no control action (此步骤无遥控动作)")
        if step.status != "pending":
            raise ControlRefused(
                f"step {step_id!r} is already {step.status} (by {step.by}) (步骤已处理)"
            )
        station = inst.station
        point = str(step.control["point"])
        if not station:
            raise ControlRefused(
                f"incident {inst.incident_id} concerns {inst.subject}, not one station: "
                "control needs a station (事件不属于单个换热站)"
            )
        if point not in self.allowed(station):
            raise ControlRefused(
                f"point {point} of station {station} is not allow-listed "
                f"(stations.yaml control.allow) (该点位未授权遥控)"
            )
        if self.writer is None:
            raise ControlRefused("no control writer: the daemon is not polling (无写入通道)")
        self._purge(now)
        # one open selection per step: a new select replaces an older one
        for sid, old in list(self._open.items()):
            if old.incident_id == inst.incident_id and old.step == step_id:
                del self._open[sid]
        sel = Selection(
            select_id="sel-" + secrets.token_hex(6),
            incident_id=inst.incident_id,
            step=step_id,
            operator=operator,
            station=station,
            station_name=station_name,
            point=point,
            value=float(step.control["value"]),
            current=self.current(station, point),
            selected_at=now,
            expires_at=now + self.settings.window_s,
        )
        self._open[sel.select_id] = sel
        return sel

    # -- operate -----------------------------------------------------------------------------
    def take(
        self, select_id: str, incident_id: str, step_id: str, operator: str, now: float
    ) -> Selection:
        """The selection operate names, checked and consumed (it cannot be operated twice)."""
        if not self.settings.enabled:
            raise ControlRefused(
                "control is disabled for this site (alarms.control.enabled is false) (遥控未启用)"
            )
        sel = self._open.get(select_id)
        if sel is None:
            raise ControlRefused(
                f"no open selection {select_id!r}: select the step first (无此选择，请先选择)"
            )
        if now > sel.expires_at:
            del self._open[select_id]
            raise ControlRefused(
                f"selection {select_id} expired {now - sel.expires_at:.0f} s ago "
                f"(window {self.settings.window_s:g} s): select again (选择已超时)"
            )
        if (sel.incident_id, sel.step) != (incident_id, step_id):
            raise ControlRefused(
                f"selection {select_id} is for {sel.incident_id} step {sel.step} "
                f"({sel.point} = {sel.value:g} at {sel.station}), not {incident_id} step "
                f"{step_id} (选择与操作不符)"
            )
        if sel.operator != operator:
            raise ControlRefused(
                f"selection {select_id} was made by {sel.operator}, not {operator}: "
                "the operator who selects must operate (选择人与操作人不符)"
            )
        if sel.point not in self.allowed(sel.station):
            raise ControlRefused(f"point {sel.point} of {sel.station} is not allow-listed")
        del self._open[select_id]
        return sel

    async def execute(self, sel: Selection) -> Outcome:
        """Write the selection, then wait for the polled value to show it."""
        if self.writer is None:
            return Outcome(False, False, None, "no control writer")
        try:
            await self.writer(sel.station, sel.point, sel.value)
        except Exception as e:  # any driver error: nothing confirmed, the operator is told
            return Outcome(False, False, None, f"write failed: {type(e).__name__}: {e}")
        return await self._readback(sel)

    async def _readback(self, sel: Selection) -> Outcome:
        f = self.frame
        if f is None or sel.point not in INDEX or sel.station not in f.index:
            return Outcome(True, False, None, "written; the point is not polled into the frame")
        written_after = f.now
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.readback_s
        last: float | None = None
        while loop.time() < deadline:
            f = self.frame  # a reload may have swapped it meanwhile
            # only a tick committed after the write can confirm it
            if f is not None and not (f.now <= written_after):
                last = self.current(sel.station, sel.point)
                if last is not None and _close(last, sel.value):
                    return Outcome(True, True, last)
            await asyncio.sleep(0.05)
        return Outcome(
            True,
            False,
            last,
            f"written, but {sel.point} still reads {last} after {self.settings.readback_s:g} s",
        )

    def _purge(self, now: float) -> None:
        # expired selections are kept a while so operate can say "expired", not "unknown"
        keep_s = 10 * self.settings.window_s
        for sid, sel in list(self._open.items()):
            if now - sel.expires_at > keep_s:
                del self._open[sid]
