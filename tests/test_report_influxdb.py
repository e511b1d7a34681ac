"""The daily report, `stationd report`, `stationd export` and the 09:00/17:00 scheduler
read a REAL InfluxDB 1.x through InfluxQL and agree with the embedded store holding the
same simulated day (tests/test_report.py's day: a meter reset, a data gap, a stopped
pump, a cold night)."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry

from stationd.cli import build_parser
from stationd.config import load_config
from stationd.historian import Historian, export
from stationd.historian.lineproto import parse_line
from stationd.historian.read_embedded import EmbeddedReader
from stationd.historian.readers import open_reader
from stationd.report import ReportScheduler, build_report, period_for
from stationd.report.main import add_report_parser, report_main
from tests.servers import InfluxDB, start_influxdb
from tests.test_report import ROOT, SH, history, report, sim, write_history  # noqa: F401

pytestmark = pytest.mark.integration


def influx_section(ix: InfluxDB, pw_file: Path) -> dict:
    return {
        "influxdb": {
            "url": ix.url,
            "api": "v1",
            "db": ix.db,
            "username": ix.username,
            "password_file": str(pw_file),
            "token_env": None,
            "flush_interval_s": 0.2,
        }
    }


@pytest.fixture(scope="module")
def fed_influx(sim, tmp_path_factory):  # noqa: F811
    """InfluxDB 1.x (auth on) holding the simulated day, and a stations.yaml naming it."""
    cfg, _day, ts, values, _ = sim
    tmp = tmp_path_factory.mktemp("influx-report")
    with start_influxdb(tmp, auth=True) as ix:
        pw = tmp / "influx.password"
        pw.write_text(ix.password, encoding="utf-8")
        section = influx_section(ix, pw)
        h = Historian.from_config(
            section, cfg.site.id, list(cfg.stations), tmp / "state", registry=CollectorRegistry()
        )
        asyncio.run(write_history(h, ts, values))
        raw = yaml.safe_load((ROOT / "config" / "stations.yaml").read_text(encoding="utf-8"))
        raw["historian"] = section
        path = tmp / "stations.yaml"
        path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        yield ix, path


def test_report_from_influxdb_matches_the_embedded_one(sim, report, history, fed_influx):  # noqa: F811
    _ix, path = fed_influx
    cfg = load_config(path)
    src = open_reader(cfg.historian, cfg.site.id, [s.id for s in cfg.stations], history.state)
    assert src.name.startswith("influxql")  # auto: api v1 -> InfluxQL
    try:
        ix_report = build_report(cfg, report.period, src, history.state)
    finally:
        src.close()
    a, b = ix_report.hourly, report.hourly
    np.testing.assert_allclose(a.means, b.means, rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.supplied, b.supplied)
    np.testing.assert_allclose(a.makeup_m3, b.makeup_m3, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(a.heat_gj, b.heat_gj, atol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(a.meter_resets, b.meter_resets)
    assert ix_report.source.startswith("influxql")


def test_stationd_report_command_reads_the_configured_influxdb(history, fed_influx, tmp_path):  # noqa: F811
    _ix, path = fed_influx
    parser = argparse.ArgumentParser()
    add_report_parser(parser.add_subparsers(dest="cmd"))
    common = ["--state-dir", str(history.state), "--date", history.day.isoformat(), "--at", "09:00"]
    out_ix, out_emb = tmp_path / "ix", tmp_path / "emb"
    assert report_main(parser.parse_args(["report", "--config", str(path), *common,
                                          "--out-dir", str(out_ix)])) == 0  # fmt: skip
    assert report_main(parser.parse_args(["report", "--config", str(path), *common,
                                          "--out-dir", str(out_emb), "--source", "embedded"])) == 0  # fmt: skip
    csvs = sorted(p.name for p in out_emb.glob("*.csv"))
    assert len(csvs) >= 3
    for name in csvs:
        assert (out_ix / name).read_bytes() == (out_emb / name).read_bytes(), name


def test_stationd_export_from_influxdb_agrees_with_the_embedded_store(
    history,  # noqa: F811
    fed_influx,
    tmp_path,
):
    _ix, path = fed_influx
    t_from = history.local(history.day, 6)
    t_to = history.local(history.day, 9)
    span = ["--from", str(t_from), "--to", str(t_to)]
    outs = {}
    for name, extra in {
        "influx": ["--config", str(path), "--state-dir", str(history.state)],
        "embedded": ["--db", str(history.state / "history.db")],
    }.items():
        for fmt in ("csv", "lp"):
            out = tmp_path / f"{name}.{fmt}"
            args = build_parser().parse_args(
                ["export", *extra, *span, "--format", fmt, "--output", str(out)]
            )
            assert args.func(args) == 0
            outs[name, fmt] = out.read_text(encoding="utf-8")
    assert outs["influx", "csv"] == outs["embedded", "csv"]
    rows = outs["influx", "csv"].splitlines()
    assert (
        len(rows) == 1 + 3 * 360 * 8 - 0
    )  # 3 h of 10 s ticks, 8 stations (hs002's gap is earlier)

    def points(text: str) -> set:
        out = set()
        for line in text.splitlines():
            p = parse_line(line)
            out.add(
                (
                    p.measurement,
                    tuple(sorted(p.tags.items())),
                    tuple(sorted(p.fields.items())),
                    p.ts,
                )
            )
        return out

    assert points(outs["influx", "lp"]) == points(outs["embedded", "lp"])


async def test_scheduler_reads_its_report_from_influxdb(history, fed_influx, tmp_path):  # noqa: F811
    _ix, path = fed_influx
    cfg = load_config(path)
    p = period_for(history.day, "09:00", SH)
    offset = p.t1 - 0.3 - time.time()  # the scheduler's clock: 0.3 s before 09:00
    sched = ReportScheduler(
        cfg, history.state, tmp_path, settle_s=0.0, clock=lambda: time.time() + offset
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    deadline = time.monotonic() + 60
    while not sched.written and not sched.failures:
        assert time.monotonic() < deadline, "no report within 60 s"
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert sched.failures == 0
    period, paths = sched.written[0]
    assert period == p
    html = next(x for x in paths if x.suffix == ".html").read_text(encoding="utf-8")
    assert "influxql" in html  # the source line names the store it read


def test_export_of_the_embedded_store_is_unchanged_byte_for_byte(history):  # noqa: F811
    """Through the reader interface the embedded export still gives the lines as stored."""
    r = EmbeddedReader(history.state / "history.db")
    try:
        first = next(iter(export(r, None, None, "lp")))
    finally:
        r.close()
    assert first.startswith("station,branch=") and first.rstrip().endswith("000000")
