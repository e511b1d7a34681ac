"""Raise/clear changes of findings, as the alarm engine decides them, and their log lines.

Detectors report what is active now; when that becomes a "raise" or a "clear" is decided
in one place, the alarm engine (alarms/engine.py). The daemon's finding log and its tick
listeners follow the alarm service's transitions (`changes_from`). Offline tools that
have no alarm service (replay, the evaluation) run a `FindingStream`: the same engine,
by default with no on/off delays and no suppression, so they see the detectors' own
edges; give it the site's tuning to see what the daemon would raise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from alarms.engine import AlarmEngine
from alarms.model import Transition
from alarms.suppression import Suppression
from alarms.tuning import AlarmTuning
from stationd.findings import FINDING_KINDS, Finding

log = logging.getLogger("stationd.findings")

#: no delays and no re-arm: a change as soon as the detectors' output changes
IMMEDIATE: dict[str, AlarmTuning] = {kind: AlarmTuning() for kind in FINDING_KINDS}


@dataclass(frozen=True, slots=True)
class FindingChange:
    time: float
    state: str  # "raise" | "clear"
    finding: Finding  # for a clear: the finding as last seen


def change_of(t: Transition) -> str:
    """'raise', 'clear' or '' for a transition: an alarm's condition coming in (after its
    on-delay) raises; its going away (after the off-delay) clears."""
    if t.cause == "activate":
        return "raise"
    if t.cause == "clear":
        return "clear"
    return ""


def changes_from(
    transitions: Iterable[Transition], seen: Mapping[str, Finding]
) -> list[FindingChange]:
    """The raise/clear changes among an alarm engine's transitions; `seen` maps alarm ids
    to the finding (current or last seen) each concerns."""
    out = []
    for t in transitions:
        state = change_of(t)
        f = seen.get(t.alarm_id)
        if state and f is not None:
            out.append(FindingChange(t.time, state, f))
    return out


class FindingStream:
    """Findings per tick in, raise/clear changes out, decided by an AlarmEngine."""

    def __init__(
        self,
        tuning: Mapping[str, AlarmTuning] | None = None,
        suppression: Suppression | None = None,
        site: str = "stream",
    ) -> None:
        self.engine = AlarmEngine(site, dict(IMMEDIATE if tuning is None else tuning), None,
                                  suppression)  # fmt: skip
        self.active: dict[str, Finding] = {}
        self._seen: dict[str, Finding] = {}

    def update(self, t: float, findings: list[Finding]) -> list[FindingChange]:
        now = {f.alarm_id: f for f in findings}
        self._seen.update(now)
        changes = changes_from(self.engine.step(t, findings), self._seen)
        for c in changes:
            if c.state == "raise":
                self.active[c.finding.alarm_id] = c.finding
            else:
                self.active.pop(c.finding.alarm_id, None)
        for aid in self.active.keys() & now.keys():
            self.active[aid] = now[aid]
        return changes


def log_changes(changes: list[FindingChange]) -> None:
    for c in changes:
        f = c.finding
        level = logging.WARNING if c.state == "raise" else logging.INFO
        log.log(
            level,
            "finding=%s state=%s subject=%s severity=%s value=%.4g onset=%.0f msg=%s",
            f.kind,
            c.state,
            f.subject,
            f.severity,
            f.value,
            f.onset,
            f.message_zh,
        )
