"""Benchmark: the whole daemon polling 1,000 simulated Modbus stations at a 1 s interval.

`simulate-station` serves a generated fleet in a SUBPROCESS (its own process, sharing the
machine's cores with this one). In the same run, on the same servers:
  1. baseline: a bare pymodbus client loop, one connection per station, sending the same
     block requests once per tick (same pacing, same concurrency, same timeout, no retry
     within a tick, a dropped connection reopened at the next tick);
  2. the daemon: poller + fleet frame + detection + historian queue, no HTTP.
Printed for both: ticks kept vs missed (a tick is missed when any station's read of it
failed or the tick was skipped), requests/s, failed reads, read latency p50/p99, CPU share
of one core, RSS; then the ratios daemon / bare. Because both are paced at one read per
station per tick, the paced request-rate ratio is ~1.0 whenever neither misses; so a
capacity run follows (flat out, same number of connections, `bench_modbus`' server and
readers): the driver's read path vs bare pymodbus. Targets (issue 2): no missed ticks,
request rate >= 80 % of bare, RSS <= 300 MB.

    python bench/bench_poller.py                      # 1000 stations, 30 s each
    python bench/bench_poller.py --stations 200 --seconds 10 --capacity-rounds 0
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from pymodbus.client import AsyncModbusTcpClient  # noqa: E402

from bench import bench_modbus  # noqa: E402
from bench.soak import free_block, rss_mb  # noqa: E402
from drivers.modbus_plan import ReadPlan, plan_station  # noqa: E402
from stationd.app import Daemon  # noqa: E402
from stationd.config import Config, ModbusStation, load_config  # noqa: E402
from stationd.poller import TickReport  # noqa: E402
from stationd.ticks import next_tick  # noqa: E402


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def start_simulator(cfg_path: Path) -> subprocess.Popen[str]:
    log_path = cfg_path.with_suffix(".sim.log")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.simulate_station.cli",
            "run",
            "--config",
            str(cfg_path),
            "--update-interval",
            "1.0",
            "--control-port",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log_path.open("w"),
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        if line.strip() == "READY":
            return proc
        if time.monotonic() > deadline:
            break
    proc.kill()
    tail = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"simulator did not print READY; its log ends:\n{tail}")


async def bare_loop(cfg: Config, seconds: float) -> dict[str, float]:
    """Same requests, same pacing, same concurrency, no driver: one pymodbus client per
    station, every station's blocks requested at each tick, inside the same timeout. As
    in the daemon, a client never retries within a tick (retries=0) and a connection that
    dropped is reopened at the next tick."""
    interval, timeout = cfg.defaults.interval, cfg.defaults.timeout
    stations = [s for s in cfg.stations if isinstance(s, ModbusStation)]
    plans = [plan_station(s, cfg.defaults) for s in stations]
    clients = [
        AsyncModbusTcpClient(
            s.modbus.host, port=s.modbus.port, timeout=timeout, retries=0, reconnect_delay=0
        )
        for s in stations
    ]
    await asyncio.gather(*(c.connect() for c in clients))
    fc = {
        "holding": "read_holding_registers",
        "input": "read_input_registers",
        "coil": "read_coils",
        "discrete": "read_discrete_inputs",
    }
    done = failed = 0
    loop = asyncio.get_running_loop()
    latency: list[float] = []

    async def one(c: AsyncModbusTcpClient, plan: ReadPlan, unit: int, t0: float) -> None:
        nonlocal done, failed
        try:
            async with asyncio.timeout(timeout):
                if not c.connected:
                    await c.connect()
                for b in plan.blocks:
                    rr = await getattr(c, fc[b.kind])(b.start, count=b.count, device_id=unit)
                    if rr.isError():
                        raise RuntimeError(rr)
                    done += 1
            latency.append(loop.time() - t0)
        except Exception:
            failed += 1

    t_end = time.time() + seconds
    tick = next_tick(time.time(), interval)
    kept = missed = 0
    c0, w0, d0 = cpu_s(), time.monotonic(), done
    while tick < t_end:
        await asyncio.sleep(max(0.0, tick - time.time()))
        before, t0 = failed, loop.time()
        await asyncio.gather(
            *(
                one(c, p, s.modbus.unit_id, t0)
                for c, p, s in zip(clients, plans, stations, strict=True)
            )
        )
        if failed == before:
            kept += 1
        else:
            missed += 1
        tick += interval
    wall = time.monotonic() - w0
    cpu = cpu_s() - c0
    for c in clients:
        c.close()
    return {
        "ticks_kept": kept,
        "ticks_missed": missed,
        "rps": (done - d0) / wall,
        "cpu": cpu / wall,
        "rss": rss_mb(),
        "read_failures": failed,
        "p50_ms": 1000 * float(np.median(latency)) if latency else float("nan"),
        "p99_ms": 1000 * float(np.percentile(latency, 99)) if latency else float("nan"),
    }


async def daemon_run(cfg: Config, seconds: float, state: Path) -> dict[str, float]:
    cfg = cfg.with_sections(http={"enabled": False})
    daemon = Daemon(cfg, state_dir=state)
    blocks = np.asarray(
        [
            len(plan_station(s, cfg.defaults).blocks) if isinstance(s, ModbusStation) else 0
            for s in cfg.stations
        ]
    )
    task = asyncio.create_task(daemon.run())
    # let it connect everything first
    async with asyncio.timeout(60):
        await daemon.poller.first_full_poll.wait()
    poller, frame = daemon.poller, daemon.frame
    requests = incomplete = 0
    latency: list[np.ndarray] = []

    def count(tick: float, report: TickReport, *_: object) -> None:
        nonlocal requests, incomplete
        heard = frame.last_good_tick == tick  # stations whose read of this tick came in
        requests += int(blocks[heard].sum())
        latency.append(poller.latency[heard].copy())
        if report.answered < report.stations:
            incomplete += 1

    f0, s0, m0 = frame.count, poller.clock.skipped, int(poller.read_failures.sum())
    c0, w0 = cpu_s(), time.monotonic()
    daemon.listeners.append(count)
    await asyncio.sleep(seconds)
    daemon.listeners.remove(count)
    wall = time.monotonic() - w0
    cpu = cpu_s() - c0
    ticks = frame.count - f0
    lat = np.concatenate(latency) if latency else np.array([np.nan])
    out = {
        "ticks_kept": ticks - incomplete,
        "ticks_missed": incomplete + poller.clock.skipped - s0,
        "rps": requests / wall,
        "cpu": cpu / wall,
        "rss": rss_mb(),
        "read_failures": int(poller.read_failures.sum()) - m0,
        "p50_ms": 1000 * float(np.median(lat)),
        "p99_ms": 1000 * float(np.percentile(lat, 99)),
        "late": poller.late,
        "overruns": poller.handler_overruns,
        "detect_ms": daemon.detect_seconds * 1000,
    }
    daemon.request_stop()
    await asyncio.wait_for(task, 30)
    return out


async def capacity(n: int, seconds: float, rounds: int) -> tuple[float, float]:
    """Flat-out request rate at the same concurrency (n connections), ours vs bare, on
    bench_modbus' own server subprocess: medians over alternating rounds (req/s)."""
    ports = bench_modbus.free_ports(bench_modbus.N_PORTS)
    server = bench_modbus.start_server(ports)
    try:
        station = bench_modbus.template_station()
        n_blocks = len(plan_station(station, bench_modbus.DEFAULTS).blocks)
        stations = bench_modbus.fleet(station, ports, n)
        rates: dict[str, list[float]] = {"bare": [], "ours": []}
        for _ in range(rounds):
            for name, make in (
                ("bare", bench_modbus.bare_readers),
                ("ours", bench_modbus.our_readers),
            ):
                readers, close = await make(stations)
                reads, wall, _cpu = await bench_modbus.closed_loop(readers, seconds)
                close()
                rates[name].append(reads * n_blocks / wall)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return statistics.median(rates["ours"]), statistics.median(rates["bare"])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--stations", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--poll-spread", type=float, default=None, help="override defaults.poll_spread")
    ap.add_argument("--capacity-seconds", type=float, default=5.0)
    ap.add_argument("--capacity-rounds", type=int, default=3, help="0 = skip the capacity run")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    load0 = os.getloadavg()[0]
    # capacity first, while this process is small (a 230 MB heap makes every GC pass dearer)
    cap = (
        asyncio.run(capacity(args.stations, args.capacity_seconds, args.capacity_rounds))
        if args.capacity_rounds > 0
        else None
    )
    with tempfile.TemporaryDirectory() as tmp:
        fleet = Path(tmp) / "fleet.yaml"
        subprocess.run(
            [
                sys.executable, "-m", "tools.simulate_station.cli", "generate",
                "--count", str(args.stations), "--out", str(fleet), "--opcua-share", "0",
                "--ports", "4", "--modbus-port", str(free_block(4)),
            ],
            cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        cfg = load_config(fleet)
        update = {"interval": args.interval, "timeout": args.interval * 0.8}
        if args.poll_spread is not None:
            update["poll_spread"] = args.poll_spread
        d = cfg.defaults.model_copy(update=update)
        cfg = cfg.model_copy(update={"defaults": d})
        sim = start_simulator(fleet)
        try:
            base_rss = rss_mb()
            bare = asyncio.run(bare_loop(cfg, args.seconds))
            ours = asyncio.run(daemon_run(cfg, args.seconds, Path(tmp) / "state"))
        finally:
            sim.terminate()
            sim.wait(10)
    print(
        f"stationd poller benchmark: {args.stations} Modbus stations, interval {args.interval}s, "
        f"timeout {cfg.defaults.timeout:.2f}s, poll_spread {cfg.defaults.poll_spread:g}, "
        f"{args.seconds:.0f}s per run, {os.cpu_count()} "
        f"cores (load average {load0:.1f} at start), simulator in its own process"
    )
    print(
        f"{'':19}{'ticks kept':>11}{'missed':>8}{'requests/s':>12}{'failed reads':>14}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'CPU share':>11}{'RSS MB':>8}"
    )
    for name, r in (("bare pymodbus loop", bare), ("stationd daemon", ours)):
        print(
            f"{name:19}{r['ticks_kept']:>11.0f}{r['ticks_missed']:>8.0f}{r['rps']:>12.0f}"
            f"{r['read_failures']:>14.0f}{r['p50_ms']:>8.1f}{r['p99_ms']:>8.1f}"
            f"{100 * r['cpu']:>10.1f}%{r['rss']:>8.0f}"
        )
    rate = ours["rps"] / bare["rps"]
    print(
        f"paced request rate daemon/bare: {rate:.2f} (target >= 0.80: "
        f"{'OK' if rate >= 0.8 else 'BELOW TARGET'}); CPU daemon/bare "
        f"{ours['cpu'] / max(bare['cpu'], 1e-9):.2f}x (the daemon also runs detection, "
        f"frame and historian)"
    )
    ok_ticks = ours["ticks_missed"] == 0
    print(
        f"daemon: missed ticks {ours['ticks_missed']:.0f} (target 0: "
        f"{'OK' if ok_ticks else 'MISSED'}), late results {ours['late']}, handler overruns "
        f"{ours['overruns']}, last detection pass {ours['detect_ms']:.2f} ms, RSS "
        f"{ours['rss']:.0f} MB (target <= 300 MB: {'OK' if ours['rss'] <= 300 else 'OVER'}; "
        f"process at start {base_rss:.0f} MB)"
    )
    if cap is not None:
        c_ours, c_bare = cap
        print(
            f"capacity (flat out, {args.stations} connections, bench_modbus server, medians of "
            f"{args.capacity_rounds} alternating {args.capacity_seconds:g}s runs): driver.read() "
            f"{c_ours:.0f} req/s vs bare pymodbus {c_bare:.0f} req/s = {c_ours / c_bare:.2f} "
            f"(target >= 0.80: {'OK' if c_ours / c_bare >= 0.8 else 'BELOW TARGET'})"
        )


if __name__ == "__main__":
    main()
