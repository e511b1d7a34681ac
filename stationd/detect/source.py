"""heat_source_shortfall (plan 6.1): primary supply temperature below the curve across a source.

One station's primary supply running cold is its own valve or strainer. Many stations of
one heat source running cold together is the source (a generating unit down): the
comparison is each station's primary supply temperature against the source's primary
heating curve at that station's outdoor temperature, then counted per heat source.
"""

from __future__ import annotations

import numpy as np

from stationd import signals
from stationd.detect.kernels import Sustain, Tick, fin, group_count, group_sum, r3
from stationd.detect.static import FleetStatic
from stationd.findings import Finding

_TPS = signals.INDEX["primary_supply_temp"]
_OUT = signals.INDEX["outdoor_temp"]


def fleet_outdoor(tick: Tick) -> tuple[np.ndarray, float]:
    """Each station's outdoor temperature, the site median where a station has none."""
    out = tick.x[:, _OUT]
    good = out[~np.isnan(out)]
    median = float(np.median(good)) if good.size else float("nan")
    return np.where(np.isnan(out), median, out), median


class HeatSource:
    def __init__(self, static: FleetStatic) -> None:
        self.static = static
        self.timer = Sustain(len(static.source_names))
        self.deficit = np.full(static.n, np.nan)  # for the historian's derived measurement

    def step(self, tick: Tick, outdoor: np.ndarray) -> list[Finding]:
        st, th, site, t = self.static, self.static.th, self.static.site, tick.t
        n_src = len(st.source_names)
        if n_src == 0:
            return []
        target = th.primary_curve.at(outdoor)
        tps = tick.x[:, _TPS]
        deficit = target - tps
        self.deficit = deficit
        known = ~np.isnan(deficit)
        with np.errstate(invalid="ignore"):
            short = known & (deficit > th.shortfall_deficit_c)
        n_short = group_count(st.source_idx, short, n_src)
        n_known = group_count(st.source_idx, known, n_src)
        with np.errstate(invalid="ignore", divide="ignore"):
            cond = (n_short >= site.shortfall_min_stations) & (
                n_short >= site.shortfall_min_share * n_known
            )
        active = self.timer.update(t, cond, n_known > 0, site.shortfall_delay_s)
        out: list[Finding] = []
        for s in np.flatnonzero(active):
            members = short & (st.source_idx == s)
            ids = tuple(st.ids[i] for i in np.flatnonzero(members))
            mean_def = float(
                group_sum(st.source_idx, deficit, members, n_src)[s] / max(n_short[s], 1)
            )
            name = st.source_names[s]
            out.append(
                Finding(
                    kind="heat_source_shortfall",
                    subject=name,
                    scope="source",
                    severity="critical",
                    onset=float(self.timer.onset[s]),
                    value=fin(mean_def),
                    message_zh=(
                        f"热源 {name} 供热不足：{n_short[s]}/{n_known[s]} 个站一次供水温度低于供热曲线，"
                        f"平均低 {mean_def:.1f} °C；按预案6.1向热源调度询问原因和恢复时间"
                    ),
                    message_en=(
                        f"heat source {name} short: primary supply below its curve at {n_short[s]} of "
                        f"{n_known[s]} stations, {mean_def:.1f} °C low on average; playbook 6.1"
                    ),
                    evidence={
                        "stations_short": int(n_short[s]),
                        "stations_reporting": int(n_known[s]),
                        "mean_deficit_c": r3(mean_def),
                        "threshold_c": r3(site.shortfall_deficit_c),
                        "outdoor_c": r3(float(np.nanmedian(outdoor[members]))),
                    },
                    stations=ids,
                )
            )
        return out
