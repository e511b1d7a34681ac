"""Derived per-station values for the historian's `derived` measurement, every tick.

The detection core hands over its rolling figures through `Detector.derived()` (loss rate,
flow allocation, curve deviation, the primary curve deficit, and — when it says so — a
`warming` mask of stations whose averages are still warming up); this module names
them as the dashboards expect and adds what needs no detector state:
- `heat_power_kw`: P [kW] = flow [m³/h] x ΔT [K] x 4.186 / 3.6;
- `indoor_at_standard`: 1/0 each tick the station's room sensor reads (NaN, so not
  written, when it does not), whose `avg_over_time` in Grafana is the share of time at
  the standard in force (with the site's night set-back, the standard the indoor
  detector judges);
- `alarm_level`: the worst active alarm at the station (0 none, 1 notice, 2 minor,
  3 major, 4 critical; a fleet alarm counts at every station it names), so the fleet
  status grid has one value per station per tick, alarm or not;
- `warming`: 1 while a station's loss rate is provisional. The series are written from
  the first tick: until the detector's own average judges a station, the loss rate is
  the ratio of the make-up and circulating flows averaged since the detector started
  (the same ratio of averages, over a shorter span; running sums, O(stations) a tick),
  flagged `warming=1`, instead of a ~7-minute hole after every start.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from alarms.model import ACTIVE_STATES
from stationd import signals
from stationd.detect.comfort import indoor_standard_at, local_hour
from stationd.detect.engine import Detector
from stationd.detect.static import FleetStatic
from stationd.findings import SEVERITY_RANK
from stationd.frame import FleetFrame

KW_PER_M3H_K = 4.186 / 3.6  # water: 1 m³/h heated by 1 K is 1.163 kW

_FLOW = signals.INDEX["primary_flow"]
_TS = signals.INDEX["primary_supply_temp"]
_TR = signals.INDEX["primary_return_temp"]
_IN = signals.INDEX["indoor_temp"]
_MK = signals.INDEX["makeup_flow"]
_Q = signals.INDEX["secondary_flow"]


def alarm_levels(station_ids: list[str], alarms: Iterable[Any]) -> np.ndarray:
    """[S] worst active alarm per station: 0 none, 1 + severity rank (notice 1 .. 4)."""
    index = {sid: i for i, sid in enumerate(station_ids)}
    level = np.zeros(len(station_ids))
    for a in alarms:
        if getattr(a, "state", None) not in ACTIVE_STATES:
            continue
        rank = 1.0 + SEVERITY_RANK.get(str(getattr(a, "severity", "")), 0)
        for sid in {getattr(a, "station", ""), *getattr(a, "stations", ())}:
            i = index.get(sid)
            if i is not None and rank > level[i]:
                level[i] = rank
    return level


class DerivedWriter:
    """Turns the detector's derived arrays into the `derived` fields, tick by tick.

    Its state, reset with each fresh Detector (a reload or a clock step starts warming
    again): which stations the detector has judged at least once (for a detector that
    gives no `warming` mask of its own), and the running sums of make-up and circulating
    flow behind the provisional loss rate.
    """

    def __init__(self) -> None:
        self._detector: Detector | None = None
        self._judged = np.zeros(0, dtype=bool)
        self._sums = np.zeros((0, 2))  # [make-up, circulating] over ticks with both

    def _provisional(self, latest: np.ndarray) -> np.ndarray:
        """[S] make-up / circulating flow, each summed over the ticks since the detector
        started that had both readings (NaN where the loop has not circulated)."""
        x = latest[:, [_MK, _Q]].astype(np.float64)
        both = ~np.isnan(x).any(axis=1)
        self._sums[both] += x[both]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self._sums[:, 1] > 0, self._sums[:, 0] / self._sums[:, 1], np.nan)

    def fields(
        self,
        detector: Detector,
        static: FleetStatic,
        frame: FleetFrame,
        alarms: Iterable[Any] = (),
    ) -> dict[str, np.ndarray]:
        d = detector.derived()
        n = static.n
        if detector is not self._detector or len(self._judged) != n:
            self._detector, self._judged = detector, np.zeros(n, dtype=bool)
            self._sums = np.zeros((n, 2))
        latest = frame.latest()
        provisional = self._provisional(latest)
        loss = _array(d.get("loss_rate_pct"), n) / 100.0
        if "warming" in d:
            warming = np.broadcast_to(np.asarray(d["warming"], dtype=bool), (n,)).copy()
        else:
            self._judged |= np.isfinite(loss)
            warming = ~self._judged
        loss = np.where(warming & ~np.isfinite(loss), provisional, loss)
        with np.errstate(invalid="ignore"):
            heat = (
                latest[:, _FLOW].astype(np.float64)
                * (latest[:, _TS] - latest[:, _TR])
                * KW_PER_M3H_K
            )
            indoor = latest[:, _IN].astype(np.float64)
            now = frame.now
            standard = (
                float(indoor_standard_at(static.site, local_hour(now, static.timezone)))
                if np.isfinite(now)
                else np.nan
            )
            at_standard = np.where(
                np.isnan(indoor), np.nan, (indoor >= standard).astype(np.float64)
            )
            return {
                "loss_ratio": loss,
                "loss_vs_allowance": loss / static.th.makeup_allowance_ratio,
                "warming": warming.astype(np.float64),
                "expected_flow_ratio": _array(d.get("expected_flow_ratio"), n),
                "curve_deviation_c": _array(d.get("curve_deviation_c"), n),
                "primary_curve_deficit_c": _array(d.get("primary_curve_deficit_c"), n),
                "heat_power_kw": heat,
                "indoor_at_standard": at_standard,
                "alarm_level": alarm_levels(list(static.ids), alarms),
            }


def _array(x: Any, n: int) -> np.ndarray:
    """A per-station float array from what the detector gave (NaN when it gave none)."""
    if x is None:
        return np.full(n, np.nan)
    return np.broadcast_to(np.asarray(x, dtype=np.float64), (n,)).copy()
