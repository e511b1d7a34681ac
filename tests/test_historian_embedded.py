"""No InfluxDB configured: history goes to the embedded SQLite store and exports back."""

from __future__ import annotations

import csv
import io

import numpy as np
from prometheus_client import CollectorRegistry

from stationd import signals
from stationd.historian import EmbeddedStore, Historian, export, export_main
from stationd.historian.lineproto import DECIMALS, parse_line

STATIONS = [
    {"id": "hs001", "name": "幸福里 1号站", "branch": "东线,一支"},
    {"id": "hs002", "name": "阳光 花园", "branch": "西线"},
]
T0 = 1_764_000_000.0  # 2025-11-24T16:00:00Z


def tick_values(k: int) -> np.ndarray:
    v = np.round(np.arange(2 * signals.K, dtype=float).reshape(2, -1) * 1.25 + k, 2)
    v[1, signals.idx("indoor_temp")] = np.nan
    return v


async def write_history(tmp_path, ticks: range) -> Historian:
    h = Historian.from_config(
        {"embedded": {"flush_interval_s": 0.05, "retention_days": 3650}},
        "site1",
        STATIONS,
        tmp_path,
        registry=CollectorRegistry(),
    )
    assert h.target == "embedded"
    await h.start()
    for k in ticks:
        h.write_tick(T0 + k, tick_values(k), {0: {"pump2_current": 10.0 + k}})
    h.write_alarm(
        {
            "time": T0,
            "alarm_id": "hs001/secondary_leak",
            "incident_id": "i-1",
            "to_state": "unack",
            "kind": "secondary_leak",
            "station": "hs001",
            "severity": "major",
            "value": 0.02,
        }
    )
    assert await h.forwarder.wait_empty(10.0)
    await h.stop()
    return h


async def test_embedded_store_keeps_ticks_and_exports_line_protocol(tmp_path):
    await write_history(tmp_path, range(5))
    await write_history(tmp_path, range(3, 8))  # a restart; ticks 3, 4 written twice
    store = EmbeddedStore(tmp_path / "history.db")
    assert store.count("station") == 16  # 8 ticks x 2 stations: re-sent points overwrite
    lines = list(export(store, T0 + 1, T0 + 3, "lp"))
    parsed = [parse_line(x.rstrip("\n")) for x in lines]
    stations = [p for p in parsed if p.measurement == "station"]
    assert [p.ts for p in stations] == [int((T0 + k) * 1e9) for k in (1, 1, 2, 2)]  # ns
    first = next(p for p in stations if p.tags["station"] == "hs001")
    assert first.tags["name"] == "幸福里 1号站" and first.tags["branch"] == "东线,一支"
    assert first.fields["pump2_current"] == 11.0
    assert first.fields["primary_supply_temp"] == tick_values(1)[0, 0]
    alarm = next(
        p
        for p in map(parse_line, (x.rstrip() for x in export(store, None, None)))
        if p.measurement == "alarm"
    )
    assert alarm.tags["incident"] == "i-1" and alarm.fields["state"] == 1.0
    assert alarm.fields["severity"] == 2.0


async def test_csv_export_is_wide_time_station_signals(tmp_path):
    await write_history(tmp_path, range(3))
    out = tmp_path / "out.csv"
    assert export_main(tmp_path / "history.db", None, None, "csv", out) == 0
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert rows[0] == ["time", "station", *signals.NAMES, "pump2_current"]
    body = rows[1:]
    assert [r[:2] for r in body[:2]] == [
        ["2025-11-24T16:00:00.000Z", "hs001"],
        ["2025-11-24T16:00:00.000Z", "hs002"],
    ]
    col = rows[0].index("indoor_temp")
    assert body[1][col] == ""  # hs002 has no indoor value: empty, not 0
    assert float(body[0][col]) == tick_values(0)[0, signals.idx("indoor_temp")]
    assert float(body[4][rows[0].index("pump2_current")]) == 12.0
    assert len(body) == 6


async def test_retention_prunes_old_points(tmp_path):
    await write_history(tmp_path, range(2))
    store = EmbeddedStore(tmp_path / "history.db", retention_days=1)
    assert store.prune(now=T0 + 3600) == 0
    assert store.prune(now=T0 + 2 * 86400) == 5  # 4 station lines + 1 alarm


def test_export_main_refuses_bad_arguments(tmp_path, capsys):
    assert export_main(tmp_path / "none.db", None, None, "lp", "-") == 2
    assert "找不到本地历史库" in capsys.readouterr().err
    EmbeddedStore(tmp_path / "h.db").close()
    assert export_main(tmp_path / "h.db", None, None, "json", "-") == 2
    assert export_main(tmp_path / "h.db", "yesterday", None, "lp", "-") == 2
    assert export_main(tmp_path / "h.db", "2025-11-24T00:00:00Z", 1764100000, "lp", "-") == 0


async def test_both_export_formats_read_back_through_stationd_replay(tmp_path):
    from stationd.replay import read_samples

    await write_history(tmp_path, range(3))
    got = {}
    for fmt in ("lp", "csv"):
        path = tmp_path / f"export.{fmt}"
        assert export_main(tmp_path / "history.db", None, None, fmt, path) == 0
        got[fmt] = sorted(
            (t, station, {k: v for k, v in values.items() if v == v})
            for t, station, values in read_samples(path)
        )
    assert got["lp"] == got["csv"]
    assert len(got["csv"]) == 6
    t, station, values = got["csv"][0]
    assert (t, station) == (T0, "hs001")
    # written at each signal's resolution (0/1 signals have no decimals)
    expected = {
        n: round(float(x), DECIMALS[n])
        for n, x in zip(signals.NAMES, tick_values(0)[0], strict=True)
    }
    assert values == {**expected, "pump2_current": 10.0}


async def test_a_batch_the_store_refuses_is_dropped_counted_and_does_not_block(tmp_path, caplog):
    h = Historian.from_config(
        {"embedded": {"flush_interval_s": 0.05, "retention_days": 3650}},
        "site1",
        STATIONS,
        tmp_path,
        registry=CollectorRegistry(),
    )
    await h.start()
    h.forwarder.submit(b"no_fields_here\n", 1)
    await h.flush()  # its own batch
    h.write_tick(T0, tick_values(0))
    assert await h.forwarder.wait_empty(10.0)
    await h.stop()
    assert h.forwarder.rejected_batches == 1
    assert any("数据库拒收" in r.getMessage() for r in caplog.records)
    assert EmbeddedStore(tmp_path / "history.db").count("station") == 2
