"""The records the alarm side hands around: alarm states, transitions and pager events.

This module is the contract between the alarm engine (alarms/engine.py), the MQTT
publisher, the dispatch log and the pager adapters (alarms/pager/). It holds data
only — no I/O — so every consumer can import it without pulling in the others.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal


class AlarmState(StrEnum):
    """ISA-18.2 alarm states (the names are what MQTT and the dispatch log carry)."""

    NORMAL = "normal"
    UNACK = "unack"  # active, not yet acknowledged
    ACKED = "acked"  # active, acknowledged
    RTN_UNACK = "rtn_unack"  # condition cleared, still not acknowledged
    SHELVED = "shelved"  # hidden by an operator for a set time (auto-unshelves)
    SUPPRESSED = "suppressed"  # suppressed by design: another alarm explains it


@dataclass(frozen=True, slots=True)
class StateName:
    zh: str
    en: str
    #: the number the historian's `alarm` measurement carries (VictoriaMetrics stores no
    #: strings; the Grafana alarm timeline maps the numbers back to these names)
    code: int


#: the one table of state names: MQTT documents, the dispatch log, the daily report, the
#: historian's codes and the Grafana alarm timeline all read it (tests hold them to it)
STATE_NAMES: dict[AlarmState, StateName] = {
    AlarmState.NORMAL: StateName("正常", "normal", 0),
    AlarmState.UNACK: StateName("报警未确认", "unacknowledged", 1),
    AlarmState.ACKED: StateName("报警已确认", "acknowledged", 2),
    AlarmState.RTN_UNACK: StateName("已恢复未确认", "returned, unacknowledged", 3),
    AlarmState.SHELVED: StateName("已搁置", "shelved", 4),
    AlarmState.SUPPRESSED: StateName("已抑制", "suppressed", 5),
}
assert set(STATE_NAMES) == set(AlarmState), "every state needs its names"


_ZH: dict[str, str] = {s.value: n.zh for s, n in STATE_NAMES.items()}
_CODE: dict[str, int] = {s.value: n.code for s, n in STATE_NAMES.items()}


def state_zh(state: str) -> str:
    """The Chinese name of a state given by its value ('unack'); unknown text as it is."""
    return _ZH.get(str(state), str(state))


def state_code(state: str) -> int:
    """The historian code of a state given by its value; -1 for anything else (a dict
    lookup: the historian writes every active alarm's state every tick)."""
    return _CODE.get(str(state), -1)


#: states in which the alarm's condition is present and an operator should see it
ACTIVE_STATES: frozenset[AlarmState] = frozenset({AlarmState.UNACK, AlarmState.ACKED})

#: what made a transition happen
Cause = Literal[
    "activate",  # condition came in (after the on-delay)
    "clear",  # condition went away (after the off-delay)
    "ack",  # operator acknowledged
    "shelve",
    "unshelve",  # operator, or the shelve time ran out
    "suppress",  # another active alarm now explains this one
    "unsuppress",
    "escalate",  # a playbook deadline was missed; severity raised
    "restore",  # state re-read from disk at start-up
]


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of one alarm's state (or its severity, for an escalation)."""

    time: float  # tick time (unix s) for condition changes; wall time for commands
    alarm_id: str  # "<subject>/<kind>"
    incident_id: str  # "" when no incident is open (e.g. shelving a normal alarm)
    from_state: AlarmState
    to_state: AlarmState
    cause: Cause
    kind: str  # finding kind
    subject: str
    station: str  # station id; "" for fleet alarms (see `stations` then)
    severity: str  # critical / major / minor / notice
    priority: int  # 1 (highest) .. 4, derived from severity
    value: float
    message_zh: str
    message_en: str
    operator: str = ""  # set when a command caused it
    reason: str = ""
    stations: tuple[str, ...] = ()
    playbook_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        # shallow on purpose: dataclasses.asdict deep-copies and costs ~10x in an alarm storm
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["from_state"] = str(self.from_state)
        d["to_state"] = str(self.to_state)
        d["stations"] = list(self.stations)
        # JSON has no NaN: a missing headline value travels as null
        d["value"] = self.value if math.isfinite(self.value) else None
        return d


PagerAction = Literal["trigger", "acknowledge", "resolve", "escalate"]


@dataclass(frozen=True, slots=True)
class PagerEvent:
    """What the pager adapters receive: one incident's trigger/ack/resolve/escalation.

    `incident_id` is deterministic from (site, alarm id, onset tick), so two replica
    daemons watching the same fleet hand over the same id: use it as the dedup key
    (PagerDuty `dedup_key`, an Alertmanager label, the webhook's `id`).
    """

    incident_id: str
    alarm_id: str
    kind: str  # finding kind
    site: str
    station: str  # station id, or "" for a fleet alarm
    subject: str  # station id, branch, feeder, source or site name
    severity: str  # critical / major / minor / notice (raised by an escalation)
    action: PagerAction
    summary_zh: str
    summary_en: str
    first_steps: list[str]  # the playbook's first steps, "role: action" in zh then en
    starts_at: float  # unix s: the incident's onset tick
    ends_at: float | None  # unix s when resolved, else None
    playbook_id: str
    station_name: str = ""  # Chinese name when the station is known
    stations: tuple[str, ...] = ()  # stations a fleet alarm concerns
    value: float = 0.0
    step_id: str = ""  # for "escalate": the playbook step whose deadline was missed
    operator: str = ""  # for "acknowledge": who acknowledged
    details: dict[str, Any] = field(default_factory=dict)
    #: what crews are routed by (alarms.pager.routing.ROUTING_KEYS): branch, feeder,
    #: heat_source, estate, service_centre, plan_section; empty ones left out
    routing: dict[str, str] = field(default_factory=dict)
    runbook_url: str = ""  # the playbook for people (pager.links.runbook_url)
    console_url: str = ""  # the console or dashboard for this alarm (pager.links.console_url)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["stations"] = list(self.stations)
        d["first_steps"] = list(self.first_steps)
        d["details"] = dict(self.details)
        d["routing"] = dict(self.routing)
        return d


#: a pager hook: `Pager.notify` fits (sync or async both accepted by the service)
PagerHook = Callable[[PagerEvent], Awaitable[None] | None]

#: severity -> ISA-18.2 priority (1 is the most urgent)
PRIORITY: dict[str, int] = {"critical": 1, "major": 2, "minor": 3, "notice": 4}

#: one step up when a deadline is missed; critical stays critical
ESCALATED: dict[str, str] = {
    "notice": "minor",
    "minor": "major",
    "major": "critical",
    "critical": "critical",
}


@dataclass(frozen=True, slots=True)
class FieldReading:
    """A manual reading taken on site (plan 6.3: more field readings while blind)."""

    time: float
    station: str
    signal: str  # canonical signal name (stationd/signals.py)
    value: float
    operator: str
    note: str = ""


#: a hook for field readings (the daemon may feed them to the historian)
FieldReadingHook = Callable[[FieldReading], Awaitable[None] | None]
#: a hook for every transition (the daemon writes them to the historian's `alarm` measurement)
TransitionHook = Callable[[Transition], Awaitable[None] | None]
