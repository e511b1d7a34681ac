"""Soak: a generated fleet with random faults, plant time accelerated, for N minutes.

`simulate-station` serves the fleet in a SUBPROCESS (its own core) at `--speed` x plant
time and takes random faults on its control API (comm loss, power loss with and without
UPS, pipe bursts, leaks, stuck sensors), each cleared after a random plant duration.
The daemon runs in this process with the embedded historian and MQTT to a real
Mosquitto; a dispatch-screen client records what reaches the broker. At the end:

- samples: (station, tick) pairs the daemon heard  vs  `station` rows in the embedded store
- transitions: alarm transitions in the dispatch log  vs  transitions seen on MQTT
- RSS and open fds of this process after warm-up and at the end, against a stated bound

    python bench/soak.py                        # 500 stations, 30 minutes, speed x30
    python bench/soak.py --minutes 5 --stations 200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from alarms.dispatch_log import query_log  # noqa: E402
from stationd.app import Daemon  # noqa: E402
from stationd.config import load_config  # noqa: E402
from stationd.historian.embedded import EmbeddedStore  # noqa: E402
from tests.ops_helpers import MqttWatch, wait_for  # noqa: E402
from tests.servers import start_mosquitto  # noqa: E402

#: what the soak accepts as "no leak": growth from after warm-up to the end
RSS_BOUND_MB = 40.0  # plus 10 % of the warm RSS
FD_BOUND = 8
FAULT_KINDS = ("comm_loss", "power_loss", "power_loss_no_ups", "pipe_burst", "secondary_leak")
FAULT_KINDS += ("stuck_sensor",)


def free_block(n: int, rng: random.Random | None = None) -> int:
    """A base port with n consecutive free ports, below the kernel's ephemeral range
    (32768+), where a busy machine's outgoing connections cannot take one meanwhile."""
    rng = rng or random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - n)
        socks = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports found")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass
class SoakResult:
    stations: int
    seconds: float
    speed: float
    ticks: int = 0  # after warm-up (the RSS/fd window)
    ticks_total: int = 0  # committed ticks of the whole run (the samples' window)
    skipped: int = 0
    faults: int = 0
    samples_expected: int = 0
    samples_stored: int = 0
    transitions_logged: int = 0
    transitions_delivered: int = 0
    rss_start: float = 0.0
    rss_end: float = 0.0
    fds_start: int = 0
    fds_end: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def rss_ok(self) -> bool:
        return self.rss_end - self.rss_start <= RSS_BOUND_MB + 0.1 * self.rss_start

    @property
    def fds_ok(self) -> bool:
        return self.fds_end - self.fds_start <= FD_BOUND

    @property
    def ok(self) -> bool:
        return (
            self.samples_expected == self.samples_stored
            and self.transitions_logged == self.transitions_delivered
            and self.rss_ok
            and self.fds_ok
        )

    def lines(self) -> list[str]:
        def mark(ok: bool) -> str:
            return "OK" if ok else "FAIL"

        return [
            f"stationd soak: {self.stations} stations, {self.seconds:.0f} s wall "
            f"(plant x{self.speed:g} = {self.seconds * self.speed / 3600:.1f} plant h), "
            f"{os.cpu_count()} cores, simulator in its own process",
            f"ticks {self.ticks_total} ({self.ticks} after warm-up), skipped {self.skipped}, "
            f"faults injected {self.faults}",
            f"samples      expected {self.samples_expected:>9}  stored {self.samples_stored:>9}  "
            f"{mark(self.samples_expected == self.samples_stored)}",
            f"transitions  logged   {self.transitions_logged:>9}  on MQTT {self.transitions_delivered:>8}  "
            f"{mark(self.transitions_logged == self.transitions_delivered)}",
            f"RSS MB       start {self.rss_start:>7.1f}  end {self.rss_end:>7.1f}  "
            f"(bound +{RSS_BOUND_MB:.0f} MB + 10 %)  {mark(self.rss_ok)}",
            f"open fds     start {self.fds_start:>7}  end {self.fds_end:>7}  "
            f"(bound +{FD_BOUND})  {mark(self.fds_ok)}",
            *self.notes,
        ]


def _generate(tmp: Path, stations: int, opcua_share: float) -> Path:
    fleet = tmp / "fleet.yaml"
    cmd = [sys.executable, "-m", "tools.simulate_station.cli", "generate"]
    cmd += ["--count", str(stations), "--out", str(fleet), "--opcua-share", str(opcua_share)]
    base = free_block(5)  # 4 Modbus ports, then the OPC UA server
    cmd += ["--ports", "4", "--modbus-port", str(base), "--opcua-port", str(base + 4)]
    subprocess.run(
        cmd,
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return fleet


def _start_simulator(fleet: Path, speed: float, control_port: int) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "tools.simulate_station.cli", "run", "--config", str(fleet)]
    cmd += ["--speed", str(speed), "--update-interval", "1.0"]
    cmd += ["--control-port", str(control_port), "--seed", "7"]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
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
    raise RuntimeError("simulator did not print READY")


