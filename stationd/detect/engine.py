"""The detection pass: run every detector family over the newest tick of the fleet frame.

`Detector.step(frame)` reads only the newest column, masks faulty sensors first (so a bad
sensor raises a sensor_fault and nothing else), then lets each family update its own
incremental state and report what is active now. Time comes from the frame's tick times,
never from the clock, so replay runs the very same code at full speed.
"""

from __future__ import annotations

import numpy as np

from stationd.detect.comfort import Indoor, SupplyCurve
from stationd.detect.flow import FlowAllocation
from stationd.detect.kernels import Tick
from stationd.detect.loss import Loss
from stationd.detect.makeup import Makeup
from stationd.detect.pressure import SecondaryPressure
from stationd.detect.primary import PrimaryLeak
from stationd.detect.sensors import SensorFaults
from stationd.detect.source import HeatSource, fleet_outdoor
from stationd.detect.static import FleetStatic
from stationd.detect.weather import ExtremeCold
from stationd.findings import Finding
from stationd.frame import FleetFrame


class Detector:
    """Holds every detector's state for one fleet; call `step` once per committed tick."""

    def __init__(self, static: FleetStatic) -> None:
        self.static = static
        self.sensors = SensorFaults(static)
        self.loss = Loss(static)
        self.pressure = SecondaryPressure(static)
        self.makeup = Makeup(static)
        self.primary = PrimaryLeak(static)
        self.source = HeatSource(static)
        self.cold = ExtremeCold(static)
        self.flow = FlowAllocation(static)
        self.indoor = Indoor(static)
        self.curve = SupplyCurve(static)
        self.last_t = float("nan")
        self.active: list[Finding] = []
        self.passes = 0

    def step(self, frame: FleetFrame) -> list[Finding]:
        """Findings active at the frame's newest tick (the same list again if no new tick)."""
        if frame.head < 0:
            return []
        t = frame.now
        if t == self.last_t:
            return self.active
        if t < self.last_t:
            raise ValueError(f"tick time went backwards: {t} after {self.last_t}")
        if self.passes == 0 and tuple(frame.station_ids) != self.static.ids:
            raise ValueError("fleet frame and FleetStatic list different stations (or order)")
        raw = frame.latest().astype(np.float64)
        misses = frame.consecutive_misses.copy()
        tick = Tick(
            t=t,
            dt=0.0 if np.isnan(self.last_t) else t - self.last_t,
            raw=raw,
            x=raw.copy(),
            heard=misses == 0,
            misses=misses,
            last_good=frame.last_good_tick.copy(),
        )
        found = self.sensors.step(tick)  # masks tick.x: must run first
        outdoor, median_outdoor = fleet_outdoor(tick)
        found += self.loss.step(tick)
        found += self.pressure.step(tick)
        found += self.makeup.step(tick)
        found += self.primary.step(tick)
        found += self.source.step(tick, outdoor)
        found += self.cold.step(tick, median_outdoor)
        found += self.flow.step(tick)
        found += self.indoor.step(tick)
        found += self.curve.step(tick, outdoor)
        self.last_t = t
        self.passes += 1
        self.active = found
        return found

    def derived(self) -> dict[str, np.ndarray]:
        """Per-station derived values of the last pass, for the historian's `derived` measurement."""
        return {
            "loss_rate_pct": 100.0 * self.makeup.rate,
            "expected_flow_ratio": self.flow.ratio,
            "curve_deviation_c": self.curve.deviation,
            "primary_curve_deficit_c": self.source.deficit,
        }
