"""The daemon polls a simulated Modbus + OPC UA fleet for real (loopback, free ports)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest

from stationd import signals
from stationd.app import Daemon
from stationd.config import ModbusStation
from stationd.poller import LinkState
from tests.daemon_harness import fast_config, fleet, until
from tools.simulate_station.simulator import Simulator


def _resolution(st: object, name: str) -> float:
    """What the wire format can carry for this signal: half a step of its scale."""
    tag = st.tags[name]  # type: ignore[attr-defined]
    if isinstance(st, ModbusStation) and tag.type in ("int16", "uint16", "int32", "uint32"):
        return abs(tag.scale) / 2 + 1e-9
    return 0.0


async def test_every_signal_of_modbus_and_opcua_stations_matches_the_simulator(
    tmp_path: Path,
) -> None:
    cfg = fast_config()
    # A plant frozen in time (speed ~0) holds still, so the simulator's readings and what
    # the daemon read over the wire must agree to the wire format's resolution.
    async with fleet(cfg, tmp_path, {"speed": 1e-9}) as (sim, daemon):
        await until(
            daemon, lambda: daemon.frame.count >= 2 and daemon.poller.first_full_poll.is_set()
        )
        await until(daemon, lambda: True)  # one more complete tick
        latest = daemon.frame.latest()
        readings = sim.readings
        checked = 0
        for i, st in enumerate(cfg.stations):
            for name in st.signals:
                if name not in signals.INDEX:
                    continue
                got = float(latest[i, signals.INDEX[name]])
                want = float(readings[i, signals.INDEX[name]])
                assert not math.isnan(got), f"{st.id}.{name} missing"
                # float32 frame: 7 significant digits
                tol = _resolution(st, name) + abs(want) * 2e-7 + 1e-6
                assert abs(got - want) <= tol, (
                    f"{st.id} {st.protocol} {name}: read {got}, simulator {want}"
                )
                checked += 1
        assert checked >= 8 * 18
        # extras (circ_pump_current on PLC model A) reach the tick report, not the frame
        assert daemon.poller.supervisors[0].has_extras


async def test_silent_station_is_marked_within_its_timeout_while_others_keep_ticking(
    tmp_path: Path,
) -> None:
    # A 1 s tick (0.6 s timeout): the healthy stations must never miss, even on a busy
    # CI machine where simulator and daemon share one event loop.
    cfg = fast_config(interval=1.0)
    flow = signals.INDEX["secondary_flow"]
    async with fleet(cfg, tmp_path) as (sim, daemon):
        # An OPC UA station in subscribe mode answers before its first data-change
        # notifications have all arrived: wait until every station has a flow value.
        await until(daemon, lambda: not np.isnan(daemon.frame.latest()[:, flow]).any())
        await until(daemon, lambda: True)
        idx = daemon.frame.index["hs002"]
        sim.inject(kind="comm_loss", station="hs002")
        ticks_before = daemon.frame.count
        ticks = await until(daemon, lambda: daemon.frame.consecutive_misses[idx] >= 1, timeout=10)
        # marked at the first tick after the simulator stopped answering (one update late at most)
        assert ticks <= 3
        await until(daemon, lambda: daemon.frame.consecutive_misses[idx] >= 3, timeout=10)
        others = np.ones(daemon.frame.n, dtype=bool)
        others[idx] = False
        assert (daemon.frame.consecutive_misses[others] == 0).all()
        # no tick of the fleet was skipped while one station was dead
        assert daemon.poller.clock.skipped == 0
        assert daemon.frame.count - ticks_before >= 3
        values, times = daemon.frame.last(4)
        assert np.allclose(np.diff(times), cfg.defaults.interval)
        assert not np.isnan(values[others][:, signals.INDEX["secondary_flow"], :]).any()


async def test_simulator_restart_is_reconnected_without_restarting_the_daemon(
    tmp_path: Path,
) -> None:
    cfg = fast_config()
    sim_cm = Simulator(cfg)
    await sim_cm.__aenter__()
    daemon = Daemon(cfg, state_dir=tmp_path / "state")
    task = asyncio.create_task(daemon.run())
    try:
        await until(daemon, lambda: daemon.poller.first_full_poll.is_set())
        await sim_cm.__aexit__(None, None, None)
        await until(daemon, lambda: (daemon.frame.consecutive_misses >= 2).all(), timeout=15)
        assert all(s.state != LinkState.CONNECTED for s in daemon.poller.supervisors)
        sim_cm = Simulator(cfg)
        await sim_cm.__aenter__()
        await until(daemon, lambda: (daemon.frame.consecutive_misses == 0).all(), timeout=30)
        assert (daemon.poller.reconnects >= 1).all()
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 15)
        await sim_cm.__aexit__(None, None, None)


@pytest.mark.parametrize("interval", [0.5])
async def test_ticks_are_wall_clock_aligned(tmp_path: Path, interval: float) -> None:
    cfg = fast_config(interval=interval)
    async with fleet(cfg, tmp_path) as (_sim, daemon):
        await until(daemon, lambda: daemon.frame.count >= 3)
        _, times = daemon.frame.last(3)
        assert np.allclose(np.mod(times, interval), 0.0, atol=1e-6)
