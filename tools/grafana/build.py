"""Render the dashboard definition (dashboards.py) as Grafana JSON for one datasource.

Two flavours, one definition:
- `victoriametrics`: a Prometheus-type datasource (uid `stationd-vm`), PromQL;
- `influxdb`: an InfluxDB datasource speaking InfluxQL (uid `stationd-influxdb`;
  InfluxDB 1.x, or 2.x/3.x through the v1 API).

Each flavour's dashboards link to each other (dashboard links by tag, data links from
the fleet grid and tables to the station page) and never to the other flavour's.
`write_all()` writes config/grafana/dashboards/<flavour>/<slug>.json; `render_all()`
gives the same text without writing (the test compares the two).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.grafana.dashboards import DASHBOARDS, STATION_UID, Dashboard, Panel
from tools.grafana.queries import Q

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "config" / "grafana" / "dashboards"


@dataclass(frozen=True)
class Flavour:
    name: str  # folder name
    ds_type: str
    ds_uid: str
    uid_suffix: str

    @property
    def datasource(self) -> dict[str, str]:
        return {"type": self.ds_type, "uid": self.ds_uid}

    @property
    def tag(self) -> str:
        return f"stationd-{self.name}"

    def uid(self, base: str) -> str:
        return base + self.uid_suffix


VICTORIAMETRICS = Flavour("victoriametrics", "prometheus", "stationd-vm", "")
INFLUXDB = Flavour("influxdb", "influxdb", "stationd-influxdb", "-ix")
FLAVOURS = (VICTORIAMETRICS, INFLUXDB)


# --- targets --------------------------------------------------------------------------------
def _target(fl: Flavour, q: Q, ref: str, *, table: bool = False, column: str = "v") -> dict:
    if fl is VICTORIAMETRICS:
        t: dict[str, Any] = {
            "datasource": fl.datasource,
            "refId": ref,
            "expr": q.promql(),
            "legendFormat": q.promql_legend(),
        }
        if q.instant:
            t |= {"instant": True, "range": False}
        if table:
            t["format"] = "table"
        return t
    return {
        "datasource": fl.datasource,
        "refId": ref,
        "query": q.influxql(column),
        "rawQuery": True,
        "resultFormat": "table" if table else "time_series",
        "alias": q.influxql_alias(),
    }


def _station_link(fl: Flavour, station: str) -> list[dict[str, Any]]:
    """A data link to this flavour's station page; `station` is how the cell names it
    (`${__field.labels.station}` for a series, `${__value.raw}` for a table cell)."""
    return [
        {
            "title": "换热站详情 Station detail",
            "url": f"/d/{fl.uid(STATION_UID)}?var-site=${{site}}&var-station={station}"
            "&${__url_time_range}",
        }
    ]


# --- panels ---------------------------------------------------------------------------------
def _field_config(p: Panel, fl: Flavour) -> dict[str, Any]:
    d: dict[str, Any] = {"custom": dict(p.custom)}
    if p.unit:
        d["unit"] = p.unit
    if p.thresholds:
        d["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": c, "value": v} for c, v in p.thresholds],
        }
    if p.threshold_style:
        d["custom"]["thresholdsStyle"] = {"mode": p.threshold_style}
    if p.mappings:
        d["mappings"] = [
            {
                "type": "value",
                "options": {
                    k: {"text": text, "color": colour, "index": i}
                    for i, (k, (text, colour)) in enumerate(p.mappings.items())
                },
            }
        ]
    if p.min is not None:
        d["min"] = p.min
    if p.max is not None:
        d["max"] = p.max
    if p.no_value is not None:
        d["noValue"] = p.no_value
    if p.link_station and p.kind == "grid":
        d["links"] = _station_link(fl, "${__field.labels.station}")
    if p.kind == "state-timeline" and p.mappings:
        d["color"] = {"mode": "thresholds"}
    return {"defaults": d, "overrides": [dict(o) for o in p.overrides]}


def _table(p: Panel, fl: Flavour, panel: dict[str, Any]) -> None:
    refs = [chr(ord("A") + i) for i in range(len(p.queries))]
    names = [f"c{i + 1}" for i in range(len(p.queries))]
    panel["targets"] = [
        _target(fl, q, ref, table=True, column=name)
        for q, ref, name in zip(p.queries, refs, names, strict=True)
    ]
    # PromQL tables call a query's value "Value #<ref>" (plain "Value" when alone);
    # InfluxQL ones the alias given in the query
    if fl is VICTORIAMETRICS:
        keys = [f"Value #{r}" for r in refs] if len(refs) > 1 else ["Value"]
    else:
        keys = names
    rename = {k: heading for k, (heading, _unit) in zip(keys, p.columns, strict=True)}
    rename |= {
        "station": "站号 station",
        "name": "站名 name",
        "alarm": "报警 alarm",
        "finding": "类型 finding",
        "incident": "事件 incident",
    }
    hidden = {"Time": True, "time": True, "site": True, "branch": True, "__name__": True}
    panel["transformations"] = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {"excludeByName": hidden, "renameByName": rename}},
    ]
    overrides = panel["fieldConfig"]["overrides"]
    for (heading, unit), _k in zip(p.columns, keys, strict=True):
        props: list[dict[str, Any]] = [{"id": "unit", "value": unit}] if unit else []
        if p.mappings and heading.startswith(("报警", "状态")):
            props.append({"id": "custom.cellOptions", "value": {"type": "color-background"}})
        else:
            props.append({"id": "mappings", "value": []})  # numbers, not alarm names
        overrides.append({"matcher": {"id": "byName", "options": heading}, "properties": props})
    if p.link_station:
        overrides.append(
            {
                "matcher": {"id": "byName", "options": "站号 station"},
                "properties": [{"id": "links", "value": _station_link(fl, "${__value.raw}")}],
            }
        )
    panel["options"] = {"showHeader": True, "cellHeight": "sm", **p.options}


def _panel(p: Panel, fl: Flavour, pid: int, pos: dict[str, int]) -> dict[str, Any]:
    kind = "stat" if p.kind == "grid" else p.kind
    panel: dict[str, Any] = {
        "id": pid,
        "type": kind,
        "title": p.title,
        "datasource": fl.datasource,
        "gridPos": pos,
        "fieldConfig": _field_config(p, fl),
        "options": dict(p.options),
    }
    if p.interval:
        panel["interval"] = p.interval
    if p.kind == "table":
        _table(p, fl, panel)
        return panel
    panel["targets"] = [_target(fl, q, chr(ord("A") + i)) for i, q in enumerate(p.queries)]
    if p.kind == "grid":
        # one coloured cell per station: a stat panel with a value per series
        panel["options"] = {
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "value_and_name",
            "justifyMode": "center",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "values": False},
            **p.options,
        }
    elif kind in ("stat", "bargauge"):
        panel["options"] = {
            "graphMode": "none",
            "reduceOptions": {"calcs": ["lastNotNull"], "values": False},
            **p.options,
        }
    elif kind == "state-timeline":
        panel["options"] = {"mergeValues": True, "showValue": "never", "rowHeight": 0.8}
    return panel


def _layout(panels: tuple[Panel, ...]) -> list[dict[str, int]]:
    """Left to right, wrapping at Grafana's 24 columns; a row is as tall as its tallest."""
    out, x, y, row_h = [], 0, 0, 0
    for p in panels:
        if x + p.w > 24:
            x, y, row_h = 0, y + row_h, 0
        out.append({"h": p.h, "w": p.w, "x": x, "y": y})
        x += p.w
        row_h = max(row_h, p.h)
    return out


