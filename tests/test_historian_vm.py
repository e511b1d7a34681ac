"""The historian against a REAL VictoriaMetrics (InfluxDB v2 write API) on loopback:
tags and values arrive; outages, restarts and kill -9 lose nothing the queue acknowledged;
after an outage live data flows first; a full queue drops its oldest batches."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from stationd import signals
from stationd.historian import Historian
from stationd.historian.lineproto import DECIMALS
from tests.historian_writer import fleet, tick_values
from tests.servers import free_port, start_victoria_metrics, vm_export, vm_wait_samples

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
T0 = float(int(time.time()) - 3600)  # whole seconds, an hour ago


def historian(url: str, state: Path, n: int, **queue) -> Historian:
    section = {
        # one tick = one batch, so the tests can count batches
        "influxdb": {"url": url, "batch_size": n, "flush_interval_s": 0.05, "timeout_s": 1.0},
        "queue": {"retry_max_s": 0.3, **queue},
    }
    return Historian.from_config(section, "site1", fleet(n), state, registry=CollectorRegistry())


async def wait_for(predicate, deadline_s: float = 15.0) -> None:
    end = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.02)


def samples_by_tick(series: list[dict]) -> dict[int, int]:
    """timestamp (ms) -> number of station samples with that timestamp."""
    out: dict[int, int] = {}
    for s in series:
        for ts in s["timestamps"]:
            out[ts] = out.get(ts, 0) + 1
    return out


def station_match() -> str:
    return '{__name__=~"station_.+", site="site1"}'


async def test_samples_arrive_with_chinese_tags_and_exact_values(tmp_path):
    with start_victoria_metrics(tmp_path) as vm:
        stations = [
            {"id": "hs001", "name": "幸福里 1号站", "branch": "东线,一支=A"},
            {"id": "hs002", "name": "阳光花园", "branch": "西线"},
        ]
        h = Historian.from_config(
            {"influxdb": {"url": vm.url, "flush_interval_s": 0.05}},
            "site1",
            stations,
            tmp_path,
            registry=CollectorRegistry(),
        )
        await h.start()
        v = tick_values(2, 0)
        v[1, signals.idx("primary_flow")] = np.nan  # bad quality: must not be written
        h.write_tick(T0, v, {0: {"pump2_current": 12.5}})
        h.write_derived(T0, {"loss_ratio": np.array([0.0049, np.nan])})
        h.write_alarm(
            {
                "time": T0,
                "alarm_id": "hs001/secondary_pressure_drop",
                "incident_id": "inc-1",
                "to_state": "unack",
                "kind": "secondary_pressure_drop",
                "station": "hs001",
                "severity": "critical",
                "value": 0.07,
            }
        )
        h.write_daemon({"tick_ms": 4.5, "stations_up": 2}, T0)
        assert await h.forwarder.wait_empty(10.0)
        await h.stop()

        series = vm_wait_samples(vm, '{site="site1"}', 2 * signals.K - 1 + 1 + 1 + 3 + 2)
        got = {(s["metric"]["__name__"], s["metric"].get("station", "")): s for s in series}
        t_ms = int(T0 * 1000)
        for i, st in enumerate(stations):
            for j, name in enumerate(signals.NAMES):
                key = (f"station_{name}", st["id"])
                if np.isnan(v[i, j]):
                    assert key not in got
                    continue
                s = got[key]
                assert s["metric"]["name"] == st["name"]
                assert s["metric"]["branch"] == st["branch"]
                # written at the signal's resolution (0.01 °C, 0.1 kPa, 0/1 for pumps)
                assert s["values"] == [round(v[i, j], DECIMALS[name])]
                assert s["timestamps"] == [t_ms]
        assert got[("station_pump2_current", "hs001")]["values"] == [12.5]
        assert got[("derived_loss_ratio", "hs001")]["values"] == [0.0049]
        assert ("derived_loss_ratio", "hs002") not in got
        alarm = got[("alarm_state", "hs001")]
        assert alarm["metric"]["incident"] == "inc-1"
        assert alarm["metric"]["alarm"] == "hs001/secondary_pressure_drop"
        assert alarm["values"] == [1]
        assert got[("alarm_severity", "hs001")]["values"] == [3]
        assert got[("alarm_value", "hs001")]["values"] == [0.07]
        assert got[("daemon_stations_up", "")]["values"] == [2]


async def test_database_outage_and_recovery_lose_no_point(tmp_path):
    n, port = 5, free_port()
    state = tmp_path / "state"
    with start_victoria_metrics(tmp_path, port) as vm:
        h = historian(vm.url, state, n)
        await h.start()
        for k in range(5):
            h.write_tick(T0 + k, tick_values(n, k))
        assert await h.forwarder.wait_empty(10.0)
    # VictoriaMetrics is down: keep writing; the queue holds it all on disk.
    for k in range(5, 25):
        h.write_tick(T0 + k, tick_values(n, k))
        await asyncio.sleep(0.01)
    await wait_for(lambda: not h.connected)
    await h.flush()
    assert h.queue_depth >= 19
    with start_victoria_metrics(tmp_path, port) as vm:
        assert await h.forwarder.wait_empty(30.0)
        await h.stop()
        series = vm_wait_samples(vm, station_match(), 25 * n * signals.K)
    per_tick = samples_by_tick(series)
    assert per_tick == {int((T0 + k) * 1000): n * signals.K for k in range(25)}
    assert h.forwarder.sent_lines == 25 * n


async def test_kill_9_during_outage_then_restart_loses_nothing_acknowledged(tmp_path):
    n, port = 4, free_port()
    url, state = f"http://127.0.0.1:{port}", str(tmp_path / "state")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writer = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "tests.historian_writer", "write", url, state, str(n)],
        *[str(T0), "400"],
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    acked = -1
    try:
        assert writer.stdout is not None
        async with asyncio.timeout(60):
            # no database is running: everything waits on disk
            while line := await writer.stdout.readline():
                acked = int(line.split()[1])
                if acked >= 30:
                    break
    finally:
        os.kill(writer.pid, signal.SIGKILL)  # mid-outage, mid-write
        await writer.wait()
    assert acked >= 30
    with start_victoria_metrics(tmp_path, port) as vm:
        drain = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "tests.historian_writer", "drain", url, state, str(n)],
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        async with asyncio.timeout(120):
            out, _ = await drain.communicate()
        assert drain.returncode == 0, out.decode()
        series = vm_wait_samples(vm, station_match(), (acked + 1) * n * signals.K)
    per_tick = samples_by_tick(series)
    for k in range(acked + 1):
        assert per_tick.get(int((T0 + k) * 1000)) == n * signals.K, f"tick {k} incomplete"


async def test_after_an_outage_live_ticks_overtake_the_rate_limited_backlog(tmp_path):
    n, port = 3, free_port()
    h = historian(
        f"http://127.0.0.1:{port}", tmp_path / "state", n, drain_rate=4.0, live_window_s=0.5
    )
    await h.start()
    for k in range(24):  # the database is down from the start: 24 batches of backlog
        h.write_tick(T0 + k, tick_values(n, k))
    await h.flush()
    await wait_for(lambda: not h.connected)
    await wait_for(lambda: h.queue_oldest_age > 0.6)  # aged out of the live window
    with start_victoria_metrics(tmp_path, port) as vm:
        await wait_for(lambda: h.connected, 15.0)
        live_t = T0 + 100
        h.write_tick(live_t, tick_values(n, 100))
        await h.flush()
        live_match = '{__name__="station_primary_flow", site="site1"}'

        def live_seen() -> bool:
            s = vm_export(vm, live_match)
            return any(int(live_t * 1000) in x["timestamps"] for x in s)

        end = time.monotonic() + 10
        while not live_seen():
            assert time.monotonic() < end, "live tick did not arrive"
            await asyncio.sleep(0.1)
        # the backlog (24 batches at 4/s = 6 s) is still draining behind the live tick
        assert h.queue_depth > 0
        assert await h.forwarder.wait_empty(30.0)
        await h.stop()
        series = vm_wait_samples(vm, station_match(), 25 * n * signals.K)
    assert len(samples_by_tick(series)) == 25


async def test_full_queue_drops_the_oldest_batches_and_keeps_the_newest(tmp_path):
    n, port = 3, free_port()
    h = historian(f"http://127.0.0.1:{port}", tmp_path / "state", n, max_rows=5)
    await h.start()
    for k in range(12):
        h.write_tick(T0 + k, tick_values(n, k))
        await h.flush()  # one batch per tick
    assert h.forwarder.queue.dropped_batches == 7
    assert h.forwarder.queue.dropped_lines == 7 * n
    with start_victoria_metrics(tmp_path, port) as vm:
        assert await h.forwarder.wait_empty(30.0)
        await h.stop()
        series = vm_wait_samples(vm, station_match(), 5 * n * signals.K)
    assert sorted(samples_by_tick(series)) == [int((T0 + k) * 1000) for k in range(7, 12)]
