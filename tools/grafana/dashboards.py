"""THE definition of stationd's five Grafana dashboards, for either datasource.

Each dashboard is a list of panels; each panel names its queries as `Q`s (queries.py),
which build.py renders as PromQL for VictoriaMetrics or InfluxQL for InfluxDB. Titles,
units, thresholds, colours, layout and links live here once, so the two sets cannot
drift. After a change: `python -m tools.grafana` rewrites config/grafana/dashboards/;
tests/test_grafana_dashboards.py fails when the committed files differ from this.

Longer than ~400 lines on purpose: it is data (five dashboards, one block per panel),
with no logic to split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from alarms.model import STATE_NAMES
from tools.grafana.queries import ALARMS, FLEET, SITE, STATION, Q, Scope

PanelKind = Literal["timeseries", "stat", "state-timeline", "bargauge", "table", "grid"]

#: the station page, linked from the fleet grid and tables (uid gets the flavour suffix)
STATION_UID = "stationd-station"


@dataclass(frozen=True)
class Panel:
    title: str
    kind: PanelKind
    queries: tuple[Q, ...]
    w: int = 12
    h: int = 8
    unit: str | None = None
    thresholds: tuple[tuple[str, float | None], ...] = ()
    threshold_style: str | None = None  # timeseries: "line", "line+area"
    mappings: dict[str, tuple[str, str]] | None = None  # value -> (text, colour)
    min: float | None = None
    max: float | None = None
    no_value: str | None = None
    interval: str | None = None  # the panel's minimum step (e.g. "1h", "1d")
    custom: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    #: table columns: (heading, unit) per query, in order
    columns: tuple[tuple[str, str | None], ...] = ()
    link_station: bool = False  # cells/values link to the station page
    overrides: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Dashboard:
    slug: str  # file name
    uid: str
    title: str
    tags: tuple[str, ...]
    panels: tuple[Panel, ...]
    station_var: Literal["none", "single", "multi"] = "none"
    annotations: bool = False  # alarm transitions at $station on every chart


_STATE_COLOURS = {
    "normal": "green",
    "unack": "red",
    "acked": "orange",
    "rtn_unack": "yellow",
    "shelved": "blue",
    "suppressed": "purple",
}
#: the historian's state codes named as the alarm side names them (alarms.model.STATE_NAMES)
ALARM_STATES = {
    str(n.code): (f"{n.zh} {state.value}", _STATE_COLOURS[state.value])
    for state, n in STATE_NAMES.items()
}
ALARM_LEVELS = {
    "0": ("正常 OK", "green"),
    "1": ("提示 notice", "blue"),
    "2": ("一般 minor", "yellow"),
    "3": ("重要 major", "orange"),
    "4": ("紧急 critical", "red"),
}
ALLOWANCE = (("green", None), ("red", 0.5))  # per cent of the circulating flow
STATION_ONE_ALARM = Scope((("site", "site", False), ("station", "station", False)))


def _s(measurement: str, expr: str, scope: Scope = FLEET, **kw: Any) -> Q:
    return Q(measurement, expr, scope, **kw)


def _now(measurement: str, expr: str, scope: Scope = FLEET, **kw: Any) -> Q:
    """One value per station (or one in all, with fleet=...) over the last 2 minutes."""
    kw.setdefault("window", "2m")
    kw.setdefault("agg", "last")
    return Q(measurement, expr, scope, **kw)


def _station(expr: str, legend: str, measurement: str = "station") -> Q:
    return Q(measurement, expr, STATION, legend=legend)


ACTIVE_ALARMS = _now(
    "daemon", "{alarms_active}", SITE, by=(), legend="当前报警 active"
)  # the daemon's own count: what /metrics' stationd_alarms_active and MQTT show

FLEET_OVERVIEW = Dashboard(
    "fleet-overview",
    "stationd-fleet",
    "换热站总览 Fleet overview",
    ("fleet",),
    (
        Panel(
            "在线换热站 Stations reporting",
            "stat",
            (
                _now(
                    "station",
                    "{secondary_supply_temp}",
                    fleet="count",
                    by=("station",),
                    legend="stations",
                ),
            ),
            w=6,
            h=4,
            no_value="0",
        ),
        Panel(
            "当前报警 Active alarms",
            "stat",
            (ACTIVE_ALARMS,),
            w=6,
            h=4,
            thresholds=(("green", None), ("red", 1)),
            no_value="0",
            options={"colorMode": "background"},
        ),
        Panel(
            "超限补水站数 Stations above their make-up allowance",
            "stat",
            (
                _now(
                    "derived", "{loss_vs_allowance}", where="> 1", fleet="count", legend="stations"
                ),
            ),
            w=6,
            h=4,
            thresholds=(("green", None), ("red", 1)),
            no_value="0",
            options={"colorMode": "background"},
        ),
        Panel(
            "室外温度 Outdoor temperature",
            "stat",
            (_now("station", "{outdoor_temp}", fleet="avg", legend="outdoor"),),
            w=6,
            h=4,
            unit="celsius",
        ),
        Panel(
            "换热站状态 Fleet status (worst active alarm)",
            "grid",
            (_now("derived", "{alarm_level}", legend="{name}"),),
            w=24,
            h=6,
            mappings=ALARM_LEVELS,
            link_station=True,
        ),
        Panel(
            "换热站一览 Stations now",
            "table",
            (
                _now("station", "{secondary_supply_temp}"),
                _now("station", "{secondary_return_temp}"),
                _now("station", "{secondary_supply_pressure}"),
                _now("station", "{secondary_flow}"),
                _now("derived", "100 * {loss_ratio}"),
                _now("derived", "{alarm_level}"),
                _now("station", "{outdoor_temp}"),
            ),
            w=24,
            h=9,
            columns=(
                ("二次供温 supply °C", "celsius"),
                ("二次回温 return °C", "celsius"),
                ("二次供压 supply MPa", "MPa"),
                ("循环流量 flow m³/h", None),
                ("补水率 loss %", "percent"),
                ("报警 alarm", None),
                ("室外 outdoor °C", "celsius"),
            ),
            mappings=ALARM_LEVELS,
            link_station=True,
        ),
        Panel(
            "二次供水温度 Secondary supply temperature",
            "timeseries",
            (_s("station", "{secondary_supply_temp}"),),
            unit="celsius",
        ),
        Panel(
            "二次供水压力 Secondary supply pressure",
            "timeseries",
            (_s("station", "{secondary_supply_pressure}"),),
            unit="MPa",
        ),
        Panel(
            "补水率 Loss rate (make-up / circulating, allowance 0.5 %)",
            "timeseries",
            (_s("derived", "100 * {loss_ratio}"),),
            unit="percent",
            thresholds=ALLOWANCE,
            threshold_style="line",
        ),
        Panel(
            "一次供水温度 Primary supply temperature",
            "timeseries",
            (_s("station", "{primary_supply_temp}"),),
            unit="celsius",
        ),
        Panel(
            "室温达标 Indoor at standard (share of the last 24 h)",
            "bargauge",
            (_now("derived", "{indoor_at_standard}", window="24h", agg="mean"),),
            w=24,
            unit="percentunit",
            min=0,
            max=1,
            thresholds=(("red", None), ("green", 0.95)),
            options={"orientation": "horizontal", "displayMode": "basic"},
        ),
    ),
)

STATION_DETAIL = Dashboard(
    "station-detail",
    STATION_UID,
    "换热站详情 Station detail",
    ("station",),
    (
        Panel(
            "温度 Temperatures",
            "timeseries",
            (
                _station("{primary_supply_temp}", "一次供 primary supply"),
                _station("{primary_return_temp}", "一次回 primary return"),
                _station("{secondary_supply_temp}", "二次供 secondary supply"),
                _station("{secondary_return_temp}", "二次回 secondary return"),
                _station("{outdoor_temp}", "室外 outdoor"),
                _station("{indoor_temp}", "室内 indoor"),
            ),
            unit="celsius",
        ),
        Panel(
            "压力 Pressures",
            "timeseries",
            (
                _station("{primary_supply_pressure}", "一次供 primary supply"),
                _station("{primary_return_pressure}", "一次回 primary return"),
                _station("{secondary_supply_pressure}", "二次供 secondary supply"),
                _station("{secondary_return_pressure}", "二次回 secondary return"),
            ),
            unit="MPa",
        ),
        Panel(
            "流量 Flows",
            "timeseries",
            (
                _station("{primary_flow}", "一次 primary"),
                _station("{secondary_flow}", "二次循环 circulating"),
                _station("{makeup_flow}", "补水 make-up"),
            ),
            unit="m³/h",
        ),
        Panel(
            "补水率 Make-up rate, allowance 0.5 %",
            "timeseries",
            (
                _station("100 * {makeup_flow} / {secondary_flow}", "表计瞬时 meters, now"),
                _station("100 * {loss_ratio}", "失水率 loss rate", "derived"),
                _station("{warming}", "预热中 warming (provisional)", "derived"),
            ),
            unit="percent",
            thresholds=ALLOWANCE,
            threshold_style="line",
            overrides=(
                {
                    "matcher": {"id": "byName", "options": "预热中 warming (provisional)"},
                    "properties": [
                        {"id": "unit", "value": "none"},
                        {"id": "custom.drawStyle", "value": "bars"},
                        {"id": "custom.fillOpacity", "value": 15},
                        {"id": "custom.axisPlacement", "value": "right"},
                        {"id": "min", "value": 0},
                        {"id": "max", "value": 1},
                    ],
                },
            ),
        ),
        Panel(
            "报警 Alarms at this station",
            "state-timeline",
            (
                Q(
                    "alarm",
                    "{state}",
                    STATION_ONE_ALARM,
                    legend="{alarm} {incident}",
                    by=("alarm", "incident"),
                    agg="last",
                ),
            ),
            w=24,
            h=5,
            mappings=ALARM_STATES,
        ),
        Panel(
            "供温偏离曲线 Supply vs heating curve",
            "timeseries",
            (
                _station("{curve_deviation_c}", "二次偏差 secondary deviation", "derived"),
                _station("{primary_curve_deficit_c}", "一次供温不足 primary deficit", "derived"),
            ),
            unit="celsius",
        ),
        Panel(
            "流量分配 Circulating flow vs 10 t/h per 10,000 m²",
            "timeseries",
            (_station("{expected_flow_ratio}", "ratio", "derived"),),
            thresholds=(("green", None), ("red", 1.0)),
            threshold_style="line",
        ),
        Panel(
            "泵与阀 Pumps, mains",
            "timeseries",
            (
                _station("{circ_pump_running}", "循环泵 circ pump"),
                _station("{makeup_pump_running}", "补水泵 make-up pump"),
                _station("{mains_power}", "市电 mains"),
            ),
        ),
        Panel(
            "频率与开度 Pump frequency, valve position",
            "timeseries",
            (
                _station("{circ_pump_freq}", "频率 Hz"),
                _station("{primary_valve_position}", "开度 %"),
            ),
        ),
        Panel(
            "补水箱液位 Make-up tank level",
            "timeseries",
            (_station("{makeup_tank_level}", "液位 level"),),
            unit="lengthm",
        ),
        Panel(
            "供热功率 Heat power",
            "timeseries",
            (_station("{heat_power_kw}", "kW", "derived"),),
            unit="kwatt",
        ),
        Panel(
            "室温达标 Indoor at standard (hourly share)",
            "timeseries",
            (Q("derived", "{indoor_at_standard}", STATION, legend="{name}", agg="mean"),),
            unit="percentunit",
            min=0,
            max=1,
            interval="1h",
            thresholds=(("red", None), ("green", 0.95)),
        ),
    ),
    station_var="single",
    annotations=True,
)

MAKEUP_LOSS = Dashboard(
    "makeup-loss",
    "stationd-makeup",
    "补水与失水 Make-up and loss rate",
    ("makeup",),
    (
        Panel(
            "失水率 Loss rate per station (allowance 0.5 %)",
            "timeseries",
            (_s("derived", "100 * {loss_ratio}"),),
            w=24,
            unit="percent",
            thresholds=ALLOWANCE,
            threshold_style="line",
        ),
        Panel(
            "失水率/限值 Loss vs the station's allowance",
            "timeseries",
            (_s("derived", "{loss_vs_allowance}"),),
            thresholds=(("green", None), ("red", 1.0)),
            threshold_style="line",
        ),
        Panel(
            "补水率（按表计） Make-up / circulating from the meters",
            "timeseries",
            (_s("station", "100 * {makeup_flow} / {secondary_flow}"),),
            unit="percent",
            thresholds=ALLOWANCE,
            threshold_style="line",
        ),
        Panel(
            "日补水量 Make-up volume per day",
            "timeseries",
            (_s("station", "{makeup_total}", agg="increase"),),
            unit="m³",
            interval="1d",
            custom={"drawStyle": "bars", "fillOpacity": 60},
        ),
        Panel(
            "日补水量/日循环量 Day's make-up / day's circulated volume",
            "timeseries",
            (_s("station", "100 * {makeup_total:increase} / (24 * {secondary_flow:mean})"),),
            unit="percent",
            interval="1d",
            thresholds=ALLOWANCE,
            threshold_style="line",
            custom={"drawStyle": "bars", "fillOpacity": 60},
        ),
        Panel(
            "预热中 Stations whose loss rate is provisional (after a start)",
            "state-timeline",
            (_s("derived", "{warming}", agg="last"),),
            w=24,
            h=5,
            mappings={"0": ("已判定 judged", "green"), "1": ("预热中 warming", "blue")},
        ),
    ),
)

ALARM_TIMELINE = Dashboard(
    "alarm-timeline",
    "stationd-alarms",
    "报警时间线 Alarm timeline",
    ("alarms",),
    (
        Panel(
            "当前报警 Active alarms",
            "stat",
            (ACTIVE_ALARMS,),
            w=6,
            h=6,
            no_value="0",
            thresholds=(("green", None), ("red", 1)),
            options={"colorMode": "background"},
        ),
        Panel(
            "当前报警列表 Alarms not normal now",
            "table",
            (
                _now(
                    "alarm",
                    "{state}",
                    ALARMS,
                    where=">= 1",
                    by=("station", "alarm", "finding", "incident"),
                ),
            ),
            w=18,
            h=6,
            columns=(("状态 state", None),),
            mappings=ALARM_STATES,
            link_station=True,
        ),
        Panel(
            "报警状态 Alarm states",
            "state-timeline",
            (
                Q(
                    "alarm",
                    "{state}",
                    ALARMS,
                    legend="{alarm} {incident}",
                    by=("alarm", "incident"),
                    agg="last",
                ),
            ),
            w=24,
            h=12,
            mappings=ALARM_STATES,
        ),
        Panel(
            "报警值 Alarm values",
            "timeseries",
            (
                Q(
                    "alarm",
                    "{value}",
                    ALARMS,
                    legend="{alarm}",
                    by=("alarm", "incident"),
                    agg="last",
                ),
            ),
        ),
        Panel(
            "严重度 Severity (0 notice .. 3 critical)",
            "timeseries",
            (
                Q(
                    "alarm",
                    "{severity}",
                    ALARMS,
                    legend="{alarm}",
                    by=("alarm", "incident"),
                    agg="last",
                ),
            ),
        ),
    ),
    station_var="multi",
)


def _kpi(field: str) -> Q:
    return Q("daemon", "{" + field + "}", SITE, legend="", by=(), window="2h", agg="last")


def _kpi_series(field: str, legend: str) -> Q:
    return Q("daemon", "{" + field + "}", SITE, legend=legend, by=(), agg="last")


ALARM_KPIS = Dashboard(
    "alarm-kpis",
    "stationd-alarm-kpis",
    "报警系统指标 Alarm-system KPIs (ISA-18.2)",
    ("kpi",),
    (
        Panel(
            "每操作员每小时报警 Alarms per operator-hour (目标 target ≤ 6)",
            "stat",
            (_kpi("alarms_per_operator_hour"),),
            w=4,
            h=4,
            unit="short",
            thresholds=(("green", None), ("orange", 6.0001), ("red", 12.0001)),
            options={"colorMode": "background"},
        ),
        Panel(
            "泛滥时间占比 Time in flood (< 1 %)",
            "stat",
            (_kpi("alarm_flood_time_pct"),),
            w=4,
            h=4,
            unit="percent",
            thresholds=(("green", None), ("red", 1)),
            options={"colorMode": "background"},
        ),
        Panel(
            "振荡报警 Chattering alarms (0)",
            "stat",
            (_kpi("chattering_alarms"),),
            w=4,
            h=4,
            unit="short",
            thresholds=(("green", None), ("red", 1)),
            options={"colorMode": "background"},
        ),
        Panel(
            "陈旧报警 Stale alarms > 24 h (< 5)",
            "stat",
            (_kpi("stale_alarms"),),
            w=4,
            h=4,
            unit="short",
            thresholds=(("green", None), ("red", 5)),
            options={"colorMode": "background"},
        ),
        Panel(
            "确认用时 p90 Time to acknowledge (≤ 30 min)",
            "stat",
            (_kpi("ack_p90_s"),),
            w=4,
            h=4,
            unit="s",
            thresholds=(("green", None), ("red", 1800.001)),
            options={"colorMode": "background"},
        ),
        Panel(
            "预案步骤按时率 Playbook steps on time (100 %)",
            "stat",
            (_kpi("steps_on_time_pct"),),
            w=4,
            h=4,
            unit="percent",
            thresholds=(("red", None), ("green", 100)),
            options={"colorMode": "background"},
        ),
        Panel(
            "报警负荷 Alarm load (过去 24 h 窗口 rolling 24 h)",
            "timeseries",
            (
                _kpi_series("alarms_per_operator_hour", "每操作员小时 per operator-hour"),
                _kpi_series("alarm_peak_10min", "10 分钟峰值 peak in 10 min"),
            ),
            unit="short",
            thresholds=(("green", None), ("orange", 6), ("red", 12)),
            threshold_style="line+area",
        ),
        Panel(
            "报警泛滥 Alarm floods",
            "timeseries",
            (
                _kpi_series("alarm_flood_time_pct", "泛滥时间 % time in flood"),
                _kpi_series("alarm_floods", "泛滥次数 floods"),
            ),
            unit="short",
            thresholds=(("green", None), ("red", 1)),
            threshold_style="line+area",
        ),
        Panel(
            "优先级分布 Priority distribution (ISA-18.2 ≈ 1/5/15/80 %)",
            "bargauge",
            (
                Q(
                    "daemon",
                    "{alarm_priority_1_pct}",
                    SITE,
                    legend="P1 紧急 critical",
                    by=(),
                    window="2h",
                    agg="last",
                ),
                Q(
                    "daemon",
                    "{alarm_priority_2_pct}",
                    SITE,
                    legend="P2 重要 major",
                    by=(),
                    window="2h",
                    agg="last",
                ),
                Q(
                    "daemon",
                    "{alarm_priority_3_pct}",
                    SITE,
                    legend="P3 一般 minor",
                    by=(),
                    window="2h",
                    agg="last",
                ),
                Q(
                    "daemon",
                    "{alarm_priority_4_pct}",
                    SITE,
                    legend="P4 提示 notice",
                    by=(),
                    window="2h",
                    agg="last",
                ),
            ),
            w=8,
            unit="percent",
            min=0,
            max=100,
            thresholds=(("green", None),),
            options={"orientation": "horizontal", "displayMode": "basic"},
        ),
        Panel(
            "干扰报警 Nuisance alarms",
            "timeseries",
            (
                _kpi_series("chattering_alarms", "振荡 chattering"),
                _kpi_series("stale_alarms", "陈旧 stale"),
                _kpi_series("top_ten_share_pct", "前十占比 % top-ten share"),
            ),
            w=8,
            unit="short",
        ),
        Panel(
            "确认用时 Time to acknowledge",
            "timeseries",
            (
                _kpi_series("ack_median_s", "中位 median"),
                _kpi_series("ack_p90_s", "90 分位 p90"),
            ),
            w=8,
            unit="s",
            thresholds=(("green", None), ("red", 1800)),
            threshold_style="line+area",
        ),
        Panel(
            "预案步骤 Playbook steps (过去 24 h rolling 24 h)",
            "timeseries",
            (
                _kpi_series("steps_on_time", "按时 on time"),
                _kpi_series("steps_late", "超时完成 late"),
                _kpi_series("steps_missed", "未完成 missed"),
                _kpi_series("ack_unacked", "未确认事件 incidents not acknowledged"),
            ),
            w=24,
            unit="short",
            custom={"drawStyle": "bars", "stacking": {"mode": "normal"}},
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (
    FLEET_OVERVIEW,
    STATION_DETAIL,
    MAKEUP_LOSS,
    ALARM_TIMELINE,
    ALARM_KPIS,
)
