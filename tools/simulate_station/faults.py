"""Fault descriptions for the simulator: what can go wrong, where, how big, and when.

A `Fault` is what a technician injects (CLI flag, scenario YAML, control API); a
`FaultTruth` is what the plant records once the fault is scheduled, for tests and the
evaluation suite to score detection against. Scenario files list faults with onsets in
plant seconds after the start of the run:

    faults:
      - {at: 600, kind: secondary_leak, station: hs001, size: 1.0}        # 1 % of flow
      - {at: 900, kind: power_loss, station: hs003, ups: false, duration: 1800}
      - {at: 1200, kind: primary_leak, branch: 东一支线, station: hs002, size: 0.2}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stationd import signals

FaultKind = Literal[
    "secondary_leak",
    "pipe_burst",
    "power_loss",
    "comm_loss",
    "heat_source_shortfall",
    "primary_leak",
    "stuck_sensor",
    "extreme_cold",
]
FAULT_KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]

# Default size per kind and its unit: what `size` means when it is left out.
DEFAULT_SIZE: dict[str, tuple[float, str]] = {
    "secondary_leak": (1.0, "% of circulating flow"),
    "pipe_burst": (30.0, "% of circulating flow"),
    "power_loss": (0.0, ""),
    "comm_loss": (0.0, ""),
    "heat_source_shortfall": (20.0, "°C below the primary curve"),
    "primary_leak": (0.2, "MPa primary pressure loss at the leak"),
    "stuck_sensor": (0.0, ""),
    "extreme_cold": (15.0, "°C outdoor temperature drop"),
}


class Fault(BaseModel):
    """One fault to inject. Which target key is required depends on `kind`:

    station: secondary_leak, pipe_burst, comm_loss, stuck_sensor (and `signal`);
    station or feeder: power_loss; source: heat_source_shortfall;
    branch (optionally `station`, the one nearest the leak): primary_leak; none: extreme_cold.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind
    station: str | None = None
    branch: str | None = None
    source: str | None = None
    feeder: str | None = None
    size: float | None = Field(None, ge=0)
    ups: bool = True  # power_loss: the PLC keeps answering on its UPS
    signal: str | None = None  # stuck_sensor
    at: float | None = Field(None, ge=0)  # scenario onset, plant seconds after start
    onset: float | None = None  # absolute plant time; None = now (or start + at)
    duration: float | None = Field(None, gt=0)  # plant seconds; cleared afterwards
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    @model_validator(mode="after")
    def _targets(self) -> Fault:
        k = self.kind
        if k in ("secondary_leak", "pipe_burst", "comm_loss", "stuck_sensor") and not self.station:
            raise ValueError(f"{k} needs `station`")
        if k == "power_loss" and not (self.station or self.feeder):
            raise ValueError("power_loss needs `station` or `feeder`")
        if k == "heat_source_shortfall" and not self.source:
            raise ValueError("heat_source_shortfall needs `source` (a heat_source of the config)")
        if k == "primary_leak" and not self.branch:
            raise ValueError("primary_leak needs `branch` (optionally `station` nearest the leak)")
        if k == "stuck_sensor":
            if self.signal not in signals.INDEX:
                raise ValueError(f"stuck_sensor needs `signal`, one of {', '.join(signals.NAMES)}")
        elif self.signal is not None:
            raise ValueError("`signal` applies to stuck_sensor only")
        return self

    @property
    def magnitude(self) -> float:
        return DEFAULT_SIZE[self.kind][0] if self.size is None else float(self.size)


@dataclass(slots=True)
class FaultTruth:
    """The simulator's ground truth about one fault (GET /truth)."""

    id: str
    kind: str
    subject: str  # station id, branch, source, feeder or site: what the alarm should name
    stations: tuple[str, ...]  # every station the fault acts on
    size: float
    unit: str
    onset: float  # plant time
    end: float | None = None  # plant time it was cleared (or will be, for a duration)
    onset_wall: float | None = None
    end_wall: float | None = None
    active: bool = False  # in effect now (onset passed, not cleared)
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stations"] = list(self.stations)
        return d


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    faults: tuple[Fault, ...] = ()


class ScenarioError(Exception):
    """A scenario file that cannot be used, with the file and fault named."""


def load_scenario(path: str | Path) -> list[Fault]:
    """Read a scenario YAML (`faults: [...]`); each fault needs `at:` (plant seconds)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{p}: cannot read scenario: {exc}") from exc
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{p}: {'.'.join(str(x) for x in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise ScenarioError("\n".join(lines)) from exc
    for i, f in enumerate(scenario.faults):
        if f.at is None and f.onset is None:
            raise ScenarioError(f"{p}: faults.{i}: `at:` (plant seconds after start) is required")
    return list(scenario.faults)
