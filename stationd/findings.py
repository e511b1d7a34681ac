"""The finding stream: what detectors emit and the alarm engine consumes.

A detector pass returns the findings that are *active now*; turning "active now" into
raise/clear transitions is the alarm engine's job (or replay's, offline). Keeping this
type small is what lets detection and alarms evolve separately.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Scope = Literal["station", "branch", "feeder", "source", "site", "estate"]
Severity = Literal["critical", "major", "minor", "notice"]
SEVERITY_RANK: dict[str, int] = {"notice": 0, "minor": 1, "major": 2, "critical": 3}

FINDING_KINDS: tuple[str, ...] = (
    "secondary_pressure_drop",
    "station_power_loss",
    "station_comm_loss",
    "monitoring_loss",
    "makeup_over_allowance",
    "secondary_leak",
    "heat_source_shortfall",
    "primary_leak",
    "extreme_cold",
    "flow_allocation",
    "sensor_fault",
    "indoor_below_standard",
    "supply_below_curve",
    "supply_above_curve",
)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # one of FINDING_KINDS
    subject: str  # station id, or the branch / feeder / source / site / estate name
    scope: Scope
    severity: Severity
    onset: float  # tick time (unix seconds) the condition began
    value: float  # headline evidence (loss rate, pressure fall in MPa, share of fleet, ...)
    message_zh: str
    message_en: str
    evidence: dict[str, object] = field(default_factory=dict)
    # station ids this finding concerns (for fleet findings: the stations involved)
    stations: tuple[str, ...] = ()

    @property
    def alarm_id(self) -> str:
        """`<station>/<finding>`; fleet findings use their branch/feeder/site name."""
        return f"{self.subject}/{self.kind}"