# --- variables and annotations --------------------------------------------------------------
def _var(fl: Flavour, name: str, label: str, prom: str, influx: str, **extra: Any) -> dict:
    v: dict[str, Any] = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": fl.datasource,
        "refresh": 2,  # on time range change: a station added today appears
        "sort": 1,
    }
    if fl is VICTORIAMETRICS:
        v |= {"query": {"query": prom, "refId": name}, "definition": prom}
    else:
        v |= {"query": influx, "definition": influx}
    return v | extra


def _variables(d: Dashboard, fl: Flavour) -> list[dict[str, Any]]:
    every = {"includeAll": True, "multi": True, "allValue": ".*"}
    out = [
        _var(
            fl,
            "site",
            "站点 Site",
            "label_values(station_secondary_supply_temp, site)",
            'SHOW TAG VALUES FROM "station" WITH KEY = "site"',
        ),
        _var(
            fl,
            "branch",
            "支线 Branch",
            'label_values(station_secondary_supply_temp{site="$site"}, branch)',
            'SHOW TAG VALUES FROM "station" WITH KEY = "branch" WHERE "site" =~ /^$site$/',
            **every,
        ),
    ]
    if d.station_var != "none":
        # from the station measurement: every station, not only those that have alarmed
        out.append(
            _var(
                fl,
                "station",
                "换热站 Station",
                'label_values(station_secondary_supply_temp{site="$site", branch=~"$branch"}, '
                "station)",
                'SHOW TAG VALUES FROM "station" WITH KEY = "station" '
                'WHERE "site" =~ /^$site$/ AND "branch" =~ /^$branch$/',
                **(every if d.station_var == "multi" else {}),
            )
        )
    return out


def alarm_annotation(fl: Flavour) -> dict[str, Any]:
    """Alarm transitions (the `changed` points the historian writes) at $station."""
    a: dict[str, Any] = {
        "name": "报警 Alarms",
        "datasource": fl.datasource,
        "enable": True,
        "iconColor": "red",
    }
    if fl is VICTORIAMETRICS:
        expr = 'alarm_changed{site="$site", station=~"$station"}'
        return a | {
            "expr": expr,
            "step": "10s",
            "titleFormat": "{{finding}}",
            "textFormat": "{{alarm}} {{incident}}",
            "tagKeys": "finding,incident",
            "useValueForTime": False,
        }
    q = (
        'SELECT "state", "finding", "alarm", "incident" FROM "alarm" '
        'WHERE "site" =~ /^$site$/ AND "station" =~ /^$station$/ AND "changed" = 1 '
        "AND $timeFilter"
    )
    return a | {
        "query": q,
        "titleColumn": "finding",
        "textColumn": "incident",
        "tagsColumn": "alarm",
    }


# --- dashboards -----------------------------------------------------------------------------
def render(d: Dashboard, fl: Flavour) -> dict[str, Any]:
    panels = [
        _panel(p, fl, i + 1, pos)
        for i, (p, pos) in enumerate(zip(d.panels, _layout(d.panels), strict=True))
    ]
    annotations = [alarm_annotation(fl)] if d.annotations else []
    return {
        "uid": fl.uid(d.uid),
        "title": d.title,
        "tags": ["stationd", fl.tag, *d.tags],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "links": [
            {
                "title": "换热站看板 stationd dashboards",
                "type": "dashboards",
                "tags": [fl.tag],
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": {"list": _variables(d, fl)},
        "annotations": {"list": annotations},
        "panels": panels,
    }


def render_all() -> dict[Path, str]:
    """Every dashboard file's path and text (what write_all() writes)."""
    out = {}
    for fl in FLAVOURS:
        for d in DASHBOARDS:
            text = json.dumps(render(d, fl), ensure_ascii=False, indent=2) + "\n"
            out[OUT / fl.name / f"{d.slug}.json"] = text
    return out


def write_all() -> list[Path]:
    written = []
    for path, text in render_all().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written
