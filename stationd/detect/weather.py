"""extreme_cold: the site's outdoor temperature below its design temperature, sustained.

The site's outdoor temperature is the median over its stations' sensors, so one station's
sensor in the sun or a broken one (masked already) cannot start the extreme-weather plan.
"""

from __future__ import annotations

import numpy as np

from stationd.detect.kernels import Sustain, Tick, fin, r3
from stationd.detect.static import FleetStatic
from stationd.findings import Finding


class ExtremeCold:
    def __init__(self, static: FleetStatic) -> None:
        self.static = static
        self.timer = Sustain(1)

    def step(self, tick: Tick, median_outdoor: float) -> list[Finding]:
        site = self.static.site
        known = np.array([not np.isnan(median_outdoor)])
        cond = np.array([median_outdoor < site.design_outdoor_temp_c])
        if not self.timer.update(tick.t, cond, known, site.extreme_cold_sustain_s)[0]:
            return []
        design = site.design_outdoor_temp_c
        return [
            Finding(
                kind="extreme_cold",
                subject=self.static.site_id,
                scope="site",
                severity="major",
                onset=float(self.timer.onset[0]),
                value=fin(median_outdoor),
                message_zh=f"极端寒冷：室外温度 {median_outdoor:.1f} °C，低于设计温度 {design:.1f} °C；启动极端天气预案",
                message_en=f"extreme cold: outdoor {median_outdoor:.1f} °C below the design {design:.1f} °C; start the extreme-weather plan",
                evidence={"outdoor_c": r3(median_outdoor), "design_c": r3(design)},
                stations=(),
            )
        ]
