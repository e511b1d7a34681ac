"""station_power_loss vs station_comm_loss vs monitoring_loss, decided once for the fleet.

Loss of data is itself a finding (DESIGN.md), and one cause explains it, so each station gets
at most one of the three:
- station_power_loss (plan 7.2): `mains_power` reads 0 (a PLC on its UPS still reports); or,
  on a station without a mains signal, the circulation pump stopped and the loop's pressures
  fell to static together; or the data vanished right after such a reading; or the station
  went dark together with at least `feeder_min_stations` (and half) of the stations on its
  power feeder — a grid outage, noted with the feeder.
- monitoring_loss (plan 6.3, scope site): a large share of the fleet silent at once points
  at the monitoring system or its network, not at the stations; the silent stations are
  listed in it and get no station finding of their own (unless they showed power loss).
- station_comm_loss (6.3, one station): silent for `comm_loss_ticks` while the rest is fine.
"""

from __future__ import annotations

import numpy as np

from stationd import signals
from stationd.detect.kernels import Tick, fin, group_count, r3
from stationd.detect.static import FleetStatic
from stationd.findings import Finding

_MAINS = signals.INDEX["mains_power"]
_CIRC = signals.INDEX["circ_pump_running"]
_MPUMP = signals.INDEX["makeup_pump_running"]
_SUP = signals.INDEX["secondary_supply_pressure"]
_RET = signals.INDEX["secondary_return_pressure"]

NONE, POWER, COMM, MONITORING = 0, 1, 2, 3


