"""Assemble one daily report (供热日报): read, aggregate, gather incidents, lay out tables.

    report = build_report(cfg, period, source, state_dir)
    paths = write_report(report, out_dir)      # CSV, XLSX and HTML side by side

`DailyReport.tables()` is the one layout every renderer prints (CSV, XLSX, HTML), with
headings in Chinese and English, so the three never disagree.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from stationd import signals
from stationd.detect.thresholds import Thresholds
from stationd.kpi import KpiReport, kpi_report
from stationd.kpi.report import checks as kpi_checks
from stationd.report.compute import (
    FLOOR_BELOW_CURVE_MIN_K,
    MEAN_SIGNALS,
    SUPPLIED_SHARE,
    Hourly,
    IndoorShare,
    StationInfo,
    aggregate,
    indoor_share,
)
from stationd.report.data import Source
from stationd.report.incidents import STATE_ZH, Incidents, load_incidents
from stationd.report.period import Period

log = logging.getLogger(__name__)

#: meters are read from this long before and after the period, so the steps across its
#: edges are not lost (only their part inside the period counts)
LEAD_IN_S = 900.0

SUPPLY_ZH = {1: "供热", 0: "停供", -1: "无数据"}
SUPPLY_EN = {1: "supplied", 0: "not supplied", -1: "no data"}

DEFINITIONS: tuple[tuple[str, str], ...] = (
    (
        "报表时段：09:00 报表为前一日 09:00 至当日 09:00（24 小时）；17:00 报表为当日 09:00 至 17:00。",
        "Period: the 09:00 report covers 09:00 yesterday to 09:00 today (24 h); the 17:00 "
        "report covers 09:00 to 17:00 today. Site local time.",
    ),
    (
        "供热判定：某小时内同时有循环泵状态和二次供水温度的采样中，至少一半为循环泵运行且二次供水"
        f"温度不低于下限（本站供温曲线最低值减 {FLOOR_BELOW_CURVE_MIN_K:g} °C），即为供热；否则为停供；"
        "该小时无此类采样为无数据（通讯或停电）。",
        f"Supplied: in at least {SUPPLIED_SHARE:.0%} of the hour's samples that carry both values, "
        "the circulation pump runs and the secondary supply temperature is at or above the "
        f"floor (the station's heating-curve minimum minus {FLOOR_BELOW_CURVE_MIN_K:g} K); "
        "otherwise not supplied; no such sample: no data (comm or power loss).",
    ),
    (
        "逐时数值为该小时有效采样的平均值；补水量、耗热量取自累计表（补水表、热量表）读数之差，"
        "跨越数据中断的读数差按时间分摊到各小时；表计回退（复位或换表）处不计量。",
        "Hourly values are means of the hour's good samples. Make-up volume and heat come "
        "from the cumulative meters (differences of readings); a step across a data gap is "
        "shared by the hours it spans; a meter drop (reset or replacement) counts nothing.",
    ),
    (
        "补水率 = 补水量 / 循环水量（小时平均循环流量 × 1 小时），限值为循环水量的 0.5 %（方案2 三.1）。",
        "Loss rate = make-up volume / circulated volume (hourly mean circulating flow x 1 h); "
        "the allowance is 0.5 % of the circulated volume (plan 2, III.1).",
    ),
    (
        "单位面积耗热量 = 耗热量 / 入网面积；全季计划指标 0.5 GJ/m²。重要事件由报警系统即时报告。",
        "Heat per area = heat / heated area; the season's planning figure is 0.5 GJ/m². "
        "Important events are reported at once by the alarm system.",
    ),
    (
        "室温达标率：每站室温传感器为其所代表小区的一个代表房间，小区逐时室温取各代表房间小时均值的中位数；"
        "不低于该小时执行的室温标准（20 °C，如约定夜间降温则夜间按降温后标准）的小时为达标，"
        "低于 18 °C 最低标准的小时另计；无读数的小时不计入。",
        "Indoor at standard: each station's room sensor is one representative room of its "
        "estate; the estate's hour is the median of its rooms' hourly means. An hour at or "
        "above the standard in force (20 °C, less an agreed night set-back at night) is at "
        "standard; hours below the 18 °C floor are counted separately; hours without a "
        "reading are left out.",
    ),
    (
        "报警系统指标（ISA-18.2）取自调度日志，目标值与判定见“报警系统指标”表。",
        "Alarm-system KPIs (ISA-18.2) come from the dispatch log; targets and pass/fail are "
        "in the KPI table.",
    ),
)


@dataclass(frozen=True, slots=True)
class Column:
    zh: str
    en: str
    decimals: int | None = None  # None: text or integer

    @property
    def heading(self) -> str:
        return f"{self.zh} / {self.en}"


@dataclass
class Table:
    key: str  # file suffix / sheet key (ASCII)
    title_zh: str
    title_en: str
    columns: list[Column]
    rows: list[list[Any]] = field(default_factory=list)


@dataclass
class DailyReport:
    site_id: str
    site_name: str
    period: Period
    stations: list[StationInfo]
    hourly: Hourly
    incidents: Incidents
    source: str
    generated_at: float
    indoor: IndoorShare | None = None
    kpi: KpiReport | None = None

    @property
    def title_zh(self) -> str:
        return f"{self.site_name} 供热日报（{self.period.day:%Y-%m-%d} {self.period.slot}）"

    @property
    def title_en(self) -> str:
        return (
            f"Daily heating report, {self.site_id}, {self.period.day:%Y-%m-%d} {self.period.slot}"
        )

    @property
    def stem(self) -> str:
        return f"report_{self.site_id}_{self.period.stem}"

    def hour_labels(self) -> list[str]:
        return [f"{self.period.hour_start(h):%Y-%m-%d %H:%M}" for h in range(self.hourly.n_hours)]

    def status_at_end(self) -> list[int]:
        """Per station: the supply status of the last hour that has one (-1: none)."""
        out = []
        for row in self.hourly.supplied.tolist():
            known = [x for x in row if x != -1]
            out.append(known[-1] if known else -1)
        return out

    def unsupplied_spans(self, s: int) -> str:
        """Hours not supplied as local `HH:MM-HH:MM` spans."""
        spans: list[str] = []
        row = self.hourly.supplied[s].tolist()
        h = 0
        while h < len(row):
            if row[h] == 0:
                e = h
                while e + 1 < len(row) and row[e + 1] == 0:
                    e += 1
                a, b = self.period.hour_start(h), self.period.hour_start(e + 1)
                spans.append(f"{a:%H:%M}-{b:%H:%M}")
                h = e + 1
            else:
                h += 1
        return ", ".join(spans)

    # -- the layout every renderer uses ------------------------------------------------
    def tables(self) -> list[Table]:
        return [
            self.summary_table(),
            self.estate_table(),
            self.hourly_table(),
            self.incident_table(),
            self.indoor_table(),
            self.kpi_table(),
            self.kpi_top_table(),
        ]

    def indoor_table(self) -> Table:
        cols = [
            Column("小区", "Estate"),
            Column("代表房间数", "Rooms"),
            Column("有读数小时", "Hours with a reading"),
            Column("达标小时", "Hours at standard"),
            Column("低于18 °C小时", "Hours below 18 °C floor"),
            Column("达标率 %", "Share at standard %", 1),
            Column("平均室温 °C", "Mean indoor °C", 2),
        ]
        rows: list[list[Any]] = []
        ind = self.indoor
        if ind is not None:
            share, mean = ind.share_at_standard, ind.mean_c
            for j, estate in enumerate(ind.estates):
                rows.append(
                    [
                        estate,
                        int(ind.rooms[j]),
                        int(ind.hours_known[j]),
                        int(ind.hours_at_standard[j]),
                        int(ind.hours_below_floor[j]),
                        _num(share[j] * 100.0),
                        _num(mean[j]),
                    ]
                )
        return Table("indoor", "小区室温达标", "Indoor at standard by estate", cols, rows)

    def kpi_table(self) -> Table:
        cols = [
            Column("指标", "KPI"),
            Column("数值", "Value", 2),
            Column("单位", "Unit"),
            Column("目标", "Target"),
            Column("判定", "Result"),
        ]
        rows: list[list[Any]] = []
        if self.kpi is not None:
            for c in kpi_checks(self.kpi):
                verdict = (
                    "无数据 no data"
                    if c.passed is None
                    else ("达标 pass" if c.passed else "未达标 FAIL")
                )
                value = c.shown or (None if c.value is None else _num(c.value))
                rows.append(
                    [f"{c.label_zh} / {c.label_en}", value, c.unit.strip(), c.target, verdict]
                )
        return Table("kpi", "报警系统指标", "Alarm-system KPIs", cols, rows)

    def kpi_top_table(self) -> Table:
        cols = [
            Column("序号", "Rank"),
            Column("报警", "Alarm"),
            Column("次数", "Count"),
            Column("占比 %", "Share %", 1),
        ]
        rows: list[list[Any]] = []
        if self.kpi is not None:
            for k, a in enumerate(self.kpi.top, start=1):
                rows.append([k, a.alarm_id, a.count, _num(a.share_pct)])
        return Table("kpi_top", "最频繁的10个报警", "Ten most frequent alarms", cols, rows)

    def summary_table(self) -> Table:
        hr = self.hourly
        cols = [
            Column("站号", "Station id"),
            Column("换热站", "Station"),
            Column("小区", "Estates"),
            Column("支线", "Branch"),
            Column("入网面积 m²", "Heated area m²", 0),
            Column("供热小时", "Hours supplied"),
            Column("停供小时", "Hours not supplied"),
            Column("无数据小时", "Hours no data"),
            Column("二次供水温度均值 °C", "Secondary supply temp mean °C", 2),
            Column("二次回水温度均值 °C", "Secondary return temp mean °C", 2),
            Column("二次供水压力均值 MPa", "Secondary supply pressure mean MPa", 3),
            Column("二次循环流量均值 m³/h", "Secondary flow mean m³/h", 2),
            Column("一次供水温度均值 °C", "Primary supply temp mean °C", 2),
            Column("补水量 m³", "Make-up volume m³", 3),
            Column("循环水量 m³", "Circulated volume m³", 1),
            Column("补水率 %", "Loss rate %", 3),
            Column("补水限值 %", "Allowance %", 2),
            Column("是否超限", "Over allowance"),
            Column("耗热量 GJ", "Heat GJ", 3),
            Column("单位面积耗热 GJ/m²", "Heat per area GJ/m²", 6),
            Column("表计回退次数", "Meter resets"),
        ]
        means = {
            n: hr.period_mean(n)
            for n in (
                "secondary_supply_temp",
                "secondary_return_temp",
                "secondary_supply_pressure",
                "secondary_flow",
                "primary_supply_temp",
            )
        }
        rows = []
        for s, st in enumerate(self.stations):
            over = hr.over_allowance[s]
            rows.append(
                [
                    st.id,
                    st.name,
                    "、".join(st.estates),
                    st.branch,
                    st.heated_area_m2,
                    int(hr.hours_supplied[s]),
                    int(hr.hours_unsupplied[s]),
                    int(hr.hours_unknown[s]),
                    *(_num(means[n][s]) for n in means),
                    _num(hr.makeup_total_m3[s]),
                    _num(hr.circulated_total_m3[s]),
                    _num(hr.loss_rate_total[s] * 100),
                    st.allowance * 100,
                    "是 yes" if over else ("否 no" if math.isfinite(hr.loss_rate_total[s]) else ""),
                    _num(hr.heat_total_gj[s]),
                    _num(hr.heat_per_m2[s]),
                    int(hr.meter_resets[s].sum()),
                ]
            )
        return Table("summary", "换热站汇总", "Station summary", cols, rows)

    def estate_table(self) -> Table:
        cols = [
            Column("小区", "Estate"),
            Column("换热站", "Station"),
            Column("站号", "Station id"),
            Column("报表时供热状态", "Status at report time"),
            Column("供热小时", "Hours supplied"),
            Column("停供小时", "Hours not supplied"),
            Column("无数据小时", "Hours no data"),
            Column("停供时段", "Not supplied during"),
        ]
        hr = self.hourly
        end = self.status_at_end()
        rows = []
        for s, st in enumerate(self.stations):
            for estate in st.estates:
                rows.append(
                    [
                        estate,
                        st.name,
                        st.id,
                        f"{SUPPLY_ZH[end[s]]} {SUPPLY_EN[end[s]]}",
                        int(hr.hours_supplied[s]),
                        int(hr.hours_unsupplied[s]),
                        int(hr.hours_unknown[s]),
                        self.unsupplied_spans(s),
                    ]
                )
        return Table("estates", "小区供热状态", "Estates supplied or not", cols, rows)

    def hourly_table(self) -> Table:
        hr = self.hourly
        cols = [
            Column("时间", "Hour"),
            Column("站号", "Station id"),
            Column("换热站", "Station"),
            Column("小区", "Estates"),
            Column("供热状态", "Supply status"),
            Column("有效采样数", "Samples"),
        ]
        for n in MEAN_SIGNALS:
            spec = signals.SIGNALS[signals.INDEX[n]]
            cols.append(
                Column(f"{spec.zh} {spec.unit}", f"{n} ({spec.unit})", _decimals(spec.unit))
            )
        cols += [
            Column("补水量 m³", "Make-up m³", 3),
            Column("补水率 %", "Loss rate %", 3),
            Column("耗热量 GJ", "Heat GJ", 3),
        ]
        labels = self.hour_labels()
        loss = hr.loss_rate
        rows = []
        for s, st in enumerate(self.stations):
            estates = "、".join(st.estates)
            for h, label in enumerate(labels):
                sup = int(hr.supplied[s, h])
                rows.append(
                    [
                        label,
                        st.id,
                        st.name,
                        estates,
                        f"{SUPPLY_ZH[sup]} {SUPPLY_EN[sup]}",
                        int(hr.samples[s, h]),
                        *(_num(x) for x in hr.means[s, h].tolist()),
                        _num(hr.makeup_m3[s, h]),
                        _num(loss[s, h] * 100),
                        _num(hr.heat_gj[s, h]),
                    ]
                )
        return Table("hourly", "逐时数据", "Hourly values", cols, rows)

    def incident_table(self) -> Table:
        tz = self.period.start.tzinfo
        cols = [
            Column("事件编号", "Incident"),
            Column("报警", "Alarm"),
            Column("换热站", "Station"),
            Column("类型", "Kind"),
            Column("级别", "Severity"),
            Column("首次时间", "First seen"),
            Column("最后状态", "Last state"),
            Column("说明", "Message"),
            Column("预案", "Playbook"),
            Column("预案进度", "Steps done"),
            Column("未完成步骤", "Pending steps"),
            Column("升级次数", "Escalations"),
        ]
        names = {st.id: st.name for st in self.stations}
        rows = []
        for inc in self.incidents.items:
            first = (
                f"{datetime.fromtimestamp(inc.first_time, tz):%Y-%m-%d %H:%M:%S}"
                if inc.first_time is not None
                else ""
            )
            state = f"{STATE_ZH.get(inc.state, inc.state)} {inc.state}".strip()
            pb = f"{inc.plan_section} {inc.playbook_zh} / {inc.playbook_en}".strip(" /")
            rows.append(
                [
                    inc.incident_id,
                    inc.alarm_id,
                    f"{names.get(inc.station, '')} {inc.station}".strip(),
                    inc.kind,
                    inc.severity,
                    first,
                    state,
                    " / ".join(x for x in (inc.message_zh, inc.message_en) if x),
                    pb,
                    inc.progress,
                    "；".join(inc.pending_steps_zh),
                    inc.escalations,
                ]
            )
        return Table("incidents", "报警与事件", "Alarms and incidents", cols, rows)


def _decimals(unit: str) -> int:
    return {"MPa": 3, "m³/h": 2, "°C": 2}.get(unit, 2)


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def build_report(
    cfg: Any,
    period: Period,
    source: Source,
    state_dir: str | Path | None,
    stations: Sequence[StationInfo] | None = None,
) -> DailyReport:
    """Read the period (with a lead-in for the meters) and gather its incidents."""
    infos = (
        list(stations)
        if stations is not None
        else [StationInfo.from_station(st) for st in cfg.stations]
    )
    hourly = aggregate(
        infos, source.chunks(period.t0 - LEAD_IN_S, period.t1 + LEAD_IN_S), period.t0, period.t1
    )
    incidents = load_incidents(state_dir, period.t0, period.t1)
    site_th = getattr(cfg, "thresholds", None) or Thresholds()
    indoor = indoor_share(
        hourly, infos, [period.hour_start(h).hour for h in range(hourly.n_hours)], site_th
    )
    return DailyReport(
        site_id=cfg.site.id,
        site_name=cfg.site.name,
        period=period,
        stations=infos,
        hourly=hourly,
        incidents=incidents,
        source=source.name,
        generated_at=time.time(),
        indoor=indoor,
        kpi=_kpis(state_dir, period),
    )


def _kpis(state_dir: str | Path | None, period: Period) -> KpiReport | None:
    """The period's alarm-system KPIs, or None (and a log line) without a dispatch log: a
    report still goes out when the alarm side has not written anything yet."""
    if state_dir is None:
        return None
    try:
        return kpi_report(Path(state_dir), period.t0, period.t1)
    except FileNotFoundError as e:
        log.info("report: no KPIs for %s: %s", period.stem, e)
        return None


def write_report(report: DailyReport, out_dir: str | Path) -> list[Path]:
    """Write CSV (one file per table), XLSX and HTML; returns the paths written.

    Each file is written beside its final name and renamed into place, so a reader (a
    web server, a mail job) never sees half a report."""
    from stationd.report.render_csv import write_csv
    from stationd.report.render_html import write_html
    from stationd.report.render_xlsx import write_xlsx

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = write_csv(report, out)
    paths.append(write_xlsx(report, out / f"{report.stem}.xlsx"))
    paths.append(write_html(report, out / f"{report.stem}.html"))
    return paths


def atomic_path(path: Path) -> Path:
    """The temporary name a renderer writes before `path.replace`."""
    return path.with_name(f".{path.name}.tmp")
