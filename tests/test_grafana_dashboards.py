"""Grafana dashboards (config/grafana): generated from one definition, and every query
returns data from what the daemon really writes.

The real daemon polls the simulated fleet and writes into a REAL InfluxDB 1.x while a
station loses its link (an alarm raised, acknowledged, still active); its history is
then exported with `stationd export` into a REAL VictoriaMetrics. Every InfluxQL query
runs against the InfluxDB, every PromQL query against VictoriaMetrics; the "active
alarms" panels agree with /metrics and with the alarms the MQTT bridge publishes.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from stationd.historian import export, open_reader
from stationd.historian.lineproto import parse_line
from tests.daemon_harness import fast_config, fleet, until
from tests.servers import (
    InfluxDB,
    VictoriaMetrics,
    influx_query,
    start_influxdb,
    start_victoria_metrics,
    vm_wait_samples,
)
from tools.grafana.build import FLAVOURS, OUT, render_all
from tools.grafana.dashboards import DASHBOARDS

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "config" / "grafana"
ALARM = "hs002/station_comm_loss"

PROM_VARS = {"$__rate_interval": "2m", "$__interval": "1m", "$branch": ".*"}
INFLUX_VARS = {"$timeFilter": "time > now() - 1h", "$__interval": "10s", "$branch": ".*"}

SELECTOR = re.compile(r"\b([a-zA-Z_][a-zA-Z0-9_]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
LEGEND = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
OURS = re.compile(r"\b(?:station|derived|alarm|daemon)_[a-z0-9_]+")


def load(flavour: str) -> dict[str, dict]:
    return {
        p.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((GRAFANA / "dashboards" / flavour).glob("*.json"))
    }


def targets(flavour: str) -> list[tuple[str, str, dict]]:
    """(dashboard, panel title, target) of every panel query."""
    return [
        (name, p["title"], t)
        for name, d in load(flavour).items()
        for p in d["panels"]
        for t in p["targets"]
    ]


# --- generated, not hand-edited ---------------------------------------------------------------
def test_committed_dashboards_are_what_the_definition_generates():
    rendered = render_all()
    on_disk = {p for fl in FLAVOURS for p in (OUT / fl.name).glob("*.json")}
    assert on_disk == set(rendered), "stray or missing files: run python -m tools.grafana"
    for path, text in rendered.items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} differs from tools/grafana/dashboards.py: run python -m tools.grafana"
        )


def test_both_sets_have_the_same_five_dashboards_and_panels():
    vm, ix = load("victoriametrics"), load("influxdb")
    assert sorted(vm) == sorted(ix) and len(vm) == len(DASHBOARDS) == 5
    for name in vm:
        assert [p["title"] for p in vm[name]["panels"]] == [p["title"] for p in ix[name]["panels"]]
        assert [p["gridPos"] for p in vm[name]["panels"]] == [
            p["gridPos"] for p in ix[name]["panels"]
        ]


@pytest.mark.parametrize("fl", FLAVOURS, ids=lambda f: f.name)
def test_provisioning_names_the_datasource_and_folder_the_dashboards_use(fl):
    ds = yaml.safe_load((GRAFANA / f"provisioning/datasources/{fl.name}.yaml").read_text())
    assert ds["datasources"][0]["uid"] == fl.ds_uid
    assert ds["datasources"][0]["type"] == fl.ds_type
    prov = yaml.safe_load((GRAFANA / f"provisioning/dashboards/{fl.name}.yaml").read_text())
    assert prov["providers"][0]["options"]["path"].endswith(f"/stationd/{fl.name}")
    uids = set()
    for name, d in load(fl.name).items():
        uids.add(d["uid"])
        for p in d["panels"]:
            assert p["datasource"]["uid"] == fl.ds_uid, (name, p["title"])
            for t in p["targets"]:
                assert t["datasource"]["uid"] == fl.ds_uid
        names = {v["name"] for v in d["templating"]["list"]}
        assert {"site", "branch"} <= names, name
        # links: every dashboard of this flavour, never the other flavour's
        assert d["links"][0]["tags"] == [fl.tag] and fl.tag in d["tags"]
    other = next(o for o in FLAVOURS if o is not fl)
    assert not uids & {d["uid"] for d in load(other.name).values()}
    # data links from the fleet grid and tables go to this flavour's station page
    fleet_d = load(fl.name)["fleet-overview.json"]
    text = json.dumps(fleet_d)
    assert f"/d/{fl.uid('stationd-station')}?" in text
    assert "Fleet status" in text and '"table"' in text
    station = load(fl.name)["station-detail.json"]
    assert station["annotations"]["list"], "alarm annotations on the station charts"
    var = next(v for v in station["templating"]["list"] if v["name"] == "station")
    assert "alarm" not in json.dumps(var["query"]), "the station list comes from all stations"


# --- fed by the real daemon ---------------------------------------------------------------
@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    """(InfluxDB fed by the daemon, VictoriaMetrics holding its export, facts seen live)."""
    tmp = tmp_path_factory.mktemp("grafana")
    with start_influxdb(tmp) as ix, start_victoria_metrics(tmp) as vm:
        facts = asyncio.run(_run_daemon(ix, tmp))
        # the same history into VictoriaMetrics, through stationd export's line protocol
        reader = open_reader(facts["historian"], facts["site"], [], tmp, "influxql")
        try:
            lines = list(export(reader, facts["t0"] - 60, time.time() + 60, "lp"))
        finally:
            reader.close()
        body = "".join(lines).encode()
        with urllib.request.urlopen(
            urllib.request.Request(f"{vm.url}/write", data=body, method="POST"), timeout=30
        ) as r:
            assert r.status == 204
        samples = sum(len(parse_line(x.rstrip("\n")).fields) for x in lines)
        got = vm_wait_samples(vm, '{__name__=~"(station|derived|alarm|daemon)_.+"}', samples, 60)
        assert sum(len(s["values"]) for s in got) == samples
        yield ix, vm, facts


async def _run_daemon(ix: InfluxDB, tmp: Path) -> dict:
    cfg = fast_config(interval=0.5)
    section = {
        "influxdb": {
            "url": ix.url,
            "api": "v1",
            "db": ix.db,
            "token_env": None,
            "flush_interval_s": 0.2,
        },
    }
    cfg = cfg.with_sections(historian=section)
    t0 = time.time()
    async with fleet(cfg, tmp) as (sim, daemon):
        await until(daemon, lambda: daemon.poller.first_full_poll.is_set(), 30)
        await until(daemon, lambda: daemon.frame.count >= 6)
        sim.inject(kind="comm_loss", station="hs002")

        def state() -> str:
            rec = daemon.alarms.engine.records.get(ALARM)
            return str(rec.state) if rec is not None else "normal"

        await until(daemon, lambda: state() == "unack", 30)
        r = await daemon.alarms.command(
            {"request_id": "g1", "operator": "调度王", "command": "ack", "alarm_id": ALARM}
        )
        assert r["ok"], r
        await until(daemon, lambda: state() == "acked", 10)
        await until(daemon, lambda: True)
        # the daemon writes the KPIs hourly; one run of a minute has no hour of alarm
        # history behind it, so it is asked for them once more now, with every figure set
        from alarms.kpi import KPI_FIELD_NAMES, kpi_fields

        kpis = {name: 1.0 for name in KPI_FIELD_NAMES}
        kpis |= await asyncio.to_thread(kpi_fields, daemon.state_dir / "alarms")
        daemon.historian.write_daemon({k: v for k, v in kpis.items() if v == v})
        await until(daemon, lambda: True)
        port = daemon.health.port if daemon.health else 0
        metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
        active_metric = float(
            re.search(r"^stationd_alarms_active ([0-9.e+]+)$", metrics, re.M).group(1)
        )
        published = len(daemon.alarms.active_alarms())  # the retained MQTT alarm topics
        await daemon.historian.flush()
        assert await daemon.historian.forwarder.wait_empty(15.0)
        lines = daemon.historian.lines_written
        stations = len(cfg.stations)
    return {
        "historian": section,
        "site": cfg.site.id,
        "t0": t0,
        "active_metric": active_metric,
        "active_published": published,
        "station_lines": lines,
        "stations": stations,
    }


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def _influx_sub(q: str, site: str, station: str) -> str:
    for var, value in {**INFLUX_VARS, "$site": site, "$station": station}.items():
        q = q.replace(var, value)
    return q


def _influx_series(ix: InfluxDB, q: str) -> list[dict]:
    r = influx_query(ix, q, db=ix.db, epoch="ms")
    res = r["results"][0]
    assert "error" not in res, (q, res)
    return res.get("series", [])


def test_every_influxql_query_returns_data_from_the_daemon(fed):
    ix, _vm, facts = fed
    n = 0
    for dash, title, t in targets("influxdb"):
        q = _influx_sub(t["query"], facts["site"], "hs002")
        assert _influx_series(ix, q), f"{dash} / {title}: no data for {q}"
        n += 1
    assert n >= 60
    for name, d in load("influxdb").items():
        for a in d["annotations"]["list"]:
            q = _influx_sub(a["query"], facts["site"], "hs002")
            rows = _influx_series(ix, q)
            assert rows, f"{name}: no alarm annotation for {q}"
            cols = rows[0]["columns"]
            assert {a["titleColumn"], a["textColumn"], a["tagsColumn"]} <= set(cols)
        for v in d["templating"]["list"]:
            q = _influx_sub(v["query"], facts["site"], "hs002")
            values = [row[1] for s in _influx_series(ix, q) for row in s["values"]]
            assert values, f"{name}: variable {v['name']} lists nothing"
            if v["name"] == "station":
                assert len(values) == facts["stations"], "every station, alarmed or not"


def test_the_influxql_active_alarm_count_agrees_with_metrics_and_mqtt(fed):
    ix, _vm, facts = fed
    fleet_d = load("influxdb")["fleet-overview.json"]
    panel = next(p for p in fleet_d["panels"] if p["title"].startswith("当前报警"))
    rows = _influx_series(ix, _influx_sub(panel["targets"][0]["query"], facts["site"], ""))
    shown = rows[0]["values"][-1][1]
    assert shown == facts["active_metric"] == facts["active_published"] >= 1
    grid = next(p for p in fleet_d["panels"] if "Fleet status" in p["title"])
    cells = _influx_series(ix, _influx_sub(grid["targets"][0]["query"], facts["site"], ""))
    levels = {s["tags"]["station"]: s["values"][-1][1] for s in cells}
    assert len(levels) == facts["stations"], "one cell per station"
    assert levels["hs002"] >= 1 and levels["hs001"] == 0


def _prom(vm: VictoriaMetrics, path: str, **params: str) -> dict:
    q = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{vm.url}{path}?{q}", timeout=10) as r:
        return json.loads(r.read())


def _prom_data(vm: VictoriaMetrics, path: str, deadline_s: float = 15.0, **params: str) -> dict:
    """The answer, once it holds data or the deadline passed: VictoriaMetrics makes a
    fresh import searchable series by series, not all at once."""
    end = time.monotonic() + deadline_s
    while True:
        r = _prom(vm, path, **params)
        if r.get("status") != "success" or r["data"]["result"] or time.monotonic() > end:
            return r
        time.sleep(0.2)


def _prom_sub(q: str, site: str, station: str) -> str:
    for var, value in {**PROM_VARS, "$site": site, "$station": station}.items():
        q = q.replace(var, value)
    return q


def test_every_promql_query_returns_data_from_the_same_history(fed):
    _ix, vm, facts = fed
    now = int(time.time()) + 1  # not before the newest point (int() rounds down)
    n = 0
    for dash, title, t in targets("victoriametrics"):
        q = _prom_sub(t["expr"], facts["site"], "hs002")
        if t.get("instant"):
            r = _prom_data(vm, "/api/v1/query", query=q, time=str(now))
        else:
            r = _prom_data(
                vm,
                "/api/v1/query_range",
                query=q,
                start=str(now - 1800),
                end=str(now + 60),
                step="10",
            )
        assert r["status"] == "success", (dash, q, r)
        assert r["data"]["result"], f"{dash} / {title}: no data for {q}"
        n += 1
    assert n >= 60
    for name, d in load("victoriametrics").items():
        for a in d["annotations"]["list"]:
            q = _prom_sub(a["expr"], facts["site"], "hs002")
            r = _prom_data(
                vm,
                "/api/v1/query_range",
                query=q,
                start=str(now - 1800),
                end=str(now + 60),
                step="10",
            )
            assert r["data"]["result"], f"{name}: no alarm annotation for {q}"


def test_promql_names_only_series_and_labels_the_historian_writes(fed):
    _ix, vm, facts = fed
    metrics = set(_prom(vm, "/api/v1/label/__name__/values")["data"])
    labels = set(_prom(vm, "/api/v1/labels")["data"]) - {"__name__"}
    assert {"station_secondary_supply_temp", "derived_loss_ratio", "alarm_state"} <= metrics
    exprs = [
        (dash, t["expr"], t.get("legendFormat", "")) for dash, _, t in targets("victoriametrics")
    ]
    for name, d in load("victoriametrics").items():
        exprs += [(name, v["query"]["query"], "") for v in d["templating"]["list"]]
        exprs += [
            (name, a["expr"], a["titleFormat"] + a["textFormat"]) for a in d["annotations"]["list"]
        ]
    for dash, expr, legend in exprs:
        for name, inner in SELECTOR.findall(expr):
            assert name in metrics, f"{dash}: {name} is not written by the historian"
            for label in MATCHER.findall(inner):
                assert label in labels, f"{dash}: label {label} in {expr}"
        for name in OURS.findall(expr):
            assert name in metrics, f"{dash}: {name} is not written by the historian"
        for label in LEGEND.findall(legend):
            assert label in labels, f"{dash}: legend label {label}"
    fleet_d = load("victoriametrics")["fleet-overview.json"]
    panel = next(p for p in fleet_d["panels"] if p["title"].startswith("当前报警"))
    q = _prom_sub(panel["targets"][0]["expr"], facts["site"], "")
    r = _prom_data(vm, "/api/v1/query", query=q, time=str(time.time() + 1))
    assert float(r["data"]["result"][0]["value"][1]) == facts["active_metric"]