class Loss:
    def __init__(self, static: FleetStatic) -> None:
        n = static.n
        self.static = static
        self.state = np.zeros(n, dtype=np.int8)
        self.onset = np.full(n, np.nan)
        self.was_running = np.zeros(n, dtype=bool)  # the circulation pump was seen running
        self.powerless_last = np.zeros(n, dtype=bool)  # the last good sample looked powerless
        self.mains_last = np.full(n, np.nan)
        self.feeder_size = np.bincount(
            static.feeder_idx[static.feeder_idx >= 0], minlength=len(static.feeder_names)
        )
        self.monitoring_onset = np.nan
        self.cause = np.full(n, "", dtype=object)  # why power loss was decided (evidence)

    def step(self, tick: Tick) -> list[Finding]:
        st, th, site, t, x = self.static, self.static.th, self.static.site, tick.t, tick.x
        n = st.n
        mains, circ, mpump = x[:, _MAINS], x[:, _CIRC], x[:, _MPUMP]
        dp = x[:, _SUP] - x[:, _RET]
        self.was_running |= circ == 1.0
        with np.errstate(invalid="ignore"):
            by_mains = mains == 0.0
            by_pumps = (
                np.isnan(mains)
                & self.was_running
                & (circ == 0.0)
                & (mpump != 1.0)
                & (dp <= th.static_dp_mpa)
            )
        heard = tick.heard
        self.powerless_last[heard] = (by_mains | by_pumps)[heard]
        self.mains_last = np.where(np.isnan(mains), self.mains_last, mains)

        silent = tick.misses >= th.comm_loss_ticks
        n_silent = int(silent.sum())
        monitoring = (
            n > 0
            and n_silent >= site.monitoring_loss_min_stations
            and n_silent / n >= site.monitoring_loss_share
        )
        # stations on one feeder that went dark within feeder_together_s of the latest of them
        feeder_out = np.zeros(n, dtype=bool)
        if n_silent and not monitoring and len(st.feeder_names):
            f = st.feeder_idx
            cand = silent & (f >= 0) & ~np.isnan(tick.last_good)
            latest = np.full(len(st.feeder_names), -np.inf)
            np.maximum.at(latest, f[cand], tick.last_good[cand])
            together = cand & (tick.last_good >= latest[np.maximum(f, 0)] - th.feeder_together_s)
            count = group_count(f, together, len(st.feeder_names))
            out_f = (count >= site.feeder_min_stations) & (2 * count >= self.feeder_size)
            feeder_out = together & out_f[np.maximum(f, 0)]

        power_heard = heard & (by_mains | by_pumps)
        power_silent = silent & (self.powerless_last | feeder_out)
        power = power_heard | power_silent
        new = np.zeros(n, dtype=np.int8)
        new[silent] = MONITORING if monitoring else COMM
        new[power] = POWER
        # missing for fewer than comm_loss_ticks: too early to judge, nothing changes
        pending = ~heard & ~silent
        new[pending] = self.state[pending]
        changed = new != self.state
        self.onset[changed] = np.where(new[changed] != NONE, t, np.nan)
        self.state = new
        cause = np.full(n, "", dtype=object)
        cause[power & feeder_out] = "feeder"
        cause[power_silent & self.powerless_last] = "vanished_after_power_fail"
        cause[heard & by_pumps] = "pumps_stopped_static"
        cause[heard & by_mains] = "mains_power_0"
        self.cause = cause

        out: list[Finding] = []
        if monitoring:
            if np.isnan(self.monitoring_onset):
                self.monitoring_onset = t
            listed = np.flatnonzero(new == MONITORING)
            share = n_silent / n
            out.append(
                Finding(
                    kind="monitoring_loss",
                    subject=st.site_id,
                    scope="site",
                    severity="critical",
                    onset=float(self.monitoring_onset),
                    value=fin(share),
                    message_zh=(
                        f"监控数据大面积中断：{n_silent}/{n} 个换热站无数据（{share:.0%}），"
                        "按预案6.3联系网络维护和监控软件厂家，加密人工抄表"
                    ),
                    message_en=(
                        f"monitoring outage: no data from {n_silent} of {n} stations ({share:.0%}); "
                        "playbook 6.3: call network maintenance and the vendor, step up manual readings"
                    ),
                    evidence={"silent": n_silent, "fleet": n, "share": r3(share)},
                    stations=tuple(st.ids[i] for i in listed),
                )
            )
        else:
            self.monitoring_onset = np.nan

        for i in np.flatnonzero(new == POWER):
            out.append(self._power(i, t, tick, feeder_out))
        for i in np.flatnonzero(new == COMM):
            misses = int(tick.misses[i])
            last = tick.last_good[i]
            out.append(
                Finding(
                    kind="station_comm_loss",
                    subject=st.ids[i],
                    scope="station",
                    severity="major",
                    onset=float(self.onset[i]),
                    value=float(misses),
                    message_zh=f"{st.label(i)} 通讯中断：连续 {misses} 个周期无数据，其余站点正常；按预案6.3安排人工抄表",
                    message_en=f"{st.ids[i]} communication lost: no data for {misses} ticks while the fleet is fine; playbook 6.3 (manual readings)",
                    evidence={
                        "missed_ticks": misses,
                        "last_good_tick": None if np.isnan(last) else float(last),
                    },
                    stations=(st.ids[i],),
                )
            )
        return out

    def _power(self, i: int, t: float, tick: Tick, feeder_out: np.ndarray) -> Finding:
        st = self.static
        cause = str(self.cause[i])
        f = int(st.feeder_idx[i])
        feeder = st.feeder_names[f] if f >= 0 else None
        ev: dict[str, object] = {
            "cause": cause,
            "feeder": feeder,
            "missed_ticks": int(tick.misses[i]),
        }
        if cause == "feeder":
            mates = np.flatnonzero(feeder_out & (st.feeder_idx == f))
            ev["feeder_stations"] = [st.ids[j] for j in mates]
            zh = f"与同一供电线路（{feeder}）上 {len(mates)} 个站同时失去数据，疑似电网停电"
            en = f"went dark with {len(mates)} stations on feeder {feeder}: grid outage suspected"
        elif cause == "mains_power_0":
            zh, en = "市电状态为断电", "mains power reads 0"
        elif cause == "pumps_stopped_static":
            zh, en = (
                "循环泵、补水泵停运，二次压力降至静压",
                "pumps stopped and secondary pressure fell to static",
            )
        else:
            zh, en = "断电后数据中断", "data vanished after a power failure reading"
        return Finding(
            kind="station_power_loss",
            subject=st.ids[i],
            scope="station",
            severity="critical",
            onset=float(self.onset[i]),
            value=0.0,
            message_zh=f"{st.label(i)} 换热站停电：{zh}；按预案7.2关闭一次供回水阀门并查明原因",
            message_en=f"{st.ids[i]} station power loss: {en}; playbook 7.2 (close primary valves, find the cause)",
            evidence=ev,
            stations=(st.ids[i],),
        )
