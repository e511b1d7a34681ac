"""primary_leak (plan 6.2): primary pressure falling at several stations of one branch.

Water escaping from a primary main drags the pressure down along the branch, first and
most at the stations nearest the break. Each station's primary supply/return pressure is
compared with its peak over the window; a station whose pressure fell by the threshold
is marked (with when and how much), and a branch with `primary_leak_min_stations` marked
stations is a leak. The evidence ranks them by onset, then by size of the fall, which is
where the crews should start looking. A lone station's fall that no neighbour confirms
within the window is forgotten (a valve moved), so it cannot pair up with an unrelated
fall hours later.
"""

from __future__ import annotations

import numpy as np

from stationd import signals
from stationd.detect.kernels import Held, PeakRing, Sustain, Tick, fin, group_count, r3
from stationd.detect.static import FleetStatic
from stationd.findings import Finding

_COLS = [signals.INDEX["primary_supply_pressure"], signals.INDEX["primary_return_pressure"]]


def _worst(fall: np.ndarray) -> np.ndarray:
    """The larger fall of supply and return per station (NaN only if neither is known)."""
    return np.fmax(fall[:, 0], fall[:, 1])


class PrimaryLeak:
    def __init__(self, static: FleetStatic) -> None:
        n = static.n
        self.static = static
        self.ring = PeakRing(n, 2, static.th.primary_leak_window_s)
        self.marked = np.zeros(n, dtype=bool)
        self.onset = np.full(n, np.nan)
        self.ref = np.full((n, 2), np.nan)
        self.branch_timer = Sustain(len(static.branch_names))
        self.held_fall = Held(n)

    def step(self, tick: Tick) -> list[Finding]:
        st, th, site, t = self.static, self.static.th, self.static.site, tick.t
        n_br = len(st.branch_names)
        p = tick.x[:, _COLS]
        self.ring.update(t, p)
        if n_br == 0:
            return []
        peak = self.ring.peak(t)
        thr = th.primary_leak_drop_mpa
        known = tick.present(_COLS[0]) | tick.present(_COLS[1])
        with np.errstate(invalid="ignore"):
            falling = _worst(peak - p) > thr
        start = falling & ~self.marked
        if start.any():
            self.marked |= start
            self.onset[start] = t
            self.ref[start] = peak[start]
        count = group_count(st.branch_idx, self.marked, n_br)
        cond = count >= site.primary_leak_min_stations
        active = self.branch_timer.update(t, cond, np.ones(n_br, dtype=bool), 0.0)
        b = np.maximum(st.branch_idx, 0)
        in_event = (st.branch_idx >= 0) & active[b]
        with np.errstate(invalid="ignore"):
            fall_now = _worst(self.ref - p)
            recovered = known & ((fall_now < 0.5 * thr) | np.isnan(fall_now))
            unconfirmed = ~in_event & ((t - self.onset) > th.primary_leak_window_s)
        forget = self.marked & (recovered | unconfirmed)
        held_fall = self.held_fall.update(fall_now)
        if forget.any():
            self.held_fall.v[forget] = np.nan
            self.marked[forget] = False
            self.onset[forget] = np.nan
            self.ref[forget] = np.nan

        out: list[Finding] = []
        for br in np.flatnonzero(active):
            members = np.flatnonzero(self.marked & (st.branch_idx == br))
            if members.size < site.primary_leak_min_stations:
                continue
            fall = np.nan_to_num(held_fall[members], nan=0.0)
            order = np.lexsort((-fall, self.onset[members]))
            ranked = [
                {
                    "station": st.ids[members[j]],
                    "onset": float(self.onset[members[j]]),
                    "fall_mpa": r3(fall[j]),
                }
                for j in order
            ]
            name = st.branch_names[br]
            first = ranked[0]["station"]
            out.append(
                Finding(
                    kind="primary_leak",
                    subject=name,
                    scope="branch",
                    severity="critical",
                    onset=float(np.min(self.onset[members])),
                    value=fin(np.max(fall)),
                    message_zh=(
                        f"一次网支线 {name} 疑似泄水：{members.size} 个站一次压力下降，最早最大为 {first}；"
                        "按预案6.2组织查找失水点"
                    ),
                    message_en=(
                        f"primary branch {name} suspected leak: pressure falling at {members.size} stations, "
                        f"first and largest at {first}; playbook 6.2"
                    ),
                    evidence={"ranked": ranked, "threshold_mpa": r3(site.primary_leak_drop_mpa)},
                    stations=tuple(r["station"] for r in ranked),
                )
            )
        return out
