"""makeup_over_allowance and secondary_leak: water lost from the secondary loop.

The plan allows make-up water of 0.5 % of the circulating flow (000 方案2 三.1: 1,520 m³/h
circulating → 7.6 m³/h). Three views, each robust to what field data does:
- rolling loss rate: EWMA(make-up flow) / EWMA(circulating flow) with the window as time
  constant — a ratio of averages, so an intermittent make-up pump or a circulation-pump
  changeover (flow dips for a few ticks) does not spike it;
- the day's volume: make-up from the cumulative meter (`makeup_total`: increments only, a
  reset or a glitch jump is dropped, a data gap is bridged because the meter kept counting)
  against 0.5 % of the day's circulated volume (the flow integrated, held across gaps);
- the make-up tank level falling while the make-up pump runs.
Far above the allowance (leak_factor times), or the tank falling, is a secondary_leak.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from stationd import signals
from stationd.detect.kernels import Ewma, Held, PeakRing, Sustain, Tick, fin, r3
from stationd.detect.static import FleetStatic
from stationd.findings import Finding

_MK = signals.INDEX["makeup_flow"]
_Q = signals.INDEX["secondary_flow"]
_TOTAL = signals.INDEX["makeup_total"]
_TANK = signals.INDEX["makeup_tank_level"]
_MPUMP = signals.INDEX["makeup_pump_running"]
# above this rate (m³/h) a meter increment is a glitch, not water: twice the signal's range
_MAX_MAKEUP_M3_H = 2.0 * signals.BY_NAME["makeup_flow"].hi
# the rolling rate is judged once the average covers this share of its time constant
_WARM = 0.5
# an allowance alarm clears only below this share of the threshold (no chattering)
_HYST = 0.9


class Makeup:
    def __init__(self, static: FleetStatic) -> None:
        n = static.n
        self.static = static
        th = static.th
        self.avg = Ewma((n, 2))  # [make-up flow, circulating flow]
        self.fast = Ewma((n, 2))  # the same over leak_window_s
        # a loop circulating under a tenth of its allocation (pumps off) has no meaningful rate
        self.min_flow = 0.1 * th.flow_per_10k_m2_t_h * static.heated_area_m2 / 1e4
        self.over = np.zeros(n, dtype=bool)
        self.over_onset = np.full(n, np.nan)
        self.leak = np.zeros(n, dtype=bool)
        self.leak_onset = np.full(n, np.nan)
        self.tank = PeakRing(n, 1, th.tank_window_s)
        # the day's volumes
        self.day = -1
        self.last_total = np.full(n, np.nan)
        self.last_total_t = np.full(n, np.nan)
        self.last_flow = np.full(n, np.nan)
        self.day_makeup = np.zeros(n)
        self.day_circ = np.zeros(n)
        self.day_circ_s = np.zeros(n)
        self.rate = np.full(n, np.nan)  # rolling loss rate (fraction), for the historian
        self.circulating = np.zeros(n, dtype=bool)
        self.seen = np.zeros(n, dtype=bool)
        self.settled_at = np.full(n, -np.inf)
        self.held_rates = Held((n, 2))
        self.held = self.held_rates.v
        self.over_off = Sustain(n)  # how long an active finding has been back under its limit
        self.leak_off = Sustain(n)

    def _local_day(self, t: float) -> int:
        off = datetime.fromtimestamp(t, UTC).astimezone(self.static.timezone).utcoffset()
        return int((t + (off.total_seconds() if off else 0.0)) // 86400)

    def _day_volumes(self, tick: Tick) -> None:
        t, x = tick.t, tick.x
        day = self._local_day(t)
        if day != self.day:
            self.day = day
            self.day_makeup[:] = 0.0
            self.day_circ[:] = 0.0
            self.day_circ_s[:] = 0.0
        total = x[:, _TOTAL]
        good = ~np.isnan(total)
        delta = total - self.last_total
        elapsed_h = (t - self.last_total_t) / 3600.0
        with np.errstate(invalid="ignore"):
            plausible = good & (delta >= 0) & (delta <= _MAX_MAKEUP_M3_H * elapsed_h + 0.01)
        self.day_makeup[plausible] += delta[plausible]
        self.last_total[good] = total[good]
        self.last_total_t[good] = t
        q = x[:, _Q]
        self.last_flow = np.where(np.isnan(q), self.last_flow, q)
        if tick.dt > 0:
            with np.errstate(invalid="ignore"):
                running = self.last_flow > self.min_flow
            self.day_circ[running] += self.last_flow[running] * (tick.dt / 3600.0)
            self.day_circ_s[running] += tick.dt

    def step(self, tick: Tick) -> list[Finding]:
        st, th, t, x = self.static, self.static.th, tick.t, tick.x
        # Averages run only while the loop circulates: a stopped loop's zero flow would drag
        # the denominator down and make the refill after a restart look like a leak.
        with np.errstate(invalid="ignore"):
            circulating = x[:, _Q] > self.min_flow
        # (the first sample after start-up is not a restart: nothing is known before it)
        restarted = circulating & ~self.circulating & self.seen & tick.heard
        self.settled_at[restarted] = (t + th.makeup_window_s)[restarted]
        self.circulating = np.where(tick.heard, circulating, self.circulating)
        self.seen |= tick.heard
        # after a restart the make-up pump refills what the stopped loop lost: expected, so
        # the averages start afresh once the refill is over
        settled = ~(t < self.settled_at)
        if restarted.any():
            self.avg.reset(restarted)
            self.fast.reset(restarted)
        flows = np.where((circulating & settled)[:, None], x[:, [_MK, _Q]], np.nan)
        avg = self.avg.update(flows, tick.dt, th.makeup_window_s)
        fast = self.fast.update(flows, tick.dt, th.leak_window_s)
        mk, q = avg[:, 0], avg[:, 1]
        allow = th.makeup_allowance_ratio
        # a masked meter reading ends the judgement (a gap only pauses it)
        masked = (tick.present(_MK) & np.isnan(x[:, _MK])) | (tick.present(_Q) & np.isnan(x[:, _Q]))
        with np.errstate(invalid="ignore", divide="ignore"):
            judged = (
                (self.avg.weight[:, 1] >= _WARM)
                & (q > self.min_flow)
                & ~np.isnan(mk)
                & ~masked
                & settled
            )
            rate = np.where(judged, mk / q, np.nan)
            fast_judged = (
                (self.fast.weight[:, 1] >= _WARM) & (fast[:, 1] > self.min_flow) & ~masked & settled
            )
            fast_rate = np.where(fast_judged, fast[:, 0] / fast[:, 1], np.nan)
        self.rate = rate
        self._day_volumes(tick)
        with np.errstate(invalid="ignore", divide="ignore"):
            day_judged = self.day_circ_s >= th.makeup_day_min_s
            day_rate = np.where(day_judged, self.day_makeup / self.day_circ, np.nan)
            day_over = day_rate > allow
            rate_over = rate > allow
            rate_under = rate < _HYST * allow

        over_now = rate_over | day_over
        start = over_now & ~self.over
        self.over_onset[start] = t
        self.over |= start
        with np.errstate(invalid="ignore"):
            fine = self.over & (rate_under | np.isnan(rate)) & ~day_over
        # clear only once back under the allowance for a whole window: no raise/clear/raise
        clear = self.over_off.update(t, fine, tick.heard, th.makeup_window_s)
        self.over[clear] = False
        self.over_onset[clear] = np.nan
        self.over_off.reset(clear | ~self.over)

        # The tank level fell while the make-up pump runs. It measures the make-up volume, so
        # it is the leak evidence where no make-up flow meter reports; where one does, the
        # meter judges (a tank refilled by its float valve saws up and down in normal duty).
        level = x[:, [_TANK]]
        self.tank.update(t, level)
        with np.errstate(invalid="ignore"):
            tank_fall = self.tank.peak(t)[:, 0] - level[:, 0]
            tank_leak = (tank_fall > th.tank_drop_m) & (x[:, _MPUMP] == 1.0) & ~tick.present(_MK)
            leak_now = (fast_rate > th.leak_factor * allow) | tank_leak
            leak_gone = (fast_rate < _HYST * th.leak_factor * allow) | np.isnan(fast_rate)
        start = leak_now & ~self.leak
        self.leak_onset[start] = t
        self.leak |= start
        clear = self.leak_off.update(
            t, self.leak & leak_gone & ~tank_leak, tick.heard, th.makeup_window_s
        )
        self.leak[clear] = False
        self.leak_onset[clear] = np.nan
        self.leak_off.reset(clear | ~self.leak)

        # headline values as last measured: [rolling or day rate, short-window or rolling rate]
        held = self.held_rates.update(
            np.stack(
                [
                    np.where(np.isfinite(rate), rate, day_rate),
                    np.where(np.isfinite(fast_rate), fast_rate, rate),
                ],
                axis=1,
            )
        )
        self.held = held
        out: list[Finding] = []
        for i in np.flatnonzero(self.over | self.leak):
            excess = mk[i] - allow[i] * q[i]
            ev = {
                "loss_rate_pct": r3(100 * rate[i]),
                "short_loss_rate_pct": r3(100 * fast_rate[i]),
                "allowance_pct": r3(100 * allow[i]),
                "makeup_m3_h": r3(mk[i]),
                "circulating_m3_h": r3(q[i]),
                "allowance_m3_h": r3(allow[i] * q[i]),
                "excess_m3_h": r3(excess),
                "day_makeup_m3": r3(self.day_makeup[i]),
                "day_circulated_m3": r3(self.day_circ[i]),
                "day_loss_rate_pct": r3(100 * day_rate[i]),
                "tank_fall_m": r3(tank_fall[i]),
            }
            rate_txt_zh = (
                f"失水率 {100 * rate[i]:.2f}%（允许 {100 * allow[i]:.1f}%）" if judged[i] else ""
            )
            rate_txt_en = (
                f"loss rate {100 * rate[i]:.2f}% (allowance {100 * allow[i]:.1f}%)"
                if judged[i]
                else ""
            )
            excess_zh = f"，超出 {excess:.2f} m³/h" if np.isfinite(excess) else ""
            excess_en = f", {excess:.2f} m³/h over" if np.isfinite(excess) else ""
            day_zh = (
                f"；当日补水 {self.day_makeup[i]:.1f} m³，为循环量的 {100 * day_rate[i]:.2f}%"
                if np.isfinite(day_rate[i])
                else ""
            )
            day_en = (
                f"; today's make-up {self.day_makeup[i]:.1f} m³ = {100 * day_rate[i]:.2f}% of circulation"
                if np.isfinite(day_rate[i])
                else ""
            )
            headline = 100 * self.held[i, 0]
            if self.over[i]:
                out.append(
                    Finding(
                        kind="makeup_over_allowance",
                        subject=st.ids[i],
                        scope="station",
                        severity="minor",
                        onset=float(self.over_onset[i]),
                        value=fin(headline),
                        message_zh=f"{st.label(i)} 补水超标：{rate_txt_zh}{excess_zh}{day_zh}；派漏水工单（40分钟到场）",
                        message_en=f"{st.ids[i]} make-up over allowance: {rate_txt_en}{excess_en}{day_en}; leak work order (40 min on site)",
                        evidence=ev,
                        stations=(st.ids[i],),
                    )
                )
            if self.leak[i]:
                if tank_leak[i]:
                    why_zh = f"补水箱液位下降 {tank_fall[i]:.2f} m（补水泵运行中）"
                    why_en = f"make-up tank fell {tank_fall[i]:.2f} m with the make-up pump running"
                else:
                    why_zh = f"失水率 {100 * fast_rate[i]:.2f}%，为允许值的 {fast_rate[i] / allow[i]:.0f} 倍"
                    why_en = f"loss rate {100 * fast_rate[i]:.2f}%, {fast_rate[i] / allow[i]:.0f}x the allowance"
                out.append(
                    Finding(
                        kind="secondary_leak",
                        subject=st.ids[i],
                        scope="station",
                        severity="major",
                        onset=float(self.leak_onset[i]),
                        value=fin(100 * self.held[i, 1]),
                        message_zh=f"{st.label(i)} 二次网疑似泄漏：{why_zh}{excess_zh}",
                        message_en=f"{st.ids[i]} suspected secondary leak: {why_en}{excess_en}",
                        evidence=ev,
                        stations=(st.ids[i],),
                    )
                )
        return out
