"""indoor_below_standard (per estate) and supply_below_curve / supply_above_curve (per station).

Indoor: an estate's representative rooms below the 20 °C standard for the sustain time is
a repair work order; below the 18 °C floor it is more severe, and a whole escalation time
below is one step worse again (plan 001 方案1). The frame carries canonical signals only, so
each station's `indoor_temp` is one representative room of its `indoor_estate` and several
stations may share an estate; the estate's value is the median of its rooms, so a single
cold room (a window left open) among warm ones is not a cold estate. A site with an agreed
night set-back lowers the standard outside its day hours. Curve: a station's secondary supply
temperature off its own weather-compensated curve by more than the deviation, after the
delay (the controller needs time to follow an outdoor swing). Both judge smoothed values:
a door opened next to a room sensor is not a cold estate.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from stationd import signals
from stationd.detect.kernels import Ewma, Held, Sustain, Tick, fin, r3
from stationd.detect.static import FleetStatic
from stationd.detect.thresholds import Thresholds
from stationd.findings import Finding

_IN = signals.INDEX["indoor_temp"]
_TSS = signals.INDEX["secondary_supply_temp"]
_CIRC = signals.INDEX["circ_pump_running"]


def is_day_hour(th: Thresholds, hour: np.ndarray | int) -> np.ndarray:
    """Local hour(s) 0-23 inside the day window [start, end) (a window may wrap midnight)."""
    h = np.asarray(hour)
    a, b = th.indoor_day_start_h, th.indoor_day_end_h
    if a <= b:
        return (h >= a) & (h < b)
    return (h >= a) | (h < b)


def indoor_standard_at(th: Thresholds, hour: np.ndarray | int) -> np.ndarray:
    """The indoor standard (°C) in force at local hour(s): the plan's standard by day, less
    the agreed night set-back outside the day window. Shared with the derived field and the
    daily report so all three judge one standard."""
    return np.where(
        is_day_hour(th, hour),
        th.indoor_standard_c,
        th.indoor_standard_c - th.indoor_night_setback_c,
    )


def local_hour(t: float, tz: ZoneInfo) -> int:
    return datetime.fromtimestamp(t, tz).hour


def group_median(
    idx: np.ndarray, values: np.ndarray, mask: np.ndarray, n_groups: int
) -> np.ndarray:
    """Median of values[mask] per group idx[mask] (NaN for an empty group), without a loop:
    sort by (group, value), then pick the middle one or two of each group's run."""
    g, v = idx[mask], values[mask]
    order = np.lexsort((v, g))
    g, v = g[order], v[order]
    cnt = np.bincount(g, minlength=n_groups)
    start = np.cumsum(cnt) - cnt
    out = np.full(n_groups, np.nan)
    has = cnt > 0
    lo = start[has] + (cnt[has] - 1) // 2
    hi = start[has] + cnt[has] // 2
    out[has] = (v[lo] + v[hi]) / 2.0
    return out


