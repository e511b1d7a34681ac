"""Rebuild the alarm history the KPIs need from dispatch-log entries.

The dispatch log (alarms/dispatch_log.py) is the record of what the operators saw and
did: every alarm transition (with the `Transition` as its data), every playbook step
marked done or skipped. This module turns a time-ordered list of those entries into
annunciations, active spans, incidents with their acknowledgement and step reports.
Pure: entries in, records out, no I/O and no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from alarms.dispatch_log import LogEntry
from alarms.model import ACTIVE_STATES, PRIORITY, AlarmState


@dataclass(frozen=True, slots=True)
class Activation:
    """One annunciation: an alarm raised to an operator (ISA-18.2 counts these).

    A return of the condition before anyone acknowledged (rtn_unack → unack) is announced
    again, so it counts again: that is exactly how a chattering alarm loads an operator.
    """

    time: float
    alarm_id: str
    incident_id: str
    kind: str
    severity: str
    priority: int  # 1 (highest) .. 4, as announced
    reraise: bool  # came back from rtn_unack within the same incident


@dataclass(frozen=True, slots=True)
class ActiveSpan:
    """A stretch in which an alarm stood active (unack or acked)."""

    alarm_id: str
    start: float
    end: float | None  # None: still active at the last entry read
    start_known: bool = True  # False: it was active before the first entry read


@dataclass(slots=True)
class StepReport:
    step: str
    status: str  # done / skipped
    time: float
    operator: str
    reason: str = ""


@dataclass(slots=True)
class Incident:
    """One activation of one alarm, from opening to its close (ISA-18.2's incident)."""

    incident_id: str
    alarm_id: str
    kind: str
    playbook_id: str
    opened: float
    severity: str
    acked: float | None = None
    acked_by: str = ""
    steps: dict[str, StepReport] = field(default_factory=dict)


@dataclass(slots=True)
class AlarmHistory:
    activations: list[Activation] = field(default_factory=list)
    spans: list[ActiveSpan] = field(default_factory=list)
    incidents: dict[str, Incident] = field(default_factory=dict)
    first_time: float | None = None  # time of the first entry read (the look-back edge)


def build_history(entries: Iterable[LogEntry]) -> AlarmHistory:
    """Annunciations, active spans and incidents from dispatch-log entries in time order."""
    h = AlarmHistory()
    open_span: dict[str, float] = {}
    seen_alarm: set[str] = set()
    unknown_start: set[str] = set()
    for e in entries:
        if h.first_time is None:
            h.first_time = e.time
        if e.kind == "transition":
            _transition(h, e, open_span, seen_alarm, unknown_start)
        elif e.kind == "step" and e.incident_id in h.incidents:
            d = e.data
            status = str(d.get("status", ""))
            if status in ("done", "skipped"):
                h.incidents[e.incident_id].steps.setdefault(
                    str(d.get("step", "")),
                    StepReport(
                        step=str(d.get("step", "")),
                        status=status,
                        time=e.time,
                        operator=e.operator,
                        reason=str(d.get("reason", "") or ""),
                    ),
                )
    for alarm_id, start in open_span.items():
        h.spans.append(ActiveSpan(alarm_id, start, None, alarm_id not in unknown_start))
    h.spans.sort(key=lambda s: (s.start, s.alarm_id))
    return h


def _transition(
    h: AlarmHistory,
    e: LogEntry,
    open_span: dict[str, float],
    seen_alarm: set[str],
    unknown_start: set[str],
) -> None:
    d = e.data
    cause = d.get("cause", "")
    alarm_id = e.alarm_id or str(d.get("alarm_id", ""))
    src = AlarmState(d.get("from_state", "normal"))
    dst = AlarmState(d.get("to_state", "normal"))
    severity = str(d.get("severity", "notice"))
    priority = int(d.get("priority") or PRIORITY.get(severity, 4))
    first_seen = alarm_id not in seen_alarm
    seen_alarm.add(alarm_id)

    if cause == "activate":
        reraise = src is AlarmState.RTN_UNACK
        h.activations.append(
            Activation(
                time=e.time,
                alarm_id=alarm_id,
                incident_id=e.incident_id,
                kind=str(d.get("kind", "")),
                severity=severity,
                priority=priority,
                reraise=reraise,
            )
        )
        if e.incident_id and e.incident_id not in h.incidents:
            h.incidents[e.incident_id] = Incident(
                incident_id=e.incident_id,
                alarm_id=alarm_id,
                kind=str(d.get("kind", "")),
                playbook_id=str(d.get("playbook_id", "") or ""),
                opened=e.time,
                severity=severity,
            )
    elif cause == "ack":
        inc = h.incidents.get(e.incident_id)
        if inc is not None and inc.acked is None:
            inc.acked = e.time
            inc.acked_by = e.operator

    was_active = src in ACTIVE_STATES
    is_active = dst in ACTIVE_STATES
    if first_seen and was_active and h.first_time is not None:
        # active since before the look-back began: at least that long
        open_span[alarm_id] = h.first_time
        unknown_start.add(alarm_id)
    if is_active and not was_active:
        open_span.setdefault(alarm_id, e.time)
    elif was_active and not is_active:
        start = open_span.pop(alarm_id, None)
        if start is not None:
            known = alarm_id not in unknown_start
            unknown_start.discard(alarm_id)
            h.spans.append(ActiveSpan(alarm_id, start, e.time, start_known=known))
