"""Scale-out on loopback: shards 0/2 and 1/2 plus a replica of shard 0, one simulator,
one VictoriaMetrics, one Alertmanager.

Every station is polled by exactly one shard; the replica pair stamps identical points
(tick-aligned times, the same reads); a fault seen by both replicas is one alert with
one incident label at Alertmanager (deterministic incident ids, label fingerprints).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from stationd.app import Daemon
from stationd.config import shard_of
from tests.daemon_harness import fast_config, until
from tests.ops_helpers import wait_for
from tests.servers import start_alertmanager, start_victoria_metrics, vm_export
from tools.simulate_station.simulator import Simulator

INTERVAL = 0.5


async def _mid_tick_updates(sim: Simulator) -> None:
    """Publish the plant at the middle of every tick, never while the replicas read (at
    the tick), so both replicas of a pair always read the same registers."""
    while True:
        now = time.time()
        mid = (np.floor(now / INTERVAL) + 0.5) * INTERVAL
        await asyncio.sleep(mid - now if mid > now else mid + INTERVAL - now)
        await sim.update()


def _alerts(url: str, alertname: str, station: str) -> list[dict[str, Any]]:
    matchers = [f'alertname="{alertname}"', f'station="{station}"']
    q = urllib.parse.urlencode([*(("filter", m) for m in matchers), ("active", "true")])
    with urllib.request.urlopen(f"{url}/api/v2/alerts?{q}", timeout=5) as r:
        return json.loads(r.read())


async def test_two_shards_and_a_replica_pair_poll_store_and_page_once(tmp_path: Path) -> None:
    full = fast_config(interval=INTERVAL)
    ids = [s.id for s in full.stations]
    shard0 = {s for s in ids if shard_of(s, 2) == 0}
    assert shard0 and shard0 != set(ids)
    # hs004 shares its feeder only with a station of the other shard: a lone comm loss
    victim = "hs004"
    assert victim in shard0
    with (
        start_victoria_metrics(tmp_path) as vm,
        start_alertmanager(tmp_path) as am,
    ):
        cfg = full.with_sections(
            historian={"influxdb": {"url": vm.url, "token_env": None, "flush_interval_s": 0.2}},
            pager={"alertmanager": {"url": am.url, "resend_interval_s": 30, "timeout_s": 2}},
            http={"enabled": False},
        )
        async with Simulator(full, update_interval=3600) as sim:
            updater = asyncio.create_task(_mid_tick_updates(sim))
            daemons = {
                "a": Daemon(cfg, state_dir=tmp_path / "a", shard="0/2"),
                "a_replica": Daemon(cfg, state_dir=tmp_path / "a2", shard="0/2"),
                "b": Daemon(cfg, state_dir=tmp_path / "b", shard="1/2"),
            }
            tasks = [asyncio.create_task(d.run(), name=n) for n, d in daemons.items()]
            a, a2, b = daemons.values()
            try:
                # every station polled by exactly one shard; the pair polls the same set
                assert set(a.frame.station_ids) == shard0 == set(a2.frame.station_ids)
                assert set(b.frame.station_ids) == set(ids) - shard0
                for d in daemons.values():
                    await until(d, lambda d=d: d.poller.first_full_poll.is_set(), 30)
                await until(a, lambda: a.frame.count >= 6)

                sim.inject(kind="comm_loss", station=victim)
                alarm = f"{victim}/station_comm_loss"

                def raised(d: Daemon) -> bool:
                    rec = d.alarms.engine.records.get(alarm)
                    return rec is not None and bool(rec.incident_id)

                await until(a, lambda: raised(a), 20)
                await until(a2, lambda: raised(a2), 20)
                rec = a.alarms.engine.records[alarm]
                rec2 = a2.alarms.engine.records[alarm]
                assert rec.incident_id and rec.incident_id == rec2.incident_id
                assert alarm not in b.alarms.engine.records

                # Alertmanager: one alert for the incident, however many replicas sent it
                def one_alert() -> list[dict[str, Any]]:
                    got = _alerts(am.url, "station_comm_loss", victim)
                    sent = all(d.pager and d.pager.counters()["alertmanager"].sent for d in (a, a2))
                    return got if got and sent else []

                alerts = await wait_for(one_alert, 20, step=0.2)
                assert len(alerts) == 1, alerts
                assert alerts[0]["labels"]["incident"] == rec.incident_id
                assert alerts[0]["labels"]["station"] == victim
                # a re-send from each replica still folds into the same one alert
                for d in (a, a2):
                    assert d.pager is not None and d.pager.resend() >= 1
                await until(a, lambda: True)
                assert len(_alerts(am.url, "station_comm_loss", victim)) == 1

                # the pair's frames hold the same ticks with the same values
                await until(a, lambda: True)
                n = min(a.frame.filled, a2.frame.filled, 8) - 1
                va, ta = a.frame.last(n + 1)
                vb, tb = a2.frame.last(n + 1)
                k = ta.searchsorted(tb[0])
                assert np.array_equal(ta[k:], tb[: len(ta) - k])
                assert np.array_equal(va[:, :, k:], vb[:, :, : len(ta) - k], equal_nan=True)
            finally:
                for d in daemons.values():
                    d.request_stop()
                async with asyncio.timeout(30):
                    await asyncio.gather(*tasks)
                updater.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await updater
        # what reached VictoriaMetrics: every station of the fleet, and the replica pair's
        # points identical (two copies of one value per timestamp, never two values)
        series = vm_export(vm, '{__name__=~"station_.*"}')
    by_station: dict[str, int] = defaultdict(int)
    conflicts = []
    copies: dict[int, int] = defaultdict(int)
    for s in series:
        st = s["metric"]["station"]
        by_station[st] += len(s["values"])
        per_ts: dict[int, set[float]] = defaultdict(set)
        count: dict[int, int] = defaultdict(int)
        for v, t in zip(s["values"], s["timestamps"], strict=True):
            per_ts[t].add(v)
            count[t] += 1
        conflicts += [(s["metric"], t, vals) for t, vals in per_ts.items() if len(vals) > 1]
        if st in shard0:
            for c in count.values():
                copies[c] += 1
    assert set(by_station) == set(ids), sorted(by_station)
    assert not conflicts, conflicts[:5]
    # both replicas wrote (VictoriaMetrics keeps exact duplicates without -dedup): most
    # timestamps of shard 0 hold two identical copies
    assert copies[2] > copies[1], dict(copies)
