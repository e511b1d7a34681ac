"""The daily report as one self-contained HTML page with inline SVG charts.

The dispatch machines are offline, so nothing is fetched: no script, no CDN, no web font;
each chart is an `<svg>` drawn here (hourly lines per station, the supply-status grid per
estate, make-up loss rate against the allowance), and the tables are plain HTML. Every
text goes through html.escape; Chinese names are written as they are (UTF-8).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape
from pathlib import Path

import numpy as np

from stationd.report.daily import DailyReport
from stationd.report.layout import DEFINITIONS, Table, atomic_path
from stationd.report.render_csv import cell

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
)
FONT = "'Noto Sans CJK SC','Microsoft YaHei','PingFang SC',sans-serif"
W, H = 760, 300  # chart size
ML, MR, MT, MB = 60, 170, 34, 40  # margins: the legend sits in the right one


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 10))
    return ticks


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _legend(names: Sequence[str]) -> list[str]:
    out = []
    for i, name in enumerate(names):
        y = MT + 8 + i * 18
        x = W - MR + 14
        color = PALETTE[i % len(PALETTE)]
        out.append(
            f'<rect x="{x}" y="{y - 8}" width="12" height="10" fill="{color}"/>'
            f'<text x="{x + 18}" y="{y + 1}" font-size="12">{escape(name)}</text>'
        )
    return out


def _frame(title: str, unit: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" role="img" font-family="{FONT}">'
        f"<title>{escape(title)}</title>"
        f'<text x="{ML}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>'
        f'<text x="{ML - 8}" y="{MT - 6}" font-size="11" text-anchor="end">{escape(unit)}</text>'
        + "".join(body)
        + "</svg>"
    )


def line_chart(
    title: str, unit: str, x_labels: Sequence[str], names: Sequence[str], values: np.ndarray
) -> str:
    """One line per row of `values` [series, hours]; NaN breaks the line."""
    pw, ph = W - ML - MR, H - MT - MB
    n = max(1, values.shape[1])
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    ticks = nice_ticks(lo, hi)
    y0, y1 = ticks[0], ticks[-1]

    def px(h: float) -> float:
        return ML + (h + 0.5) * pw / n

    def py(v: float) -> float:
        return MT + ph - (v - y0) / (y1 - y0) * ph

    body = [f'<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for t in ticks:
        y = py(t)
        body.append(
            f'<line x1="{ML}" x2="{ML + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
            f'<text x="{ML - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{_fmt(t)}</text>'
        )
    step = max(1, math.ceil(n / 12))
    for h in range(0, n, step):
        body.append(
            f'<text x="{px(h):.1f}" y="{MT + ph + 16}" font-size="11" text-anchor="middle">'
            f"{escape(x_labels[h][-5:])}</text>"
        )
    for i, row in enumerate(values):
        d: list[str] = []
        pen_up = True
        for h, v in enumerate(row.tolist()):
            if not math.isfinite(v):
                pen_up = True
                continue
            d.append(f"{'M' if pen_up else 'L'}{px(h):.1f},{py(v):.1f}")
            pen_up = False
        color = PALETTE[i % len(PALETTE)]
        if d:
            body.append(
                f'<path d="{" ".join(d)}" fill="none" stroke="{color}" stroke-width="1.8">'
                f"<title>{escape(names[i])}</title></path>"
            )
            if len(d) == 1:  # a single hour: a dot, or it would not show
                x, y = d[0][1:].split(",")
                body.append(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{color}"/>')
    body += _legend(names)
    return _frame(title, unit, body)


def status_grid(
    title: str, x_labels: Sequence[str], names: Sequence[str], status: np.ndarray
) -> str:
    """Rows of coloured cells: green supplied, red not supplied, grey no data."""
    colors = {1: "#4caf50", 0: "#e53935", -1: "#bdbdbd"}
    n = max(1, status.shape[1])
    rows = max(1, status.shape[0])
    left = 200
    pw = W - left - 20
    cw = pw / n
    ch = 20
    height = MT + rows * (ch + 4) + 50
    body = []
    for i, name in enumerate(names):
        y = MT + i * (ch + 4)
        body.append(
            f'<text x="{left - 6}" y="{y + 14}" font-size="12" text-anchor="end">{escape(name)}</text>'
        )
        for h, s in enumerate(status[i].tolist()):
            body.append(
                f'<rect x="{left + h * cw:.1f}" y="{y}" width="{max(cw - 1, 1):.1f}" height="{ch}" '
                f'fill="{colors[int(s)]}"><title>{escape(name)} {escape(x_labels[h])}</title></rect>'
            )
    step = max(1, math.ceil(n / 12))
    yl = MT + rows * (ch + 4) + 14
    for h in range(0, n, step):
        body.append(
            f'<text x="{left + (h + 0.5) * cw:.1f}" y="{yl}" font-size="11" text-anchor="middle">'
            f"{escape(x_labels[h][-5:])}</text>"
        )
    key = [("供热 supplied", 1), ("停供 not supplied", 0), ("无数据 no data", -1)]
    for j, (label, s) in enumerate(key):
        x = left + j * 170
        body.append(
            f'<rect x="{x}" y="{yl + 12}" width="12" height="10" fill="{colors[s]}"/>'
            f'<text x="{x + 18}" y="{yl + 21}" font-size="12">{escape(label)}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{W}" height="{height}" '
        f'viewBox="0 0 {W} {height}" role="img" font-family="{FONT}">'
        f"<title>{escape(title)}</title>"
        f'<text x="{ML}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>'
        + "".join(body)
        + "</svg>"
    )


def bar_chart(
    title: str,
    unit: str,
    names: Sequence[str],
    values: Sequence[float],
    limits: Sequence[float],
    *,
    below_is_bad: bool = False,
    limit_label: str = "限值 allowance",
) -> str:
    """One bar per station (or estate) with its limit marked (red bar: above the limit, or
    below it where `below_is_bad`, as for a share at standard)."""
    pw, ph = W - ML - MR, H - MT - MB - 30
    vals = [v if math.isfinite(v) else 0.0 for v in values]
    ticks = nice_ticks(0.0, max([*vals, *limits, 1e-9]))
    top = ticks[-1]
    n = max(1, len(names))
    bw = pw / n

    def py(v: float) -> float:
        return MT + ph - v / top * ph

    body = [f'<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for t in ticks:
        body.append(
            f'<line x1="{ML}" x2="{ML + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#e5e5e5"/>'
            f'<text x="{ML - 6}" y="{py(t) + 4:.1f}" font-size="11" text-anchor="end">{_fmt(t)}</text>'
        )
    for i, (name, v, lim) in enumerate(zip(names, values, limits, strict=True)):
        x = ML + i * bw
        ok = math.isfinite(v)
        bad = (v < lim) if below_is_bad else (v > lim)
        color = "#e53935" if ok and bad else "#1f77b4"
        if ok:
            body.append(
                f'<rect x="{x + bw * 0.2:.1f}" y="{py(v):.1f}" width="{bw * 0.6:.1f}" '
                f'height="{MT + ph - py(v):.1f}" fill="{color}"><title>{escape(name)}: '
                f"{v:.3f} {escape(unit)}</title></rect>"
            )
        body.append(
            f'<line x1="{x + bw * 0.1:.1f}" x2="{x + bw * 0.9:.1f}" y1="{py(lim):.1f}" '
            f'y2="{py(lim):.1f}" stroke="#000" stroke-dasharray="4 2"/>'
            # slanted: seven Chinese characters are wider than a bar of an 8-station fleet
            f'<text x="{x + bw / 2:.1f}" y="{MT + ph + 14}" font-size="11" text-anchor="end" '
            f'transform="rotate(-30 {x + bw / 2:.1f} {MT + ph + 14})">{escape(name)}</text>'
        )
    body.append(
        f'<text x="{W - MR + 14}" y="{MT + 10}" font-size="12">- - - {escape(limit_label)}</text>'
    )
    return _frame(title, unit, body)


def html_table(table: Table) -> str:
    head = "".join(
        f"<th>{escape(c.zh)}<br><small>{escape(c.en)}</small></th>" for c in table.columns
    )
    body = []
    for row in table.rows:
        tds = []
        for v, c in zip(row, table.columns, strict=True):
            cls = ' class="num"' if isinstance(v, int | float) else ""
            tds.append(f"<td{cls}>{escape(cell(v, c))}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (
        f"<h2>{escape(table.title_zh)} <small>{escape(table.title_en)}</small></h2>"
        f'<table class="{escape(table.key)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


_CHARTS = (
    ("secondary_supply_temp", "二次供水温度 Secondary supply temperature", "°C"),
    ("secondary_return_temp", "二次回水温度 Secondary return temperature", "°C"),
    ("secondary_supply_pressure", "二次供水压力 Secondary supply pressure", "MPa"),
    ("secondary_flow", "二次循环流量 Secondary circulating flow", "m³/h"),
    ("primary_supply_temp", "一次供水温度 Primary supply temperature", "°C"),
    ("primary_supply_pressure", "一次供水压力 Primary supply pressure", "MPa"),
    ("primary_flow", "一次流量 Primary flow", "m³/h"),
    ("outdoor_temp", "室外温度 Outdoor temperature", "°C"),
)

_CSS = """
body{font-family:'Noto Sans CJK SC','Microsoft YaHei','PingFang SC',sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 24px;font-size:12px}
th,td{border:1px solid #ccc;padding:3px 6px}th{background:#ddebf7;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.charts svg{display:block;margin:12px 0;background:#fff}
.defs li{margin:4px 0}small{color:#555;font-weight:normal}
"""


def render(report: DailyReport) -> str:
    hr = report.hourly
    labels = report.hour_labels()
    names = [st.name for st in report.stations]
    tz = report.period.start.tzinfo
    charts = [
        status_grid(
            "小区供热状态（逐时） Estates supplied, by hour",
            labels,
            ["、".join(st.estates) for st in report.stations],
            hr.supplied,
        )
    ]
    for name, title, unit in _CHARTS:
        charts.append(line_chart(title, unit, labels, names, hr.mean(name)))
    charts.append(
        line_chart("逐时补水量 Make-up volume per hour", "m³", labels, names, hr.makeup_m3)
    )
    charts.append(line_chart("逐时耗热量 Heat per hour", "GJ", labels, names, hr.heat_gj))
    charts.append(
        bar_chart(
            "补水率与限值 Loss rate against the allowance",
            "%",
            names,
            (hr.loss_rate_total * 100).tolist(),
            (hr.allowance * 100).tolist(),
        )
    )
    tables = report.tables()
    indoor_chart: list[str] = []
    if report.indoor is not None and report.indoor.estates:
        ind = report.indoor
        indoor_chart.append(
            bar_chart(
                "室温达标率 Share of hours at the indoor standard",
                "%",
                list(ind.estates),
                (ind.share_at_standard * 100).tolist(),
                [100.0] * len(ind.estates),
                below_is_bad=True,
                limit_label="全时达标 all hours",
            )
        )
    kpi_note = ""
    if report.kpi is None:
        kpi_note = "<p>未找到调度日志，无报警系统指标 / no dispatch log, no alarm-system KPIs.</p>"
    incidents_note = ""
    if not report.incidents.found:
        incidents_note = (
            "<p>未找到报警记录（调度日志） / no alarm records found in the state dir.</p>"
        )
    elif not report.incidents.items:
        incidents_note = "<p>本时段无报警事件 / no alarms in this period.</p>"
    defs = "".join(
        f"<li>{escape(zh)}<br><small>{escape(en)}</small></li>" for zh, en in DEFINITIONS
    )
    generated = datetime.fromtimestamp(report.generated_at, tz)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{escape(report.title_zh)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(report.title_zh)}<br><small>{escape(report.title_en)}</small></h1>",
        f"<p>报表时段 Period: {escape(report.period.label_zh)} / {escape(report.period.label_en)}<br>",
        f"数据来源 Source: {escape(report.source)}<br>",
        f"生成时间 Generated: {generated:%Y-%m-%d %H:%M:%S}</p>",
        html_table(tables[0]),
        html_table(tables[1]),
        html_table(tables[4]),
        f'<div class="charts">{"".join(indoor_chart)}</div>',
        '<h2>图表 <small>Charts</small></h2><div class="charts">',
        *charts,
        "</div>",
        html_table(tables[3]),
        incidents_note,
        html_table(tables[5]),
        kpi_note,
        html_table(tables[6]),
        html_table(tables[2]),
        f'<h2>说明 <small>Definitions</small></h2><ul class="defs">{defs}</ul>',
        "</body></html>",
    ]
    return "\n".join(parts)


def write_html(report: DailyReport, path: Path) -> Path:
    tmp = atomic_path(path)
    tmp.write_text(render(report), encoding="utf-8")
    tmp.replace(path)
    return path
