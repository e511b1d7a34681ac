"""A synthetic fault-free fleet for detector tests and the detection benchmark.

Healthy exchange stations as the plan describes them: supply temperatures on their heating
curves with a day/night outdoor swing, circulating flow at 10 t/h per 10,000 m², make-up at
a fraction of the 0.5 % allowance delivered by an intermittent make-up pump into a
cumulative meter, measurement noise on every analog signal. Tests overwrite columns to
inject a fault at a known tick; everything else must stay silent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stationd import signals
from stationd.detect.static import FleetStatic
from stationd.detect.thresholds import HeatingCurve, Thresholds
from stationd.frame import FleetFrame

SIG = signals.INDEX
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z, the heating season


def fleet_static(
    n: int,
    *,
    per_branch: int = 5,
    per_feeder: int = 4,
    sources: int = 2,
    thresholds: Sequence[Thresholds] | Thresholds | None = None,
    seed: int = 1,
) -> FleetStatic:
    rng = np.random.default_rng(seed)
    th = thresholds if thresholds is not None else Thresholds()
    ths = list(th) if isinstance(th, Sequence) else [th] * n
    return FleetStatic.build(
        ids=[f"hs{i:05d}" for i in range(n)],
        heated_area_m2=list(rng.uniform(40_000, 160_000, n).round(-2)),
        branches=[f"支线{i // per_branch:03d}" for i in range(n)],
        feeders=[f"feeder{i // per_feeder:03d}" for i in range(n)],
        sources=[f"热源{i % sources}" for i in range(n)],
        estates=[[f"小区{i:05d}"] for i in range(n)],
        thresholds=ths,
        site_id="demo",
        names=[f"{i}号站" for i in range(n)],
        curves=[HeatingCurve()] * n,
    )


class SynthFleet:
    """values(t) -> [S, K] healthy readings at tick time t (deterministic per seed)."""

    def __init__(self, static: FleetStatic, seed: int = 7, makeup_share: float = 0.3) -> None:
        self.static = static
        self.n = static.n
        self.rng = np.random.default_rng(seed)
        self.flow0 = 10.0 * static.heated_area_m2 / 1e4
        self.makeup_share = makeup_share  # of the 0.5 % allowance
        self.total = self.rng.uniform(100.0, 5_000.0, self.n)
        self.energy = self.rng.uniform(1_000.0, 50_000.0, self.n)
        self.last_t: float | None = None
        self.outdoor_bias = self.rng.normal(0.0, 0.5, self.n)
        self.outdoor_mean = -3.0

    def outdoor(self, t: float) -> np.ndarray:
        day = 2 * np.pi * (t % 86_400) / 86_400
        return self.outdoor_mean + 4.0 * np.sin(day - 2.0) + self.outdoor_bias

    def values(self, t: float) -> np.ndarray:
        n, rng = self.n, self.rng
        v = np.empty((n, signals.K))
        noise = rng.normal(0.0, 1.0, (n, signals.K))
        out = self.outdoor(t)
        load = 1.0 + 0.08 * np.sin(2 * np.pi * (t % 86_400) / 86_400)
        dt = 0.0 if self.last_t is None else t - self.last_t
        self.last_t = t
        v[:, SIG["outdoor_temp"]] = out + 0.05 * noise[:, SIG["outdoor_temp"]]
        v[:, SIG["indoor_temp"]] = 21.0 + 0.1 * noise[:, SIG["indoor_temp"]]
        tps = self.static.th.primary_curve.at(out)
        tss = self.static.secondary_curve.at(out)
        v[:, SIG["primary_supply_temp"]] = tps + 0.3 * noise[:, SIG["primary_supply_temp"]]
        v[:, SIG["primary_return_temp"]] = tss + 5.0 + 0.3 * noise[:, SIG["primary_return_temp"]]
        v[:, SIG["primary_supply_pressure"]] = (
            0.90 + 0.003 * noise[:, SIG["primary_supply_pressure"]]
        )
        v[:, SIG["primary_return_pressure"]] = (
            0.50 + 0.003 * noise[:, SIG["primary_return_pressure"]]
        )
        v[:, SIG["primary_flow"]] = 0.3 * self.flow0 * load + 0.2 * noise[:, SIG["primary_flow"]]
        self.energy += dt / 3600.0 * 0.05 * self.flow0
        v[:, SIG["heat_energy"]] = self.energy
        v[:, SIG["secondary_supply_temp"]] = tss + 0.3 * noise[:, SIG["secondary_supply_temp"]]
        v[:, SIG["secondary_return_temp"]] = (
            tss - 10.0 + 0.3 * noise[:, SIG["secondary_return_temp"]]
        )
        v[:, SIG["secondary_supply_pressure"]] = (
            0.45 + 0.002 * noise[:, SIG["secondary_supply_pressure"]]
        )
        v[:, SIG["secondary_return_pressure"]] = (
            0.28 + 0.002 * noise[:, SIG["secondary_return_pressure"]]
        )
        flow = self.flow0 * load + 0.5 * noise[:, SIG["secondary_flow"]]
        v[:, SIG["secondary_flow"]] = flow
        # the make-up pump runs in bursts (pressure band control): ~1 tick in 4 here
        burst = rng.random(n) < 0.25
        makeup = np.where(burst, 4.0 * self.makeup_share * 0.005 * flow, 0.0)
        v[:, SIG["makeup_flow"]] = makeup
        self.total += makeup * dt / 3600.0
        v[:, SIG["makeup_total"]] = self.total
        v[:, SIG["makeup_tank_level"]] = 1.5 + 0.002 * noise[:, SIG["makeup_tank_level"]]
        v[:, SIG["circ_pump_running"]] = 1.0
        v[:, SIG["makeup_pump_running"]] = burst.astype(float)
        v[:, SIG["circ_pump_freq"]] = 45.0
        v[:, SIG["primary_valve_position"]] = 60.0 + 0.5 * noise[:, SIG["primary_valve_position"]]
        v[:, SIG["mains_power"]] = 1.0
        return v


def feed(frame: FleetFrame, t: float, values: np.ndarray, silent: np.ndarray | None = None) -> None:
    """Stage a whole fleet's tick at once (silent stations deliver nothing) and commit it."""
    frame.stage[:] = values
    frame.staged[:] = True
    if silent is not None:
        frame.stage[silent] = np.nan
        frame.staged[silent] = False
    frame.commit(t)


