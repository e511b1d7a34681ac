"""The historian against a REAL InfluxDB 1.x (Debian's influxd) on loopback.

api v1 writes arrive exact (Chinese tags too) with basic auth; an outage is buffered and
replayed with nothing lost; a wrong database, retention policy, credential or API is a
configuration error (said once, with the server's answer; data kept on disk), not an
outage; the start-up check says which server and API it found; ping() does not lie.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from stationd import signals
from stationd.historian import Historian
from stationd.historian.lineproto import DECIMALS
from tests.historian_writer import fleet, tick_values
from tests.servers import InfluxDB, influx_query, start_influxdb

pytestmark = pytest.mark.integration
T0 = float(int(time.time()) - 3600)  # whole seconds, an hour ago


def v1_section(ix: InfluxDB, tmp: Path, **over: object) -> dict:
    ix_cfg: dict = {
        "url": ix.url,
        "api": "v1",
        "db": ix.db,
        "token_env": None,
        "flush_interval_s": 0.05,
        "timeout_s": 2.0,
    }
    if ix.username:
        pw = tmp / "influx.password"
        pw.write_text(ix.password + "\n", encoding="utf-8")
        ix_cfg |= {"username": ix.username, "password_file": str(pw)}
    ix_cfg |= over
    return {"influxdb": ix_cfg, "queue": {"retry_max_s": 0.3}}


async def wait_for(predicate, deadline_s: float = 20.0) -> None:
    end = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.02)


def count(ix: InfluxDB, measurement: str, field: str) -> int:
    r = influx_query(ix, f'SELECT count("{field}") FROM "{measurement}"', db=ix.db)
    series = r["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


async def test_v1_writes_exact_values_and_chinese_tags_with_basic_auth(tmp_path):
    with start_influxdb(tmp_path, auth=True) as ix:
        stations = [
            {"id": "hs001", "name": "幸福里 1号站", "branch": "东线,一支=A"},
            {"id": "hs002", "name": "阳光花园", "branch": "西线"},
        ]
        reg = CollectorRegistry()
        h = Historian.from_config(
            v1_section(ix, tmp_path), "site1", stations, tmp_path, registry=reg
        )
        await h.start()
        v = tick_values(2, 0)
        v[1, signals.idx("primary_flow")] = np.nan  # bad quality: not written
        h.write_tick(T0, v, {0: {"pump2_current": 12.5}})
        h.write_derived(T0, {"loss_ratio": np.array([0.0049, np.nan])})
        assert await h.forwarder.wait_empty(10.0)
        assert h.connected and h.config_error is None
        assert h.server is not None and "InfluxDB 1.6" in h.server and "api v1" in h.server
        await h.stop()

        r = influx_query(ix, 'SELECT * FROM "station" GROUP BY *', db=ix.db, epoch="ms")
        rows = {}
        for s in r["results"][0]["series"]:
            cols = s["columns"]
            rows[s["tags"]["station"]] = (s["tags"], dict(zip(cols, s["values"][0], strict=True)))
        for i, st in enumerate(stations):
            tags, vals = rows[st["id"]]
            assert tags["name"] == st["name"] and tags["branch"] == st["branch"]
            assert vals["time"] == int(T0 * 1000)
            for j, name in enumerate(signals.NAMES):
                if np.isnan(v[i, j]):
                    assert vals[name] is None
                else:
                    assert vals[name] == pytest.approx(round(v[i, j], DECIMALS[name]))
        assert rows["hs001"][1]["pump2_current"] == 12.5
        assert count(ix, "derived", "loss_ratio") == 1
        assert b'stationd_historian_config_error{queue="influxdb"} 0.0' in generate_latest(reg)


async def test_outage_is_buffered_and_replayed_with_nothing_lost(tmp_path):
    n, ticks_before, ticks_during = 3, 5, 8
    cm = start_influxdb(tmp_path)
    ix = cm.__enter__()
    try:
        h = Historian.from_config(
            v1_section(ix, tmp_path, batch_size=n), "site1", fleet(n), tmp_path,
            registry=CollectorRegistry(),
        )  # fmt: skip
        await h.start()
        for k in range(ticks_before):
            h.write_tick(T0 + k, tick_values(n, k))
        assert await h.forwarder.wait_empty(10.0)

        await asyncio.to_thread(cm.__exit__, None, None, None)  # influxd stops
        for k in range(ticks_before, ticks_before + ticks_during):
            h.write_tick(T0 + k, tick_values(n, k))
            await h.flush()
        await wait_for(lambda: h.forwarder.outage_since is not None)
        assert h.config_error is None  # down is not misconfigured
        assert not await asyncio.to_thread(h.forwarder.sink.ping)
        assert h.queue_depth >= 1

        cm = start_influxdb(tmp_path, port=ix.port)  # back, same port and data
        ix = await asyncio.to_thread(cm.__enter__)
        await wait_for(lambda: h.queue_depth == 0 and h.connected, 30.0)
        assert await asyncio.to_thread(h.forwarder.sink.ping)
        await h.stop()
        total = ticks_before + ticks_during
        assert count(ix, "station", "secondary_supply_temp") == total * n
        r = influx_query(
            ix, 'SELECT "secondary_supply_temp" FROM "station" WHERE "station" = \'hs001\'',
            db=ix.db, epoch="ms",
        )  # fmt: skip
        times = [row[0] for row in r["results"][0]["series"][0]["values"]]
        assert times == [int((T0 + k) * 1000) for k in range(total)]
    finally:
        cm.__exit__(None, None, None)


@pytest.mark.parametrize(
    ("case", "over", "fix", "expect"),
    [
        ("database", {"db": "nosuchdb"}, 'CREATE DATABASE "nosuchdb"', "does not exist"),
        (
            "rp",
            {"rp": "weekly"},
            'CREATE RETENTION POLICY "weekly" ON "stations" DURATION 7d REPLICATION 1',
            "retention policy",
        ),
        ("password", {}, "SET PASSWORD FOR admin = 'wrong-pw'", "credentials"),
    ],
)
async def test_wrong_target_or_credential_is_a_config_error_and_loses_nothing(
    tmp_path, caplog, case, over, fix, expect
):
    caplog.set_level(logging.WARNING, logger="stationd.historian")
    with start_influxdb(tmp_path, auth=True) as ix:
        section = v1_section(ix, tmp_path, **over)
        if case == "password":
            (tmp_path / "influx.password").write_text("wrong-pw", encoding="utf-8")
        reg = CollectorRegistry()
        h = Historian.from_config(section, "site1", fleet(2), tmp_path, registry=reg)
        await h.start()
        await wait_for(lambda: h.config_error is not None)
        assert expect in h.config_error and "HTTP" in h.config_error
        assert h.forwarder.outage_since is None  # it answered: not "unreachable"
        assert not h.connected
        assert not await asyncio.to_thread(h.forwarder.sink.ping)
        for k in range(6):
            h.write_tick(T0 + k, tick_values(2, k))
            await h.flush()
        await wait_for(lambda: h.forwarder.send_failures >= 3)
        metrics = generate_latest(reg).decode()
        assert 'stationd_historian_config_error{queue="influxdb"} 1.0' in metrics
        assert 'stationd_historian_up{queue="influxdb"} 0.0' in metrics
        errors = [r for r in caplog.records if "CONFIGURATION ERROR" in r.getMessage()]
        assert len(errors) == 1, "said once, not on every retry"
        assert "unreachable" not in caplog.text
        assert h.queue_depth >= 1  # kept on disk

        influx_query(ix, fix, post=True)  # a person fixes the server side
        if case == "password":
            ix = dataclasses.replace(ix, password="wrong-pw")
        await wait_for(lambda: h.queue_depth == 0 and h.config_error is None, 30.0)
        await h.stop()
        db = str(over.get("db", ix.db))
        rp = f'"{over["rp"]}".' if "rp" in over else ""
        r = influx_query(ix, f'SELECT count("secondary_supply_temp") FROM {rp}"station"', db=db)
        assert r["results"][0]["series"][0]["values"][0][1] == 6 * 2


async def test_v2_config_against_a_1x_server_says_to_use_v1(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="stationd.historian")
    with start_influxdb(tmp_path) as ix:
        section = {
            "influxdb": {"url": ix.url, "token_env": None, "flush_interval_s": 0.05},
            "queue": {"retry_max_s": 0.3},
        }
        h = Historian.from_config(
            section, "site1", fleet(1), tmp_path, registry=CollectorRegistry()
        )
        await h.start()
        await wait_for(lambda: h.config_error is not None)
        assert "1.6.7" in h.config_error and "api: v1" in h.config_error
        h.write_tick(T0, tick_values(1, 0))
        await h.flush()
        await wait_for(lambda: h.forwarder.send_failures >= 2)
        # a write (HTTP 404 from /api/v2/write) says the same thing: still a config error
        assert "api: v1" in h.config_error and h.forwarder.outage_since is None
        await h.stop()
        assert h.queue_depth == 1  # the tick waits on disk for the fix


async def test_token_auth_is_refused_by_a_1_6_server_as_a_config_error(tmp_path, monkeypatch):
    """`Authorization: Token user:password` needs InfluxDB 1.8+; 1.6 answers 401."""
    monkeypatch.setenv("TEST_INFLUX_TOKEN", "admin:s3cret-测试")
    with start_influxdb(tmp_path, auth=True) as ix:
        section = v1_section(ix, tmp_path)
        section["influxdb"] = {
            k: v for k, v in section["influxdb"].items() if k not in ("username", "password_file")
        } | {"token_env": "TEST_INFLUX_TOKEN"}
        h = Historian.from_config(
            section, "site1", fleet(1), tmp_path, registry=CollectorRegistry()
        )
        assert h.forwarder.sink.auth == "token"
        await h.start()
        await wait_for(lambda: h.config_error is not None)
        assert "HTTP 401" in h.config_error and "1.8" in h.config_error
        await h.stop()


async def test_precision_seconds_rescales_timestamps(tmp_path):
    with start_influxdb(tmp_path) as ix:
        h = Historian.from_config(
            v1_section(ix, tmp_path, precision="s"), "site1", fleet(1), tmp_path,
            registry=CollectorRegistry(),
        )  # fmt: skip
        await h.start()
        h.write_tick(T0, tick_values(1, 0))
        assert await h.forwarder.wait_empty(10.0)
        await h.stop()
        r = influx_query(ix, 'SELECT "secondary_flow" FROM "station"', db=ix.db, epoch="ms")
        assert r["results"][0]["series"][0]["values"][0][0] == int(T0 * 1000)
