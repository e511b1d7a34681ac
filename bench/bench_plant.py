"""Plant step speed: how fast the simulator's physics runs offline (prints figures).

    python bench/bench_plant.py [--stations 1000] [--hours 1]

The baseline, measured in the same run, is the cheapest possible step over the same
arrays (one fused numpy update of one state vector): the ratio says how many such
operations a plant step costs, which is what to watch when the model grows. The figure
that matters for the evaluation suite is the projected time for one plant day.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.simulate_station.faults import Fault
from tools.simulate_station.plant import Plant, StationMeta


def fleet(n: int) -> list[StationMeta]:
    return [
        StationMeta(
            id=f"hs{i:04d}",
            heated_area_m2=50_000 + 150 * i,
            branch=f"b{i // 10}",
            power_feeder=f"f{i // 5}",
            heat_source=f"src{i % 3}",
        )
        for i in range(n)
    ]


def baseline(n: int, steps: int) -> float:
    x = np.zeros(n)
    target = np.ones(n)
    t = time.perf_counter()
    for _ in range(steps):
        x += (target - x) * 0.01
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stations", type=int, default=1000)
    ap.add_argument("--hours", type=float, default=1.0)
    args = ap.parse_args()
    steps = int(args.hours * 3600)
    p = Plant(fleet(args.stations), seed=1, start_time=1_700_000_000.0)
    p.inject(Fault(kind="secondary_leak", station="hs0003", size=1.0))
    p.inject(Fault(kind="primary_leak", branch="b0", at=600))
    t = time.perf_counter()
    p.advance(p.t + steps)
    per_step = (time.perf_counter() - t) / steps
    # the evaluation suite's pattern: one step, then read every station, every tick
    ticks = min(steps, 1800)
    t = time.perf_counter()
    for _ in range(ticks):
        p.advance(p.t + 1.0)
        p.values()
        p.answering()
    per_tick = (time.perf_counter() - t) / ticks
    base = baseline(args.stations, min(steps, 20_000))
    print(f"stations                 {args.stations}")
    print(f"plant steps/s            {1 / per_step:,.0f}  ({per_step * 1e6:.0f} µs per 1 s step)")
    print(f"station-steps/s          {args.stations / per_step:,.0f}")
    print(f"one plant day            {per_step * 86400:.1f} s")
    print(f"step + values() per tick {per_tick * 1e6:.0f} µs ({per_tick / base:.0f}x baseline)")
    print(f"one plant day, read 1 Hz {per_tick * 86400:.1f} s")
    print(f"baseline step            {base * 1e6:.1f} µs (one fused numpy update)")
    print(f"step / baseline          {per_step / base:.1f}x")


if __name__ == "__main__":
    main()
