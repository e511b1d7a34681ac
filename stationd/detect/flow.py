"""flow_allocation: circulating flow far from 10 t/h per 10,000 m² of heated area (notice).

The plan sizes a station's circulating flow by its heated area (000 方案2 一.8). Far below
it, the far buildings go cold; far above, the pumps waste power and the loop's ΔT collapses.
The flow is averaged first so a pump changeover's dip does not count.
"""

from __future__ import annotations

import numpy as np

from stationd import signals
from stationd.detect.kernels import Ewma, Held, Sustain, Tick, fin, r3
from stationd.detect.static import FleetStatic
from stationd.findings import Finding

_Q = signals.INDEX["secondary_flow"]
_CIRC = signals.INDEX["circ_pump_running"]


class FlowAllocation:
    def __init__(self, static: FleetStatic) -> None:
        self.static = static
        th = static.th
        # 1 t of water ≈ 1 m³ at heating temperatures: compare m³/h with t/h directly
        self.expected = th.flow_per_10k_m2_t_h * static.heated_area_m2 / 1e4
        self.avg = Ewma((static.n,))
        self.timer = Sustain(static.n)
        self.ratio = np.full(static.n, np.nan)  # for the historian's derived measurement
        self.held = Held(static.n)

    def step(self, tick: Tick) -> list[Finding]:
        st, th, t = self.static, self.static.th, tick.t
        q = tick.x[:, _Q]
        avg = self.avg.update(q, tick.dt, th.smoothing_s)
        ratio = avg / self.expected
        self.ratio = ratio
        running = tick.x[:, _CIRC] == 1.0
        known = tick.present(_Q)
        with np.errstate(invalid="ignore"):
            cond = (
                running
                & ~np.isnan(q)
                & (self.avg.weight >= 0.5)
                & (np.abs(ratio - 1.0) > th.flow_allocation_tolerance)
            )
        active = self.timer.update(t, cond, known, th.flow_allocation_sustain_s)
        ratio = self.held.update(ratio)
        avg = ratio * self.expected
        out: list[Finding] = []
        for i in np.flatnonzero(active):
            low = ratio[i] < 1.0
            zh = "偏小" if low else "偏大"
            en = "low" if low else "high"
            out.append(
                Finding(
                    kind="flow_allocation",
                    subject=st.ids[i],
                    scope="station",
                    severity="notice",
                    onset=float(self.timer.onset[i]),
                    value=fin(ratio[i]),
                    message_zh=(
                        f"{st.label(i)} 循环流量{zh}：{avg[i]:.1f} m³/h，按面积应为 {self.expected[i]:.1f} t/h"
                        f"（{ratio[i]:.0%}）"
                    ),
                    message_en=(
                        f"{st.ids[i]} circulating flow {en}: {avg[i]:.1f} m³/h against "
                        f"{self.expected[i]:.1f} t/h for its area ({ratio[i]:.0%})"
                    ),
                    evidence={
                        "flow_m3_h": r3(avg[i]),
                        "expected_t_h": r3(self.expected[i]),
                        "ratio": r3(ratio[i]),
                        "heated_area_m2": r3(st.heated_area_m2[i]),
                    },
                    stations=(st.ids[i],),
                )
            )
        return out
