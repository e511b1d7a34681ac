"""Historian benchmark: prints figures, asserts nothing.

1. Line-protocol encoding of one 1,000-station tick: stationd's compiled FleetEncoder vs
   influxdb-client Point objects built from the same array, in the same run.
2. The disk queue's overhead per batch (put + fetch + ack), synchronous=FULL and NORMAL.
3. Sustained write throughput into a real VictoriaMetrics through encoder -> disk queue
   -> forwarder -> influxdb-client, in field values per second; then the same into a real
   InfluxDB 1.x through the v1 sink (/write), as a ratio to VictoriaMetrics in the run.

    python bench/bench_historian.py [--stations 1000] [--ticks 60]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from influxdb_client import Point
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stationd import signals  # noqa: E402
from stationd.historian import Historian  # noqa: E402
from stationd.historian.lineproto import DECIMALS, FleetEncoder, StationTags  # noqa: E402
from stationd.historian.queue import DiskQueue  # noqa: E402
from tests.servers import start_influxdb, start_victoria_metrics  # noqa: E402


def fleet(n: int) -> list[StationTags]:
    return [
        StationTags(f"hs{i:04d}", f"幸福里{i}号换热站", f"{i % 12}号支线", signals.NAMES)
        for i in range(n)
    ]


def plc_tick(rng: np.random.Generator, n: int) -> np.ndarray:
    """What the poller hands over: register integers times the tag's scale, a few NaN."""
    dec = np.array([DECIMALS[s] for s in signals.NAMES], dtype=float)
    v = rng.integers(0, 60000, size=(n, signals.K)) * (10.0**-dec)
    v[rng.random((n, signals.K)) < 0.002] = np.nan
    return v


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_encoding(n: int) -> None:
    stations = fleet(n)
    enc = FleetEncoder("site1", stations)
    v = plc_tick(np.random.default_rng(1), n)
    ts = int(time.time()) * 1000
    enc.station_tick(v, ts)  # compile the plan once, as the daemon does at start-up

    def ours() -> bytes:
        return enc.station_tick(v, ts)[0]

    def points() -> bytes:
        rows = v.tolist()
        lines = []
        for st, row in zip(stations, rows, strict=True):
            p = (
                Point("station")
                .tag("site", "site1")
                .tag("station", st.id)
                .tag("name", st.name)
                .tag("branch", st.branch)
                .time(ts)
            )
            for name, x in zip(signals.NAMES, row, strict=True):
                if x == x:  # NaN: bad quality, not written
                    p.field(name, x)
            lines.append(p.to_line_protocol())
        return "\n".join(lines).encode()

    a = best_of(ours, 30)
    b = best_of(points, 5)
    good = np.where(np.isfinite(v), v, 1.0)
    a_full = best_of(lambda: enc.station_tick(good, ts), 30)
    values = int(np.isfinite(v).sum())
    print(f"encoding, one tick of {n} stations x {signals.K} signals ({values} values):")
    print(f"  FleetEncoder      {a * 1e3:8.2f} ms  {values / a / 1e6:6.2f} M values/s")
    print(f"    (no NaN at all: {a_full * 1e3:.2f} ms, the whole fleet in one % call)")
    print(f"  Point objects     {b * 1e3:8.2f} ms  {values / b / 1e6:6.2f} M values/s")
    print(f"  ratio             {b / a:8.1f} x faster (target >= 10x)")
    print(f"  payload           {len(ours()) / 1024:8.0f} KiB vs {len(points()) / 1024:.0f} KiB")


def bench_queue(tmp: Path, n: int) -> None:
    enc = FleetEncoder("site1", fleet(n))
    payload = enc.station_tick(plc_tick(np.random.default_rng(2), n), 0)[0]
    print(f"disk queue, per batch of {n} lines ({len(payload) / 1024:.0f} KiB): put + fetch + ack")
    for sync in ("FULL", "NORMAL"):
        q = DiskQueue(tmp / f"q-{sync}.db", synchronous=sync, registry=CollectorRegistry())  # type: ignore[arg-type]
        samples = []
        for _ in range(40):
            t = time.perf_counter()
            q.put(payload, n)
            b = q.first_since(0.0)
            assert b is not None
            q.ack(b.id)
            samples.append(time.perf_counter() - t)
        q.close()
        print(
            f"  synchronous={sync:6s} median {statistics.median(samples) * 1e3:6.2f} ms"
            f"  p90 {sorted(samples)[int(0.9 * len(samples))] * 1e3:6.2f} ms"
        )


async def _sustained(section: dict, tmp: Path, n: int, ticks: int) -> tuple[Historian, float, bool]:
    h = Historian.from_config(section, "site1", fleet(n), tmp, registry=CollectorRegistry())
    await h.start()
    rng = np.random.default_rng(3)
    frames = [plc_tick(rng, n) for _ in range(8)]
    t0 = int(time.time()) - ticks
    start = time.perf_counter()
    for k in range(ticks):
        h.write_tick(t0 + k, frames[k % len(frames)])
        await asyncio.sleep(0)  # let the flusher and sender run between ticks
    drained = await h.forwarder.wait_empty(300.0)
    elapsed = time.perf_counter() - start
    await h.stop()
    return h, elapsed, drained


async def bench_vm(tmp: Path, n: int, ticks: int) -> float:
    with start_victoria_metrics(tmp) as vm:
        section = {
            "influxdb": {"url": vm.url, "batch_size": 5 * n, "flush_interval_s": 0.2},
            "queue": {"drain_rate": 1000},
        }
        h, elapsed, drained = await _sustained(section, tmp / "state-vm", n, ticks)
        text = await asyncio.to_thread(_get, f"{vm.url}/metrics")
        inserted = next(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith('vm_rows_inserted_total{type="influx"}')
        )
        print(f"sustained write into VictoriaMetrics through the queue ({ticks} ticks of {n}):")
        print(
            f"  {h.fields_written} field values in {elapsed:.2f} s = "
            f"{h.fields_written / elapsed:,.0f} values/s (target >= 100,000); "
            f"{h.forwarder.sent_batches} batches; drained={drained}; "
            f"VictoriaMetrics counted {inserted:,.0f} rows"
        )
        return h.fields_written / elapsed


async def bench_influxdb1(tmp: Path, n: int, ticks: int, vm_rate: float) -> None:
    """The same through the v1 sink (/write) into Debian's InfluxDB 1.6."""
    with start_influxdb(tmp) as ix:
        section = {
            "influxdb": {"url": ix.url, "api": "v1", "db": ix.db, "token_env": None,
                         "batch_size": 5 * n, "flush_interval_s": 0.2},
            "queue": {"drain_rate": 1000},
        }  # fmt: skip
        h, elapsed, drained = await _sustained(section, tmp / "state-ix", n, ticks)
        rate = h.fields_written / elapsed
        print(f"sustained write into InfluxDB 1.x (/write) through the queue ({ticks} ticks):")
        print(
            f"  {h.fields_written} field values in {elapsed:.2f} s = {rate:,.0f} values/s "
            f"= {rate / vm_rate:.2f}x VictoriaMetrics in this run; "
            f"{h.forwarder.sent_batches} batches; drained={drained}"
        )


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stations", type=int, default=1000)
    ap.add_argument("--ticks", type=int, default=60)
    args = ap.parse_args()
    bench_encoding(args.stations)
    with tempfile.TemporaryDirectory() as d:
        bench_queue(Path(d), args.stations)
        vm_rate = asyncio.run(bench_vm(Path(d), args.stations, args.ticks))
        asyncio.run(bench_influxdb1(Path(d), args.stations, args.ticks, vm_rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
