"""Judge a KpiReport against its targets and render it: text (zh + en), JSON, historian fields.

Targets are ISA-18.2's (table 5, "very likely acceptable") and the heating plan's
(100 % repair timeliness, 30 minutes to accept a work order); each check carries its
target text so the dispatch room sees the figure and what it should be side by side.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from alarms.kpi.measures import KpiReport

SCHEMA = "alarms.kpi/1"
#: late or missed steps listed by the text report (all of them are in --json)
MAX_STEP_LINES = 30

#: ISA-18.2 guide shares per priority (1 highest): ~<1 %, ~5 %, ~15 %, ~80 %
PRIORITY_GUIDE_PCT: dict[int, float] = {1: 1.0, 2: 5.0, 3: 15.0, 4: 80.0}
PRIORITY_ZH = {1: "紧急", 2: "重要", 3: "一般", 4: "提示"}
PRIORITY_EN = {1: "critical", 2: "major", 3: "minor", 4: "notice"}
#: the plan's 30 minutes for a work order to be accepted (002 第十二条): acknowledging
#: the alarm is the dispatch room accepting it
ACK_P90_TARGET_S = 30 * 60.0


@dataclass(frozen=True, slots=True)
class Check:
    key: str
    label_zh: str
    label_en: str
    value: float | None
    unit: str
    target: str  # human text, e.g. "≤ 6 (≤ 12 manageable / 可管理)"
    passed: bool | None  # None: no data to judge
    shown: str = ""  # the figure as text where one number does not say it all


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if unit == "s":
        return _dur(v)
    if float(v).is_integer():
        return f"{int(v)}{unit}"
    return f"{v:.2f}{unit}"


def _dur(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def checks(r: KpiReport) -> list[Check]:
    """Every KPI with a target, judged."""
    p = r.priority_pct
    prio_ok = r.alarms_total == 0 or all(p[k] <= PRIORITY_GUIDE_PCT[k] for k in (1, 2, 3))
    steps = r.steps
    return [
        Check(
            "alarms_per_operator_hour",
            "每操作员每小时报警数",
            "alarms per operator-hour",
            r.alarms_per_operator_hour,
            "",
            "≤ 6（≤ 12 可管理 manageable）",
            r.alarms_per_operator_hour <= 6.0,
        ),
        Check(
            "peak_10min",
            "10 分钟内最多报警数",
            "most alarms in 10 minutes",
            float(r.peak_10min),
            "",
            "≤ 10",
            r.peak_10min <= 10,
        ),
        Check(
            "flood_time_pct",
            "报警泛滥时间占比",
            "time in alarm flood",
            r.flood_time_pct,
            " %",
            "< 1 %",
            r.flood_time_pct < 1.0,
        ),
        Check(
            "chattering_alarms",
            "振荡报警数",
            "chattering alarms",
            float(len(r.chattering)),
            "",
            "0",
            not r.chattering,
        ),
        Check(
            "stale_alarms",
            "陈旧报警数（持续 > 24 h）",
            "stale alarms (active > 24 h)",
            float(len(r.stale)),
            "",
            "< 5",
            len(r.stale) < 5,
        ),
        Check(
            "top_ten_share_pct",
            "最频繁 10 个报警占比",
            "share of the ten most frequent",
            r.top_share_pct,
            " %",
            "≤ 5 %",
            r.alarms_total == 0 or r.top_share_pct <= 5.0,
        ),
        Check(
            "priority_1_pct",
            "优先级分布",
            "priority distribution",
            p[1],
            " %",
            "P1 ≤ 1 %, P2 ≤ 5 %, P3 ≤ 15 %, P4 ≈ 80 %",
            prio_ok,
            ", ".join(f"P{k} {p[k]:.1f} %" for k in (1, 2, 3, 4)),
        ),
        Check(
            "ack_p90_s",
            "确认用时 90 分位",
            "time to acknowledge, p90",
            r.ack.p90_s,
            "s",
            "≤ 30 min",
            None if r.ack.p90_s is None else r.ack.p90_s <= ACK_P90_TARGET_S,
        ),
        Check(
            "steps_on_time_pct",
            "预案步骤按时完成率",
            "playbook steps on time",
            steps.on_time_pct,
            " %",
            "100 %",
            None if steps.on_time_pct is None else steps.late + steps.missed == 0,
        ),
    ]


def _mark(passed: bool | None) -> str:
    if passed is None:
        return "·  无数据 no data"
    return "✓ 达标 pass" if passed else "✗ 未达标 FAIL"


def render_text(r: KpiReport, site: str = "") -> str:
    """The report `stationd kpi` prints (and the daily report can include)."""
    out: list[str] = []
    title = "报警系统指标 Alarm-system KPIs (ISA-18.2)"
    out.append(f"{title}{'  ' + site if site else ''}")
    out.append(
        f"时段 Period: {_ts(r.since)} — {_ts(r.until)}  ({r.hours:.1f} h, "
        f"{r.operators} 个操作台 operator position(s))"
    )
    out.append(f"报警总数 Alarms announced: {r.alarms_total}")
    out.append("")
    for c in checks(r):
        out.append(
            f"{_pad(_mark(c.passed), 16)} {c.label_zh} {c.label_en}: "
            f"{c.shown or _fmt(c.value, c.unit)}   目标 target {c.target}"
        )
    out.append("")
    out.append(f"报警泛滥 Floods: {len(r.floods)}")
    for f in r.floods:
        end = "进行中 ongoing" if f.ongoing else _ts(f.end)
        out.append(
            f"  {_ts(f.start)} — {end}  {_dur(f.end - f.start)}, {f.alarms} 条报警 alarms, "
            f"10 分钟峰值 peak {f.peak_10min}"
        )
    out.append(
        f"振荡报警 Chattering alarms (≥ 3 次/分钟 activations per minute): {len(r.chattering)}"
    )
    for ch in r.chattering:
        out.append(
            f"  {ch.alarm_id}: {ch.activations} 次 activations, 1 分钟最多 max {ch.max_in_window},"
            f" 首次 first {_ts(ch.first_burst)}"
        )
    out.append(f"陈旧报警 Stale alarms (> 24 h): {len(r.stale)}")
    for st in r.stale:
        since = _ts(st.active_since) if st.since_known else f"≤ {_ts(st.active_since)}"
        now = "，仍在报警 still active" if st.still_active else ""
        out.append(f"  {st.alarm_id}: 自 since {since}, {st.active_h:.1f} h{now}")
    out.append(f"最频繁报警 Most frequent alarms (占 share {r.top_share_pct:.1f} %):")
    chatter = {c.alarm_id for c in r.chattering}
    for i, a in enumerate(r.top, 1):
        flag = "  [振荡 chattering]" if a.alarm_id in chatter else ""
        out.append(f"  {i:>2}. {a.alarm_id}: {a.count} ({a.share_pct:.1f} %){flag}")
    out.append("优先级分布 Priority distribution (ISA-18.2 ≈ P1 <1 %, P2 5 %, P3 15 %, P4 80 %):")
    for k in (1, 2, 3, 4):
        out.append(
            f"  P{k} {PRIORITY_ZH[k]} {PRIORITY_EN[k]}: {r.priority_counts.get(k, 0)}"
            f" ({r.priority_pct.get(k, 0.0):.1f} %)"
        )
    a = r.ack
    out.append(
        f"确认用时 Time to acknowledge: 中位 median {_fmt(a.median_s, 's')}, "
        f"90 分位 p90 {_fmt(a.p90_s, 's')}; 已确认 acked {a.acked}, 未确认 not acked {a.unacked}"
    )
    s = r.steps
    out.append(
        f"预案步骤 Playbook steps with a deadline: 按时 on time {s.on_time}, 超时完成 late "
        f"{s.late}, 未完成 missed {s.missed}, 免除 waived {s.waived}, 未到期 not yet due {s.open}"
    )
    bad = [o for o in s.outcomes if o.outcome in ("late", "missed")]
    for o in bad[:MAX_STEP_LINES]:
        if o.at is None:
            when = "未回报 not reported"
        elif o.status == "done":
            when = f"完成 done {_ts(o.at)}"
        else:
            when = f"跳过 skipped {_ts(o.at)}"
        word = "超时 late" if o.outcome == "late" else "未完成 missed"
        out.append(f"  {word}: {o.alarm_id} {o.step}  期限 due {_ts(o.due)}  {when}")
    if len(bad) > MAX_STEP_LINES:
        out.append(
            f"  … 另 {len(bad) - MAX_STEP_LINES} 条 and {len(bad) - MAX_STEP_LINES} more (--json)"
        )
    return "\n".join(out) + "\n"


def _pad(text: str, width: int) -> str:
    """Left-justify by display width: a Chinese character takes two terminal columns."""
    cols = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(0, width - cols)


def report_json(r: KpiReport, site: str = "") -> dict[str, Any]:
    """The `--json` document (schema alarms.kpi/1)."""
    d = asdict(r)
    d["priority_counts"] = {str(k): v for k, v in r.priority_counts.items()}
    d["priority_pct"] = {str(k): v for k, v in r.priority_pct.items()}
    return {
        "schema": SCHEMA,
        "site": site,
        "checks": [asdict(c) for c in checks(r)],
        **d,
    }


#: every field `kpi_fields()` may write to the `daemon` measurement (series `daemon_<name>`)
KPI_FIELD_NAMES: tuple[str, ...] = (
    "alarms_total",
    "alarms_per_operator_hour",
    "alarm_peak_10min",
    "alarm_floods",
    "alarm_flood_time_pct",
    "chattering_alarms",
    "stale_alarms",
    "top_ten_share_pct",
    "ack_unacked",
    "steps_on_time",
    "steps_late",
    "steps_missed",
    "alarm_priority_1_pct",
    "alarm_priority_2_pct",
    "alarm_priority_3_pct",
    "alarm_priority_4_pct",
    "ack_median_s",
    "ack_p90_s",
    "steps_on_time_pct",
    "kpi_window_h",
)


def report_fields(r: KpiReport) -> dict[str, float]:
    """Numbers for the historian's `daemon` measurement (series `daemon_<name>`).

    Figures without data (no acknowledgement yet, no step due) are left out rather than
    written as 0, so a dashboard shows a gap, not a false perfect score."""
    out: dict[str, float] = {
        "alarms_total": float(r.alarms_total),
        "alarms_per_operator_hour": r.alarms_per_operator_hour,
        "alarm_peak_10min": float(r.peak_10min),
        "alarm_floods": float(len(r.floods)),
        "alarm_flood_time_pct": r.flood_time_pct,
        "chattering_alarms": float(len(r.chattering)),
        "stale_alarms": float(len(r.stale)),
        "top_ten_share_pct": r.top_share_pct,
        "ack_unacked": float(r.ack.unacked),
        "steps_on_time": float(r.steps.on_time),
        "steps_late": float(r.steps.late),
        "steps_missed": float(r.steps.missed),
    }
    for k in (1, 2, 3, 4):
        out[f"alarm_priority_{k}_pct"] = r.priority_pct.get(k, 0.0)
    if r.ack.median_s is not None and r.ack.p90_s is not None:
        out["ack_median_s"] = r.ack.median_s
        out["ack_p90_s"] = r.ack.p90_s
    if r.steps.on_time_pct is not None:
        out["steps_on_time_pct"] = r.steps.on_time_pct
    return out
