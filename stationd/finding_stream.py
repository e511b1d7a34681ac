"""The finding stream: turn "active at this tick" sets into raise/clear changes.

Detectors report what is active now; the daemon's log, replay's JSONL and anything else
that wants edges (not levels) diff consecutive sets here, keyed by alarm id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from stationd.findings import Finding

log = logging.getLogger("stationd.findings")


@dataclass(frozen=True, slots=True)
class FindingChange:
    time: float
    state: str  # "raise" | "clear"
    finding: Finding  # for a clear: the finding as last seen


class FindingStream:
    def __init__(self) -> None:
        self.active: dict[str, Finding] = {}

    def update(self, t: float, findings: list[Finding]) -> list[FindingChange]:
        now = {f.alarm_id: f for f in findings}
        changes = [FindingChange(t, "raise", f) for aid, f in now.items() if aid not in self.active]
        changes += [
            FindingChange(t, "clear", f) for aid, f in self.active.items() if aid not in now
        ]
        self.active = now
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