History = list[tuple[float, list]]


def run(
    static: FleetStatic,
    seconds: float,
    *,
    interval: float = 1.0,
    inject=None,
    silent=None,
    fleet: SynthFleet | None = None,
    t0: float = T0,
) -> History:
    """Drive a Detector over a synthetic fleet; `inject(k, t, values)` edits a tick in place,
    `silent(k, t)` returns the stations that deliver nothing. Returns (t, findings) per tick."""
    from stationd.detect.engine import Detector

    fleet = fleet or SynthFleet(static)
    frame = FleetFrame(list(static.ids), window=4)
    det = Detector(static)
    history: History = []
    for k in range(round(seconds / interval)):
        t = t0 + k * interval
        v = fleet.values(t)
        if inject is not None:
            inject(k, t, v)
        feed(frame, t, v, silent(k, t) if silent is not None else None)
        history.append((t, det.step(frame)))
    return history


def first(history: History, kind: str, subject: str | None = None) -> float | None:
    """Tick time a finding of `kind` (for `subject`) is first active, None if never."""
    for t, found in history:
        if any(f.kind == kind and (subject is None or f.subject == subject) for f in found):
            return t
    return None


def raised(history: History) -> set[tuple[str, str]]:
    """Every (kind, subject) active at any tick."""
    return {(f.kind, f.subject) for _, found in history for f in found}


def at(history: History, t: float, kind: str, subject: str):
    for tt, found in history:
        if tt == t:
            return next((f for f in found if f.kind == kind and f.subject == subject), None)
    raise KeyError(t)
