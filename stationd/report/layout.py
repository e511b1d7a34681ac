"""The layout every renderer prints: columns, tables, the definitions page.

`DailyReport.tables()` (daily.py) lays the report out once in these terms, with headings
in Chinese and English, so the CSV, XLSX and HTML renderers never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stationd.report.compute import FLOOR_BELOW_CURVE_MIN_K, SUPPLIED_SHARE

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


def decimals(unit: str) -> int:
    return {"MPa": 3, "m³/h": 2, "°C": 2}.get(unit, 2)


def num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def atomic_path(path: Path) -> Path:
    """The temporary name a renderer writes before `path.replace`."""
    return path.with_name(f".{path.name}.tmp")
