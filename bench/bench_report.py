"""Daily-report benchmark: prints figures, asserts nothing.

1. Decoding stored lines into the numpy chunk: the report's bulk decoder
   (`stationd.historian.read_embedded.parse_rows`) vs one `parse_fields()` call per line (the
   baseline), on the same lines, in the same run.
2. A whole 24-hour report from the embedded store: read + aggregate, then render (CSV,
   XLSX, HTML), for a synthetic fleet written by the historian's own encoder and sink.

    python bench/bench_report.py [--stations 100] [--step 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stationd import signals  # noqa: E402
from stationd.historian.embedded import EmbeddedStore  # noqa: E402
from stationd.historian.lineproto import FleetEncoder, StationTags, parse_fields  # noqa: E402
from stationd.historian.read_embedded import EmbeddedReader, parse_rows  # noqa: E402
from stationd.report.build import build_report, write_report  # noqa: E402
from stationd.report.compute import StationInfo  # noqa: E402
from stationd.report.period import period_for  # noqa: E402


def synthetic_day(n: int, t0: float, t1: float, step: float, seed: int = 1) -> np.ndarray:
    """[T, S, K] plausible values: steady process values with noise, rising meters."""
    rng = np.random.default_rng(seed)
    T = int((t1 - t0) / step)
    base = np.array([s.lo + 0.4 * (s.hi - s.lo) for s in signals.SIGNALS])
    v = base[None, None, :] + rng.normal(0, 0.01, (T, n, signals.K)) * np.abs(base)
    for name in ("heat_energy", "makeup_total"):
        j = signals.INDEX[name]
        v[:, :, j] = 1000.0 + np.cumsum(rng.uniform(0, 0.01, (T, n)), axis=0)
    for name in ("circ_pump_running", "makeup_pump_running", "mains_power"):
        v[:, :, signals.INDEX[name]] = 1.0
    return v


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stations", type=int, default=100)
    ap.add_argument("--step", type=float, default=10.0, help="seconds between ticks")
    a = ap.parse_args()
    day = date(2026, 11, 20)
    period = period_for(day, "09:00", "Asia/Shanghai")
    t0, t1 = period.t0 - 900, period.t1 + 900
    ids = [f"hs{i:04d}" for i in range(a.stations)]
    values = synthetic_day(a.stations, t0, t1, a.step)
    enc = FleetEncoder("bench", [StationTags(i, f"换热站{i}", "一支线") for i in ids])
    with tempfile.TemporaryDirectory() as tmp:
        store = EmbeddedStore(Path(tmp) / "history.db", retention_days=3650)
        t = time.perf_counter()
        batch: list[bytes] = []
        for k in range(values.shape[0]):
            payload, _lines, _fields = enc.station_tick(values[k], round((t0 + k * a.step) * 1000))
            batch.append(payload)
            if len(batch) == 360 or k == values.shape[0] - 1:
                store.write(b"".join(batch))
                batch.clear()
        n_lines = values.shape[0] * a.stations
        print(f"setup: {n_lines:,} lines written in {time.perf_counter() - t:.1f} s")

        # 1. decoding one hour of lines
        lo = round(period.t0 * 1000)
        texts = [f for _s, _t, _st, f in store.rows(lo, lo + 3_600_000, "station")]
        t = time.perf_counter()
        bulk = parse_rows(texts)
        t_bulk = time.perf_counter() - t
        t = time.perf_counter()
        base = np.full((len(texts), signals.K), np.nan)
        for r, text in enumerate(texts):
            for key, val in parse_fields(text).items():
                base[r, signals.INDEX[key]] = float(val)
        t_base = time.perf_counter() - t
        assert np.array_equal(bulk, base, equal_nan=True)
        print(
            f"decode 1 h ({len(texts):,} lines): bulk {len(texts) / t_bulk:,.0f} lines/s, "
            f"parse_fields {len(texts) / t_base:,.0f} lines/s, ratio {t_base / t_bulk:.1f}x"
        )
        store.close()

        # 2. a whole report
        cfg = SimpleNamespace(site=SimpleNamespace(id="bench", name="基准测试"), stations=[])
        infos = [StationInfo(i, f"换热站{i}", (f"小区{i}",), 100_000.0) for i in ids]
        src = EmbeddedReader(Path(tmp) / "history.db", ids)
        t = time.perf_counter()
        rep = build_report(cfg, period, src, None, stations=infos)
        t_build = time.perf_counter() - t
        src.close()
        t = time.perf_counter()
        write_report(rep, Path(tmp) / "out")
        t_render = time.perf_counter() - t
        per_day = 86400 / a.step * a.stations
        print(
            f"report 24 h x {a.stations} stations at {a.step:g} s ({per_day:,.0f} lines): "
            f"read+aggregate {t_build:.2f} s ({per_day / t_build:,.0f} lines/s), "
            f"render CSV+XLSX+HTML {t_render:.2f} s"
        )


if __name__ == "__main__":
    main()
