"""Grafana dashboards (config/grafana) ask only for what the historian writes.

The historian writes a small fleet, derived values and an alarm into a REAL
VictoriaMetrics; the series and label names it then holds are the reference. Every panel
query and template query must name only those, and every panel query must return data.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry

from alarms.kpi import KPI_FIELD_NAMES
from stationd import signals
from stationd.historian import Historian
from stationd.historian.service import DERIVED_FIELDS
from tests.servers import VictoriaMetrics, start_victoria_metrics, vm_wait_samples

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "config" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
STATIONS = [
    {"id": "hs001", "name": "幸福里 1号站", "branch": "东线"},
    {"id": "hs002", "name": "阳光花园", "branch": "西线"},
]
VARS = {
    "$site": "site1",
    "$branch": ".*",
    "$station": "hs001",
    "$__interval": "1m",
    "$__rate_interval": "2m",
}

SELECTOR = re.compile(r"\b([a-zA-Z_][a-zA-Z0-9_]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
LEGEND = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
OURS = re.compile(r"\b(?:station|derived|alarm|daemon)_[a-z0-9_]+")


def queries() -> list[tuple[str, str, str]]:
    """(dashboard, expr, legend) for every panel target and template query."""
    out = []
    for path in DASHBOARDS:
        d = json.loads(path.read_text(encoding="utf-8"))
        for p in d["panels"]:
            for t in p["targets"]:
                out.append((path.name, t["expr"], t.get("legendFormat", "")))
        for v in d["templating"]["list"]:
            out.append((path.name, v["query"]["query"], ""))
    return out


def get_json(vm: VictoriaMetrics, path: str, **params: str) -> dict:
    q = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{vm.url}{path}?{q}", timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def fed_vm(tmp_path_factory):
    """VictoriaMetrics holding 30 minutes of a 2-station fleet written by the historian."""
    import asyncio

    tmp = tmp_path_factory.mktemp("grafana")
    with start_victoria_metrics(tmp) as vm:

        async def feed() -> None:
            h = Historian.from_config(
                {"influxdb": {"url": vm.url, "flush_interval_s": 0.05}},
                "site1",
                STATIONS,
                tmp,
                registry=CollectorRegistry(),
            )
            await h.start()
            now = float(int(time.time()))
            for k in range(31):
                t = now - 1800 + 60 * k
                v = np.full((2, signals.K), 1.0)
                v[:, signals.idx("secondary_flow")] = 150.0
                v[:, signals.idx("makeup_flow")] = [0.5, 1.2]  # hs002 above 0.5 %
                v[:, signals.idx("makeup_total")] = 100.0 + k
                h.write_tick(t, v)
                h.write_derived(t, {name: np.array([0.5, 1.5]) for name in DERIVED_FIELDS})
                h.write_daemon({name: 1.0 for name in KPI_FIELD_NAMES}, t)
            h.write_alarm(
                {
                    "time": now,
                    "alarm_id": "hs001/makeup_over_allowance",
                    "incident_id": "inc-7",
                    "to_state": "unack",
                    "kind": "makeup_over_allowance",
                    "station": "hs001",
                    "severity": "minor",
                    "value": 0.008,
                    "priority": 3,
                }
            )
            assert await h.forwarder.wait_empty(10.0)
            await h.stop()

        asyncio.run(feed())
        vm_wait_samples(vm, '{site="site1"}', 31 * 2 * (signals.K + len(DERIVED_FIELDS)) + 4)
        yield vm


def test_datasource_is_the_one_the_dashboards_name():
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/stationd.yaml").read_text())
    uid = ds["datasources"][0]["uid"]
    for path in DASHBOARDS:
        d = json.loads(path.read_text(encoding="utf-8"))
        for p in d["panels"]:
            assert p["datasource"]["uid"] == uid, (path.name, p["title"])
        names = {v["name"] for v in d["templating"]["list"]}
        assert {"site", "branch"} <= names, path.name
    assert len(DASHBOARDS) == 5


def test_every_query_names_only_series_and_labels_the_historian_writes(fed_vm):
    metrics = set(get_json(fed_vm, "/api/v1/label/__name__/values")["data"])
    labels = set(get_json(fed_vm, "/api/v1/labels")["data"]) - {"__name__"}
    assert {"station_secondary_supply_temp", "derived_loss_ratio", "alarm_state"} <= metrics
    for dash, expr, legend in queries():
        for name, inner in SELECTOR.findall(expr):
            assert name in metrics, f"{dash}: {name} is not written by the historian"
            for label in MATCHER.findall(inner):
                assert label in labels, f"{dash}: label {label} in {expr}"
        for name in OURS.findall(expr):  # also bare names, e.g. in label_values(...)
            assert name in metrics, f"{dash}: {name} is not written by the historian"
        for group in GROUPING.findall(expr):
            for label in filter(None, (x.strip() for x in group.split(","))):
                assert label in labels, f"{dash}: grouping label {label}"
        for label in LEGEND.findall(legend):
            assert label in labels, f"{dash}: legend label {label}"
        m = re.match(r"label_values\((.*),\s*(\w+)\)$", expr)
        if m:
            assert m.group(2) in labels, f"{dash}: template variable label {m.group(2)}"


def test_every_panel_query_returns_data(fed_vm):
    now = int(time.time())
    for dash, expr, _ in queries():
        if expr.startswith("label_values("):
            continue
        q = expr
        for var, value in VARS.items():
            q = q.replace(var, value)
        r = get_json(
            fed_vm, "/api/v1/query_range", query=q, start=str(now - 2400), end=str(now), step="60"
        )
        assert r["status"] == "success", (dash, q, r)
        assert r["data"]["result"], f"{dash}: no data for {q}"
