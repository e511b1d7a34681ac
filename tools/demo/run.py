"""The demo itself: a simulated fleet and the daemon together, with a live terminal view.

A newcomer's first command: no external server, no config to write. The simulator and
the daemon share config/stations.yaml, moved onto free loopback ports so the demo never
collides with anything already running; state goes to a temporary directory unless one
is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import tempfile
from pathlib import Path

import numpy as np

from stationd.app import Daemon
from stationd.config import Config, endpoint_ports, remap_ports
from stationd.finding_stream import FindingChange
from stationd.findings import Finding
from stationd.liveview import render
from stationd.poller import TickReport
from tools.simulate_station.simulator import Simulator


def loss_rate(daemon: Daemon) -> np.ndarray:
    """The detector's rolling make-up / circulating ratio per station (its public figures)."""
    return daemon.detector.derived()["loss_rate_pct"] / 100.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_demo(
    cfg: Config, speed: float = 1.0, duration: float | None = None, state_dir: Path | None = None
) -> int:
    port_map = {p: free_port() for p in endpoint_ports(cfg)}
    cfg = remap_ports(cfg, port_map)
    cfg = cfg.with_sections(http=cfg.http.model_copy(update={"port": 0}))
    tty = sys.stdout.isatty()
    with contextlib.ExitStack() as files:
        if state_dir is None:
            state_dir = Path(
                files.enter_context(tempfile.TemporaryDirectory(prefix="stationd-demo-"))
            )
        async with Simulator(cfg, speed=speed, control_port=free_port()) as sim:
            daemon = Daemon(cfg, state_dir=state_dir)
            hint = (
                f"inject a fault: simulate-station fault --control {sim.control_url} "
                "inject secondary_leak --station hs002 --size 2   (Ctrl-C to stop)"
            )
            print(f"simulator up: {', '.join(sim.describe())}", flush=True)
            print(hint, flush=True)

            def show(
                tick: float,
                report: TickReport,
                findings: list[Finding],
                changes: list[FindingChange],
            ) -> None:
                if tty:
                    sys.stdout.write(
                        "\x1b[H\x1b[2J"
                        + render(daemon.poller, findings, tick, loss_rate(daemon))
                        + "\n\n"
                        + hint
                        + "\n"
                    )
                    sys.stdout.flush()
                else:
                    kinds = ",".join(sorted({f.kind for f in findings})) or "-"
                    print(
                        f"tick {tick:.0f} answered {report.answered}/{report.stations} findings {kinds}",
                        flush=True,
                    )
                    for c in changes:
                        print(
                            f"  {c.state} {c.finding.alarm_id}: {c.finding.message_en}", flush=True
                        )

            daemon.listeners.append(show)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, daemon.request_stop)
            if duration is not None:
                loop.call_later(duration, daemon.request_stop)
            await daemon.run()
    return 0
