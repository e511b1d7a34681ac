"""A terminal view of the fleet for the demo: one row per station, active findings below.

Chinese names are padded by display width (East Asian wide characters take two columns),
so the table stays aligned in a terminal.
"""

from __future__ import annotations

import math
import time
import unicodedata

import numpy as np

from stationd import signals
from stationd.findings import Finding
from stationd.poller import LinkState, Poller

COLS = (
    ("secondary_supply_temp", "二供温°C", "{:5.1f}"),
    ("secondary_return_temp", "二回温°C", "{:5.1f}"),
    ("secondary_supply_pressure", "二供压MPa", "{:5.3f}"),
    ("secondary_flow", "循环m³/h", "{:6.1f}"),
    ("makeup_flow", "补水m³/h", "{:5.2f}"),
    ("primary_supply_temp", "一供温°C", "{:5.1f}"),
    ("outdoor_temp", "室外°C", "{:5.1f}"),
)
LINK = {
    LinkState.CONNECTED: "在线 ok",
    LinkState.CONNECTING: "连接中",
    LinkState.BACKOFF: "重连 retry",
    LinkState.DISCONNECTED: "断开 down",
    LinkState.FAILED: "故障 fail",
}


def width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


def pad(s: str, w: int) -> str:
    return s + " " * max(0, w - width(s))


def render(
    poller: Poller, findings: list[Finding], tick: float, loss_rate: np.ndarray | None = None
) -> str:
    """The table; `loss_rate` is the detector's rolling make-up / circulating ratio (the
    instantaneous one jumps whenever an intermittent make-up pump starts)."""
    frame = poller.frame
    latest = frame.latest()
    name_w = max(width(s.station.name) for s in poller.supervisors) + 1
    head = (
        pad("站点 station", name_w + 7)
        + pad("链路 link", 11)
        + " ".join(pad(label, max(9, width(label))) for _, label, _ in COLS)
        + " 补水率(滚动)"
    )
    lines = [
        f"stationd demo — {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(tick))}  "
        f"({len(poller.supervisors)} stations, tick {poller.cfg.defaults.interval:g}s)",
        head,
        "-" * width(head),
    ]
    by_station: dict[str, list[str]] = {}
    for f in findings:
        for sid in f.stations or (f.subject,):
            by_station.setdefault(sid, []).append(f.kind)
    for sup in poller.supervisors:
        row = latest[sup.index]
        cells = []
        for name, label, fmt in COLS:
            v = float(row[signals.INDEX[name]])
            text = "—" if math.isnan(v) else fmt.format(v)
            cells.append(pad(text, max(9, width(label))))
        r = float(loss_rate[sup.index]) if loss_rate is not None else float("nan")
        rate = "  —  " if math.isnan(r) else f"{100 * r:5.2f}%"
        flag = " ⚠ " + ",".join(by_station[sup.station.id]) if sup.station.id in by_station else ""
        lines.append(
            pad(sup.station.id + " " + sup.station.name, name_w + 7)
            + pad(LINK[sup.state], 11)
            + " ".join(cells)
            + " "
            + rate
            + flag
        )
    lines.append("")
    if findings:
        lines.append(f"当前告警 active findings ({len(findings)}):")
        for f in sorted(findings, key=lambda f: -f.onset)[:12]:
            lines.append(f"  [{f.severity}] {f.subject}/{f.kind}: {f.message_zh} | {f.message_en}")
    else:
        lines.append("当前无告警 — no active findings (允许补水率 allowance 0.5 %)")
    return "\n".join(lines)
