"""Staggered polling (`defaults.poll_spread`): each station reads at its own stable offset
into the tick, the sample still carries the tick's time, and no tick loses a station."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from drivers.factory import make_driver
from stationd.frame import FleetFrame
from stationd.poller import Poller
from tests.daemon_harness import fast_config, fleet, until


def offsets(poller: Poller) -> list[float]:
    return [sup.start_offset for sup in poller.supervisors]


async def test_reads_start_at_stable_offsets_and_keep_the_tick_time(tmp_path: Path) -> None:
    cfg = fast_config(poll_spread=0.5)
    timeout = cfg.defaults.timeout
    async with fleet(cfg, tmp_path) as (_sim, daemon):
        poller = daemon.poller
        slots = offsets(poller)
        assert all(0.0 <= s < 0.5 * timeout for s in slots)
        assert len(set(slots)) == len(slots)  # one slot per station, not one burst
        started: dict[int, list[float]] = {sup.index: [] for sup in poller.supervisors}
        for sup in poller.supervisors:
            read = sup.driver.read

            async def timed(sup: Any = sup, read: Any = read) -> Any:
                # when, after its tick opened, this station's request actually went out
                started[sup.index].append(poller.clock.wall() - poller.clock.current)
                return await read()

            sup.driver.read = timed  # type: ignore[method-assign]
        await until(daemon, lambda: poller.first_full_poll.is_set())
        n0 = daemon.frame.count
        await until(daemon, lambda: daemon.frame.count >= n0 + 4)
        # every tick of the last four held every station, stamped on the tick grid
        times = daemon.frame.times
        for k in range(4):
            col = (daemon.frame.head - k) % daemon.frame.window
            assert not np.isnan(daemon.frame.values[:, :, col]).all(axis=1).any()
            tick = float(times[col])
            assert abs(tick / cfg.defaults.interval - round(tick / cfg.defaults.interval)) < 1e-6
        for sup in poller.supervisors:
            late = started[sup.index][-3:]
            assert late, sup.station.id
            # never before its slot; after it by no more than loop latency
            assert all(sup.start_offset - 0.005 <= t < sup.start_offset + 0.15 for t in late), (
                sup.station.id,
                sup.start_offset,
                late,
            )
        assert poller.late == 0


def test_poll_spread_zero_reads_at_the_tick_and_slots_survive_restarts() -> None:
    def build(spread: float) -> Poller:
        cfg = fast_config(poll_spread=spread)
        frame = FleetFrame([s.id for s in cfg.stations], window=cfg.defaults.window)
        return Poller(cfg, frame, lambda st, c: make_driver(st, c.defaults))

    assert offsets(build(0.0)) == [0.0] * len(build(0.0).supervisors)
    assert offsets(build(0.3)) == offsets(build(0.3))  # crc32 of the id, not hash()
