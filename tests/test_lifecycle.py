"""Reload (SIGHUP, `stationd reload`) and drain (SIGTERM) against the real simulator."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stationd.app import Daemon
from stationd.config import load_config
from stationd.historian.embedded import EmbeddedStore
from stationd.reload import ReloadError, diff_stations, send_reload
from tests.daemon_harness import fast_config, until
from tests.ops_helpers import ROOT, DaemonProcess, MqttWatch, http_status, wait_for, write_fleet
from tests.servers import free_port, start_mosquitto
from tools.simulate_station.simulator import Simulator


async def test_sighup_adds_removes_and_restarts_stations_without_dropping_a_tick(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    full = fast_config()  # 8 stations: Modbus A/B models and OPC UA
    path = write_fleet(full, tmp_path / "stations.yaml", drop={"hs008"})
    cfg = load_config(path)
    loop = asyncio.get_running_loop()
    async with Simulator(full):
        daemon = Daemon(cfg, state_dir=tmp_path / "state")
        task = asyncio.create_task(daemon.run())
        loop.add_signal_handler(signal.SIGHUP, daemon.request_reload)
        try:
            await until(daemon, lambda: daemon.poller.first_full_poll.is_set())
            await until(daemon, lambda: daemon.frame.count >= 4)
            kept = daemon.poller.supervisors[daemon.frame.index["hs001"]]
            hist_values, hist_times = daemon.frame.last(3)
            hs001_before = hist_values[daemon.frame.index["hs001"]].copy()
            skipped, count0 = daemon.poller.clock.skipped, daemon.frame.count
            assert (tmp_path / "state" / "stationd.pid").read_text().strip() == str(os.getpid())

            # hs002 leaves, hs008 joins, hs003 is renamed (a changed station)
            write_fleet(full, path, drop={"hs002"}, edit={"hs003": {"name": "锦绣家园换热站二号"}})
            os.kill(os.getpid(), signal.SIGHUP)
            await until(daemon, lambda: daemon.reloads == 1, timeout=15)

            ids = daemon.frame.station_ids
            assert "hs002" not in ids and "hs008" in ids and len(ids) == 7
            assert "hs002" not in daemon.poller._tasks
            # an unchanged station keeps its connection and its history
            i1 = daemon.frame.index["hs001"]
            assert daemon.poller.supervisors[i1] is kept
            values, times = daemon.frame.last(daemon.frame.filled)
            at = np.searchsorted(times, hist_times)
            assert np.array_equal(times[at], hist_times)
            assert np.array_equal(values[i1][:, at], hs001_before, equal_nan=True)
            # the changed station got a fresh supervisor and an empty history
            i3 = daemon.frame.index["hs003"]
            assert daemon.alarms.stations["hs003"].name == "锦绣家园换热站二号"
            assert np.isnan(values[i3][:, at]).all()
            # the added station starts answering
            i8 = daemon.frame.index["hs008"]
            await until(daemon, lambda: not math.isnan(daemon.frame.last_good_tick[i8]), 20)
            await until(daemon, lambda: (daemon.frame.consecutive_misses == 0).all(), 20)
            # no tick was lost around the reload
            assert daemon.poller.clock.skipped == skipped
            _, times = daemon.frame.last(daemon.frame.count - count0 + 1)
            assert np.allclose(np.diff(times), full.defaults.interval)
            assert "hs008" in {s.id for s in daemon.historian.encoder.stations}

            # an invalid file is refused with FILE:LINE and the running fleet stays
            text = path.read_text(encoding="utf-8")
            bad = text.replace("heated_area_m2: 120000", "heated_area_m2: -1", 1)
            line = bad[: bad.index("heated_area_m2: -1")].count("\n") + 1
            path.write_text(bad, encoding="utf-8")
            caplog.set_level(logging.ERROR, logger="stationd.app")
            daemon.request_reload()
            await until(daemon, lambda: daemon.reload_failures == 1, timeout=10)
            assert f"{path}:{line} stations[0].heated_area_m2" in caplog.text
            assert daemon.frame.station_ids == ids
            await until(daemon, lambda: True)
            assert daemon.reloads == 1
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            daemon.request_stop()
            async with asyncio.timeout(15):
                await task
    assert not (tmp_path / "state" / "stationd.pid").exists()


async def test_sigterm_drains_history_says_offline_and_exits_in_time(tmp_path: Path) -> None:
    """A real `stationd run`: reload through `stationd reload`, then `kill -TERM`."""
    full = fast_config()
    http_port = free_port()
    state = tmp_path / "state"
    with start_mosquitto(tmp_path) as broker:
        mqtt_cfg = {"port": broker.port, "reconnect_min_s": 1, "reconnect_max_s": 1}
        sections = {"mqtt": mqtt_cfg, "http": {"port": http_port}}
        path = write_fleet(full, tmp_path / "stations.yaml", **sections)
        prefix = f"heating/{full.site.id}"
        watch = MqttWatch(broker.port, prefix, "screen")
        daemon = DaemonProcess(path, state, tmp_path / "daemon.log")
        async with Simulator(full):
            try:
                daemon.start()
                ready = f"http://127.0.0.1:{http_port}/readyz"
                await wait_for(lambda: http_status(ready) == 200, 40, step=0.2)
                await wait_for(
                    lambda: any(d["state"] == "online" for d in watch.docs(f"{prefix}/status")), 10
                )
                # `stationd reload` finds the daemon by its pid file and sends SIGHUP
                write_fleet(full, path, drop={"hs004"}, **sections)
                res = await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, "-m", "stationd", "reload", "--state-dir", str(state)],
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                    timeout=30,
                )
                assert res.returncode == 0, res.stderr
                await daemon.wait_log("reload applied: stations +0 -1 ~0 =7", 15)
                # a tick of the new fleet is in the history before the stop
                await wait_for(lambda: "hs004" not in _last_tick(state)[1], 10, step=0.2)

                t_kill = time.time()
                daemon.signal(signal.SIGTERM)
                rc = await daemon.wait_exit(20)
                elapsed = time.time() - t_kill
            finally:
                daemon.stop()
                watch.close()
        assert rc == 0, daemon.log[-3000:]
        # well inside the unit's TimeoutStopSec=30s
        assert elapsed < 12, elapsed
        assert "stationd stopped" in daemon.log
        assert not (state / "stationd.pid").exists()
        # the status was left offline (a clean stop, not the last will)
        late = MqttWatch(broker.port, prefix, "late-screen")
        try:
            status = await wait_for(lambda: late.docs(f"{prefix}/status"), 10)
        finally:
            late.close()
        assert status[-1]["state"] == "offline" and status[-1]["reason"] == "stopped"
    # every tick up to the stop is on disk: the last committed tick is at most one
    # interval before the signal
    last_ms, stations = _last_tick(state)
    interval = full.defaults.interval
    assert last_ms / 1000 >= t_kill - 2 * interval - 0.2
    assert "hs004" not in stations and len(stations) >= 6


def _last_tick(state: Path) -> tuple[int, set[str]]:
    """The newest `station` tick in the embedded history and the stations it holds."""
    store = EmbeddedStore(state / "history.db")
    try:
        last_ms = max((ts for _, ts, _, _ in store.rows(0, 2**62, "station")), default=0)
        stations = {st for _, _, st, _ in store.rows(last_ms, last_ms + 1, "station")}
    finally:
        store.close()
    return last_ms, stations or {"hs004"}


def test_diff_names_added_removed_changed_and_unchanged_stations() -> None:
    cfg = load_config(ROOT / "config" / "stations.yaml")
    old = cfg.stations[:4]
    hs003 = cfg.stations[2].model_copy(update={"heated_area_m2": 1.0})
    new = (cfg.stations[0], hs003, cfg.stations[3], cfg.stations[5])
    d = diff_stations(old, new)
    assert d.added == ("hs006",)
    assert d.removed == ("hs002",)
    assert d.changed == ("hs003",)
    assert d.unchanged == ("hs001", "hs004")
    assert d.summary() == "+1 -1 ~1 =2" and not d.empty
    assert diff_stations(old, old).empty


def test_stationd_reload_refuses_a_missing_or_stale_pid_file(tmp_path: Path) -> None:
    with pytest.raises(ReloadError, match="no pid file"):
        send_reload(tmp_path)
    # a pid that is not a stationd (here pid 1, the init process) is never
    # signalled: the file is stale after a crash and the pid may have been reused
    (tmp_path / "stationd.pid").write_text("1\n")
    with pytest.raises(ReloadError, match=r"not a stationd process|not running"):
        send_reload(tmp_path)
    res = subprocess.run(
        [sys.executable, "-m", "stationd", "reload", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert res.returncode == 1 and "stale pid file" in res.stderr
