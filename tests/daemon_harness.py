"""Run the real daemon against the real simulator on free loopback ports, in one loop.

Used by the integration tests: `async with fleet(cfg) as (sim, daemon)` starts the
simulator's Modbus/OPC UA servers and the daemon (health on a free port, state in a temp
dir) and stops both afterwards. `until(daemon, predicate)` waits tick by tick, never on
a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from stationd.app import Daemon
from stationd.config import Config, endpoint_ports, load_config, remap_ports
from tests.servers import free_port
from tools.simulate_station.simulator import Simulator

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "stations.yaml"


def fast_config(cfg: Config | None = None, interval: float = 0.5, **defaults: Any) -> Config:
    """The example fleet (or cfg) with a short tick and quick reconnects, on free ports."""
    cfg = cfg or load_config(EXAMPLE)
    d = cfg.defaults.model_copy(
        update={
            "interval": interval,
            "timeout": interval * 0.6,
            "connect_timeout": 1.0,
            "backoff_initial": 0.2,
            "backoff_max": 1.0,
            **defaults,
        }
    )
    cfg = remap_ports(cfg, {p: free_port() for p in endpoint_ports(cfg)})
    return cfg.with_sections(defaults=d, http={"port": 0})


@contextlib.asynccontextmanager
async def fleet(
    cfg: Config, tmp_path: Path, sim_kwargs: dict[str, Any] | None = None
) -> AsyncIterator[tuple[Simulator, Daemon]]:
    async with Simulator(cfg, **(sim_kwargs or {})) as sim:
        daemon = Daemon(cfg, state_dir=tmp_path / "state")
        task = asyncio.create_task(daemon.run(), name="daemon")
        try:
            yield sim, daemon
        finally:
            daemon.request_stop()
            async with asyncio.timeout(15):
                await task


async def until(daemon: Daemon, predicate: Callable[[], bool], timeout: float = 20.0) -> int:
    """Wait, tick by tick, until predicate() is true; returns the ticks it took."""
    ticked = asyncio.Event()

    def on_tick(*_: Any) -> None:
        ticked.set()

    daemon.listeners.append(on_tick)
    ticks = 0
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                ticked.clear()
                await ticked.wait()
                ticks += 1
    finally:
        daemon.listeners.remove(on_tick)
    return ticks
