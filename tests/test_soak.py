"""A short soak (bench/soak.py for 15 s): 500 generated stations with random faults at
plant speed x30 lose no sample and no transition, and leak neither memory nor fds."""

from __future__ import annotations

from pathlib import Path

from bench.soak import soak


async def test_short_soak_of_500_stations_loses_nothing_and_leaks_nothing(tmp_path: Path) -> None:
    res = await soak(stations=500, seconds=15, speed=30, fault_every=2, workdir=tmp_path)
    report = "\n".join(res.lines())
    assert res.ticks >= 12, report
    assert res.faults >= 3, report
    assert res.samples_expected > 0.5 * res.ticks * res.stations, report
    assert res.samples_stored == res.samples_expected, report
    assert res.transitions_logged > 0, report
    assert res.transitions_delivered == res.transitions_logged, report
    assert res.rss_ok and res.fds_ok, report