def _inject(control: str, body: dict[str, object]) -> None:
    req = urllib.request.Request(
        f"{control}/faults",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        r.read()


async def _faults(
    control: str, ids: list[str], every: float, rng: random.Random, res: SoakResult
) -> None:
    """Inject a random fault every `every` wall seconds; each clears itself later."""
    signals = ["secondary_supply_pressure", "secondary_flow", "outdoor_temp", "makeup_flow"]
    while True:
        await asyncio.sleep(every * rng.uniform(0.5, 1.5))
        kind = rng.choice(FAULT_KINDS)
        body: dict[str, object] = {
            "kind": "power_loss" if kind.startswith("power_loss") else kind,
            "station": rng.choice(ids),
            "duration": rng.uniform(60, 900),  # plant seconds
        }
        if kind == "power_loss_no_ups":
            body["ups"] = False
        if kind == "stuck_sensor":
            body["signal"] = rng.choice(signals)
        try:
            await asyncio.to_thread(_inject, control, body)
            res.faults += 1
        except OSError as exc:
            logging.getLogger("soak").warning("fault injection failed: %s", exc)


async def soak(
    stations: int = 500,
    seconds: float = 1800.0,
    speed: float = 30.0,
    fault_every: float = 5.0,
    opcua_share: float = 0.1,
    seed: int = 1,
    workdir: Path | None = None,
) -> SoakResult:
    res = SoakResult(stations, seconds, speed)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp_s:
        tmp = Path(tmp_s)
        fleet = _generate(tmp, stations, opcua_share)
        control_port = free_block(1)
        sim = await asyncio.to_thread(_start_simulator, fleet, speed, control_port)
        try:
            with start_mosquitto(tmp) as broker:
                cfg = load_config(fleet)
                cfg = cfg.with_sections(
                    mqtt={"port": broker.port, "reconnect_min_s": 1, "reconnect_max_s": 2},
                    http={"enabled": False},
                )
                prefix = f"heating/{cfg.site.id}"
                watch = MqttWatch(broker.port, prefix, "soak-screen")
                try:
                    await _run(
                        res,
                        cfg,
                        tmp / "state",
                        f"http://127.0.0.1:{control_port}",
                        watch,
                        fault_every,
                        seed,
                    )
                    logged = [
                        (e.data["incident_id"], e.data["time"], e.data["to_state"])
                        for e in query_log(
                            tmp / "state" / "alarms", kinds=["transition"], limit=10**7
                        )
                    ]
                    res.transitions_logged = len(logged)

                    def delivered() -> int:
                        seen = {
                            (t["incident_id"], t["time"], t["to_state"]) for t in watch.events()
                        }
                        return sum(1 for k in logged if k in seen)

                    # the broker hands the last ones over after the daemon's drain
                    with contextlib.suppress(TimeoutError):
                        await wait_for(lambda: delivered() >= len(logged), 15, step=0.2)
                    res.transitions_delivered = delivered()
                finally:
                    watch.close()
        finally:
            sim.terminate()
            sim.wait(10)
        store = EmbeddedStore(tmp / "state" / "history.db")
        try:
            res.samples_stored = store.count("station")
        finally:
            store.close()
    return res


async def _run(
    res: SoakResult,
    cfg: object,
    state: Path,
    control: str,
    watch: MqttWatch,
    fault_every: float,
    seed: int,
) -> None:
    daemon = Daemon(cfg, state_dir=state)  # type: ignore[arg-type]
    heard = [0]

    def count(*_: object) -> None:
        heard[0] += int((daemon.frame.consecutive_misses == 0).sum())

    daemon.listeners.append(count)
    task = asyncio.create_task(daemon.run(), name="daemon")
    injector: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(120):
            await daemon.poller.first_full_poll.wait()
        await asyncio.sleep(min(10.0, res.seconds / 6))  # warm-up: caches, sqlite, first alarms
        res.rss_start, res.fds_start = rss_mb(), fd_count()
        ticks0 = daemon.poller.clock.ticks
        ids = list(daemon.frame.station_ids)
        rng = random.Random(seed)
        injector = asyncio.create_task(_faults(control, ids, fault_every, rng, res))
        await asyncio.sleep(res.seconds)
        res.rss_end, res.fds_end = rss_mb(), fd_count()
        res.ticks = daemon.poller.clock.ticks - ticks0
        res.skipped = daemon.poller.clock.skipped
    finally:
        if injector is not None:
            injector.cancel()
            await asyncio.gather(injector, return_exceptions=True)
        daemon.request_stop()
        await asyncio.wait_for(task, 60)
    res.samples_expected = heard[0]
    res.ticks_total = daemon.frame.count
    res.notes.append(
        f"daemon: read failures {int(daemon.poller.read_failures.sum())}, reconnects "
        f"{int(daemon.poller.reconnects.sum())}, historian lines {daemon.historian.lines_written}, "
        f"late results {daemon.poller.late}, handler overruns {daemon.poller.handler_overruns}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--stations", type=int, default=500)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--speed", type=float, default=30.0, help="plant seconds per wall second")
    ap.add_argument("--fault-every", type=float, default=5.0, help="wall seconds, on average")
    ap.add_argument("--opcua-share", type=float, default=0.1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    res = asyncio.run(
        soak(args.stations, args.minutes * 60, args.speed, args.fault_every, args.opcua_share)
    )
    for line in res.lines():
        print(line)
    sys.exit(0 if res.ok else 1)


if __name__ == "__main__":
    main()
