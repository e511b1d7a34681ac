"""Benchmark: one detection pass over the fleet frame, against a same-run baseline.

Prints the time of `Detector.step(frame)` for 1k / 10k / 50k stations × 21 signals with a
1-hour window at 1 s (50k uses a 10-minute window: 50k × 21 × 3600 float32 is 15 GB), and
the time of a baseline over the same frame — `np.nanmean` of the newest column, the least
any pass must do — so the figures can be quoted as ratios on any machine. Target: ≤ 20 ms
for 10k stations on one core. Run: `python bench/bench_detect.py [--sizes 1000,10000]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core, as the target says
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from stationd import signals
from stationd.detect.engine import Detector
from stationd.frame import FleetFrame
from tests.synth import T0, SynthFleet, fleet_static


def measure(n: int, window: int, warm: int, timed: int, alarm_share: float) -> dict[str, float]:
    static = fleet_static(n, per_branch=10, per_feeder=8, sources=4)
    fleet = SynthFleet(static)
    frame = FleetFrame(list(static.ids), window=window)
    # a full hour of history: tile one healthy tick (the detectors never rescan it; the
    # frame's memory and column strides are what matter)
    frame.values[:] = fleet.values(T0 - window).astype(np.float32)[:, :, None]
    frame.times[:] = T0 - window + np.arange(window)
    frame.head, frame.count = window - 1, window
    det = Detector(static)
    faulty = np.arange(n) < int(alarm_share * n)
    step_s, base_s, commit_s = [], [], []
    ret = signals.INDEX["secondary_return_pressure"]
    for k in range(warm + timed):
        t = T0 + k
        v = fleet.values(t)
        if k >= warm // 2:
            v[faulty, ret] = 0.05  # in alarm: below the low limit
        frame.stage[:] = v
        frame.staged[:] = True
        a = time.perf_counter()
        frame.commit(t)
        b = time.perf_counter()
        found = det.step(frame)
        c = time.perf_counter()
        col = frame.values[:, :, frame.head]
        np.nanmean(col, axis=0)
        d = time.perf_counter()
        if k >= warm:
            commit_s.append(b - a)
            step_s.append(c - b)
            base_s.append(d - c)
    return {
        "step_ms": 1e3 * float(np.median(step_s)),
        "step_p99_ms": 1e3 * float(np.percentile(step_s, 99)),
        "base_ms": 1e3 * float(np.median(base_s)),
        "commit_ms": 1e3 * float(np.median(commit_s)),
        "findings": float(len(found)),
        "frame_gb": frame.values.nbytes / 1e9,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000,50000")
    p.add_argument("--timed", type=int, default=60)
    p.add_argument("--alarm-share", type=float, default=0.01, help="stations in alarm (second run)")
    a = p.parse_args()
    print(
        f"numpy {np.__version__}, {signals.K} signals, one detection pass per tick (median of {a.timed})"
    )
    print(
        f"{'stations':>9} {'window':>7} {'frame GB':>8} {'alarms':>7} {'step ms':>8} {'p99 ms':>7} "
        f"{'baseline ms':>11} {'ratio':>6} {'commit ms':>9}"
    )
    for n in (int(s) for s in a.sizes.split(",")):
        window = 3600 if n <= 10_000 else 600
        for share in (0.0, a.alarm_share):
            r = measure(n, window, warm=40, timed=a.timed, alarm_share=share)
            print(
                f"{n:>9} {window:>7} {r['frame_gb']:>8.2f} {int(r['findings']):>7} {r['step_ms']:>8.2f} "
                f"{r['step_p99_ms']:>7.2f} {r['base_ms']:>11.2f} {r['step_ms'] / r['base_ms']:>6.2f} "
                f"{r['commit_ms']:>9.2f}"
            )
    print("ratio = detection pass / baseline (np.nanmean of the newest column over the same frame)")
    print("target: 10k stations × 1 h window ≤ 20 ms per pass on one core")


if __name__ == "__main__":
    main()
