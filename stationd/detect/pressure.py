"""secondary_pressure_drop (plan 7.1): the secondary loop's pressure falls fast or too low.

A burst on the secondary side empties the loop: the return (suction) pressure, which the
make-up pump holds, falls with the supply pressure. A circulation pump stopping or changing
over drops only the supply side by the pump head while the return holds; so a fast fall
counts on the return pressure, or on the supply pressure when the return falls too (or the
return is not measured and the circulation pump keeps running). Below the low limit on
either side is a drop whatever the cause. Once raised, it holds until the pressure has
recovered to within half the threshold of where it fell from ("when system pressure is back
to normal", plan 7.1), so a loop that stays empty stays in alarm.
"""

from __future__ import annotations

import numpy as np

from stationd import signals
from stationd.detect.kernels import PeakRing, Tick, r3
from stationd.detect.static import FleetStatic
from stationd.findings import Finding

_SUP = signals.INDEX["secondary_supply_pressure"]
_RET = signals.INDEX["secondary_return_pressure"]
_PUMP = signals.INDEX["circ_pump_running"]


class SecondaryPressure:
    def __init__(self, static: FleetStatic) -> None:
        n = static.n
        self.static = static
        self.ring = PeakRing(n, 2, static.th.pressure_drop_window_s)
        self.active = np.zeros(n, dtype=bool)
        self.onset = np.full(n, np.nan)
        self.ref = np.full((n, 2), np.nan)  # the pressures it fell from

    def step(self, tick: Tick) -> list[Finding]:
        st, th, t = self.static, self.static.th, tick.t
        p = tick.x[:, [_SUP, _RET]]
        self.ring.update(t, p)
        peak = self.ring.peak(t)
        fall = peak - p
        thr = th.pressure_drop_mpa
        low = th.secondary_pressure_low_mpa
        sup, ret = p[:, 0], p[:, 1]
        with np.errstate(invalid="ignore"):
            ret_fast = fall[:, 1] > thr
            sup_fast = fall[:, 0] > thr
            ret_falling = fall[:, 1] > 0.5 * thr
            no_ret = np.isnan(ret) & (tick.x[:, _PUMP] == 1.0)
            fast = ret_fast | (sup_fast & (ret_falling | no_ret))
            too_low = (sup < low) | (ret < low)
        cond = fast | too_low
        known = tick.present(_SUP) | tick.present(_RET)

        start = cond & ~self.active & known
        if start.any():
            self.onset[start] = t
            self.ref[start] = peak[start]
            self.active |= start
        # recovered: both sides back near where they fell from, and above the low limit
        with np.errstate(invalid="ignore"):
            rise_needed = self.ref - p
            still = np.fmax(rise_needed[:, 0], rise_needed[:, 1]) > 0.5 * thr
        back = self.active & known & ~still & ~too_low
        if back.any():
            self.active[back] = False
            self.onset[back] = np.nan
            self.ref[back] = np.nan

        out: list[Finding] = []
        rows = np.flatnonzero(self.active)
        if rows.size == 0:
            return out
        # one bulk conversion to Python floats: per-element numpy scalars cost more than the
        # whole vectorised pass when a hundred stations are in alarm
        drops = np.nan_to_num(self.ref[rows] - p[rows], nan=-1.0).tolist()
        for i, (d_sup, d_ret) in zip(rows.tolist(), drops, strict=True):
            value = max(d_sup, d_ret, 0.0)
            side, side_en = ("供水", "supply") if d_sup >= d_ret else ("回水", "return")
            out.append(
                Finding(
                    kind="secondary_pressure_drop",
                    subject=st.ids[i],
                    scope="station",
                    severity="critical",
                    onset=float(self.onset[i]),
                    value=round(value, 4),
                    message_zh=(
                        f"{st.label(i)} 二次{side}压力骤降 {value:.3f} MPa"
                        f"（供水 {sup[i]:.3f}，回水 {ret[i]:.3f} MPa），按预案7.1处置"
                    ),
                    message_en=(
                        f"{st.ids[i]} secondary {side_en} pressure fell {value:.3f} MPa "
                        f"(supply {sup[i]:.3f}, return {ret[i]:.3f} MPa); playbook 7.1"
                    ),
                    evidence={
                        "supply_mpa": r3(sup[i]),
                        "return_mpa": r3(ret[i]),
                        "from_supply_mpa": r3(self.ref[i, 0]),
                        "from_return_mpa": r3(self.ref[i, 1]),
                        "drop_mpa": round(value, 4),
                        "threshold_mpa": r3(thr[i]),
                        "window_s": r3(th.pressure_drop_window_s[i]),
                        "low_limit_mpa": r3(low[i]),
                    },
                    stations=(st.ids[i],),
                )
            )
        return out
