"""The whole daemon against a REAL InfluxDB 1.x: every tick it handled reaches the
database across an outage (influxd stopped and started again), and a wrong database or
password makes it not ready (/readyz 503 naming the problem, /metrics
stationd_historian_config_error 1) while it keeps every tick on disk until the fix."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from stationd.app import Daemon
from tests.daemon_harness import fast_config, fleet, until
from tests.servers import InfluxDB, influx_query, start_influxdb

pytestmark = pytest.mark.integration


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def http(daemon: Daemon, path: str) -> tuple[int, str]:
    assert daemon.health is not None
    return await asyncio.to_thread(_get, f"http://127.0.0.1:{daemon.health.port}{path}")


def section(ix: InfluxDB, tmp: Path, db: str | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "url": ix.url,
        "api": "v1",
        "db": db or ix.db,
        "token_env": None,
        "flush_interval_s": 0.2,
        "timeout_s": 2.0,
    }
    if ix.username:
        pw = tmp / "influx.password"
        if not pw.exists():
            pw.write_text(ix.password, encoding="utf-8")
        cfg |= {"username": ix.username, "password_file": str(pw)}
    return {"influxdb": cfg, "queue": {"retry_max_s": 0.5, "drain_rate": 50}}


class Ticks:
    """The tick times the daemon handled (each writes one `daemon` point)."""

    def __init__(self, daemon: Daemon) -> None:
        self.times: list[int] = []
        daemon.listeners.append(lambda tick, *_: self.times.append(round(tick * 1000)))


def stored_ticks(ix: InfluxDB, db: str) -> set[int]:
    r = influx_query(ix, 'SELECT "stations" FROM "daemon"', db=db, epoch="ms")
    series = r["results"][0].get("series", [])
    return {row[0] for s in series for row in s["values"]}


async def wait_stored(ix: InfluxDB, db: str, want: set[int], deadline_s: float = 60) -> None:
    end = time.monotonic() + deadline_s
    while not want <= await asyncio.to_thread(stored_ticks, ix, db):
        assert time.monotonic() < end, "ticks missing from InfluxDB"
        await asyncio.sleep(0.3)


async def test_daemon_writes_every_tick_across_an_influxdb_outage(tmp_path):
    cm = start_influxdb(tmp_path)
    ix = cm.__enter__()
    try:
        cfg = fast_config(interval=0.5)
        cfg = cfg.with_sections(historian=section(ix, tmp_path))
        async with fleet(cfg, tmp_path) as (_sim, daemon):
            ticks = Ticks(daemon)
            await until(daemon, lambda: daemon.poller.first_full_poll.is_set(), 30)
            await until(daemon, lambda: len(ticks.times) >= 4)
            await wait_stored(ix, ix.db, set(ticks.times))
            status, _ = await http(daemon, "/readyz")
            assert status == 200

            await asyncio.to_thread(cm.__exit__, None, None, None)  # influxd stops
            await until(daemon, lambda: not daemon.historian.connected, 30)
            assert daemon.historian.config_error is None  # down, not misconfigured
            n = len(ticks.times)
            await until(daemon, lambda: len(ticks.times) >= n + 6)
            assert daemon.historian.queue_depth >= 1

            cm = start_influxdb(tmp_path, port=ix.port)
            ix = await asyncio.to_thread(cm.__enter__)
            await until(daemon, lambda: daemon.historian.connected, 30)
            await until(daemon, lambda: True)
            handled = set(ticks.times)
            await wait_stored(ix, ix.db, handled)
        assert daemon.historian.forwarder.rejected_batches == 0
    finally:
        cm.__exit__(None, None, None)


@pytest.mark.parametrize("case", ["database", "password"])
async def test_wrong_database_or_password_is_a_config_error_not_ready_and_nothing_lost(
    tmp_path, case
):
    with start_influxdb(tmp_path, auth=True) as ix:
        cfg = fast_config(interval=0.5)
        if case == "database":
            hist = section(ix, tmp_path, db="heat")
        else:
            (tmp_path / "influx.password").write_text("not-the-password", encoding="utf-8")
            hist = section(ix, tmp_path)
        cfg = cfg.with_sections(historian=hist)
        async with fleet(cfg, tmp_path) as (_sim, daemon):
            ticks = Ticks(daemon)
            await until(daemon, lambda: daemon.poller.first_full_poll.is_set(), 30)
            await until(daemon, lambda: daemon.historian.config_error is not None, 30)
            status, body = await http(daemon, "/readyz")
            assert status == 503
            problem = json.loads(body)["historian"]
            assert ("does not exist" if case == "database" else "credentials") in problem
            _, metrics = await http(daemon, "/metrics")
            assert 'stationd_historian_config_error{queue="influxdb"} 1.0' in metrics
            await until(daemon, lambda: len(ticks.times) >= 6)
            assert daemon.historian.queue_depth >= 1  # on disk, waiting for the fix

            # a person fixes the server side
            if case == "database":
                await asyncio.to_thread(influx_query, ix, 'CREATE DATABASE "heat"', post=True)
            else:
                await asyncio.to_thread(
                    influx_query, ix, "SET PASSWORD FOR admin = 'not-the-password'", post=True
                )
                ix = InfluxDB(**{**ix.__dict__, "password": "not-the-password"})
            await until(daemon, lambda: daemon.historian.config_error is None, 60)
            status, _ = await http(daemon, "/readyz")
            assert status == 200
            await until(daemon, lambda: True)
            await wait_stored(ix, "heat" if case == "database" else ix.db, set(ticks.times))