class Indoor:
    def __init__(self, static: FleetStatic) -> None:
        self.static = static
        self.avg = Ewma((static.n,))
        n_e = len(static.estate_names)
        self.timer = Sustain(n_e)
        self.held = Held(n_e)
        self.has_rooms = (
            np.bincount(static.indoor_estate_idx[static.indoor_estate_idx >= 0], minlength=n_e) > 0
        )

    def step(self, tick: Tick) -> list[Finding]:
        st, site, t = self.static, self.static.site, tick.t
        n_e = len(st.estate_names)
        if n_e == 0 or not self.has_rooms.any():
            return []
        temp = self.avg.update(tick.x[:, _IN], tick.dt, st.th.smoothing_s)
        e = st.indoor_estate_idx
        ok = (e >= 0) & ~np.isnan(tick.x[:, _IN]) & (self.avg.weight >= 0.5)
        cnt = np.bincount(e[ok], minlength=n_e)
        arrived = np.bincount(e[(e >= 0) & tick.present(_IN)], minlength=n_e)
        rep = group_median(e, temp, ok, n_e)
        standard = float(indoor_standard_at(site, local_hour(t, st.timezone)))
        with np.errstate(invalid="ignore"):
            cond = (cnt > 0) & (rep < standard)
        # at night the rooms are judged against the set-back standard, so a room resting at
        # the set-back level is not "below" and its estate's timer does not run
        active = self.timer.update(t, cond, arrived > 0, site.indoor_sustain_s)
        rep = self.held.update(rep)
        out: list[Finding] = []
        for j in np.flatnonzero(active):
            members = np.flatnonzero(ok & (e == j))
            below_floor = rep[j] < site.indoor_floor_c
            lasting = t - self.timer.onset[j] >= site.indoor_escalate_s
            severity = (
                ("major", "critical")[int(lasting)]
                if below_floor
                else ("minor", "major")[int(lasting)]
            )
            name = st.estate_names[j]
            limit = site.indoor_floor_c if below_floor else standard
            hours = (t - self.timer.onset[j]) / 3600.0
            out.append(
                Finding(
                    kind="indoor_below_standard",
                    subject=name,
                    scope="estate",
                    severity=severity,
                    onset=float(self.timer.onset[j]),
                    value=fin(rep[j]),
                    message_zh=(
                        f"小区 {name} 室温 {rep[j]:.1f} °C，低于{'最低' if below_floor else ''}标准 {limit:.0f} °C "
                        f"已 {hours:.1f} 小时；派维修工单（2小时到场）"
                    ),
                    message_en=(
                        f"estate {name} indoor {rep[j]:.1f} °C below the {'floor' if below_floor else 'standard'} "
                        f"of {limit:.0f} °C for {hours:.1f} h; repair work order (2 h on site)"
                    ),
                    evidence={
                        "indoor_c": r3(rep[j]),
                        "standard_c": r3(standard),
                        "floor_c": r3(site.indoor_floor_c),
                        "sensors": int(cnt[j]),
                        "hours_below": r3(hours),
                    },
                    stations=tuple(st.ids[i] for i in members),
                )
            )
        return out


class SupplyCurve:
    def __init__(self, static: FleetStatic) -> None:
        self.static = static
        self.avg = Ewma((static.n,))
        self.below = Sustain(static.n)
        self.above = Sustain(static.n)
        self.deviation = np.full(static.n, np.nan)  # for the historian's derived measurement
        self.held = Held((static.n, 2))  # [smoothed supply, deviation] as last measured

    def step(self, tick: Tick, outdoor: np.ndarray) -> list[Finding]:
        st, th, t = self.static, self.static.th, tick.t
        tss = self.avg.update(tick.x[:, _TSS], tick.dt, th.smoothing_s)
        target = st.secondary_curve.at(outdoor)
        dev = tss - target
        self.deviation = dev
        running = tick.x[:, _CIRC] == 1.0
        known = tick.present(_TSS) & ~np.isnan(outdoor)
        valid = ~np.isnan(tick.x[:, _TSS]) & (self.avg.weight >= 0.5) & running
        with np.errstate(invalid="ignore"):
            lo = valid & (dev < -th.curve_deviation_c)
            hi = valid & (dev > th.curve_deviation_c)
        tss, dev = self.held.update(np.stack([tss, dev], axis=1)).T
        out: list[Finding] = []
        for kind, timer, cond in (
            ("supply_below_curve", self.below, lo),
            ("supply_above_curve", self.above, hi),
        ):
            active = timer.update(t, cond, known, th.curve_delay_s)
            for i in np.flatnonzero(active):
                low = kind == "supply_below_curve"
                out.append(
                    Finding(
                        kind=kind,
                        subject=st.ids[i],
                        scope="station",
                        severity="minor" if low else "notice",
                        onset=float(timer.onset[i]),
                        value=fin(dev[i]),
                        message_zh=(
                            f"{st.label(i)} 二次供水温度 {tss[i]:.1f} °C {'低于' if low else '高于'}供热曲线 "
                            f"{target[i]:.1f} °C（偏差 {dev[i]:+.1f} °C）"
                        ),
                        message_en=(
                            f"{st.ids[i]} secondary supply {tss[i]:.1f} °C {'below' if low else 'above'} its curve "
                            f"{target[i]:.1f} °C ({dev[i]:+.1f} °C)"
                        ),
                        evidence={
                            "supply_c": r3(tss[i]),
                            "curve_c": r3(target[i]),
                            "deviation_c": r3(dev[i]),
                            "outdoor_c": r3(outdoor[i]),
                        },
                        stations=(st.ids[i],),
                    )
                )
        return out
