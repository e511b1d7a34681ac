"""One daily report (供热日报) as data, and its tables in the shared layout (layout.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alarms.kpi import KpiReport
from alarms.kpi.report import checks as kpi_checks
from alarms.model import state_zh
from stationd import signals
from stationd.report.compute import MEAN_SIGNALS, Hourly, IndoorShare, StationInfo
from stationd.report.incidents import Incidents
from stationd.report.layout import SUPPLY_EN, SUPPLY_ZH, Column, Table, decimals, num
from stationd.report.period import Period


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
                        num(share[j] * 100.0),
                        num(mean[j]),
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
                value = c.shown or (None if c.value is None else num(c.value))
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
                rows.append([k, a.alarm_id, a.count, num(a.share_pct)])
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
                    *(num(means[n][s]) for n in means),
                    num(hr.makeup_total_m3[s]),
                    num(hr.circulated_total_m3[s]),
                    num(hr.loss_rate_total[s] * 100),
                    st.allowance * 100,
                    "是 yes" if over else ("否 no" if math.isfinite(hr.loss_rate_total[s]) else ""),
                    num(hr.heat_total_gj[s]),
                    num(hr.heat_per_m2[s]),
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
            cols.append(Column(f"{spec.zh} {spec.unit}", f"{n} ({spec.unit})", decimals(spec.unit)))
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
                        *(num(x) for x in hr.means[s, h].tolist()),
                        num(hr.makeup_m3[s, h]),
                        num(loss[s, h] * 100),
                        num(hr.heat_gj[s, h]),
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
            state = f"{state_zh(inc.state)} {inc.state}".strip()
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
