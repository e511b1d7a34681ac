"""Derived per-station values for the historian's `derived` measurement.

The detectors already keep the rolling figures an operator wants to chart (loss rate,
flow allocation, curve deviation) and hand them out through `Detector.derived()`; this
module names them as the dashboards expect (never reading a detector's internals) and
adds heat power, which needs no state: P [kW] = flow [m³/h] x ΔT [K] x 4.186 / 3.6, and
`indoor_at_standard` (1/0 each tick the station's room sensor reads; NaN, so not written,
when it does not), whose `avg_over_time` in Grafana is the share of time at the standard
in force (with the site's night set-back, the same standard the indoor detector judges).
"""

from __future__ import annotations

import numpy as np

from stationd import signals
from stationd.detect.comfort import indoor_standard_at, local_hour
from stationd.detect.engine import Detector
from stationd.detect.static import FleetStatic
from stationd.frame import FleetFrame

KW_PER_M3H_K = 4.186 / 3.6  # water: 1 m³/h heated by 1 K is 1.163 kW

_FLOW = signals.INDEX["primary_flow"]
_TS = signals.INDEX["primary_supply_temp"]
_TR = signals.INDEX["primary_return_temp"]
_IN = signals.INDEX["indoor_temp"]


def derived_fields(
    detector: Detector, static: FleetStatic, frame: FleetFrame
) -> dict[str, np.ndarray]:
    latest = frame.latest()
    found = detector.derived()
    rate = found["loss_rate_pct"] / 100.0
    with np.errstate(invalid="ignore"):
        heat = (
            latest[:, _FLOW].astype(np.float64) * (latest[:, _TS] - latest[:, _TR]) * KW_PER_M3H_K
        )
        indoor = latest[:, _IN].astype(np.float64)
        now = frame.now
        standard = (
            float(indoor_standard_at(static.site, local_hour(now, static.timezone)))
            if np.isfinite(now)
            else np.nan
        )
        at_standard = np.where(np.isnan(indoor), np.nan, (indoor >= standard).astype(np.float64))
        return {
            "loss_ratio": rate,
            "loss_vs_allowance": rate / static.th.makeup_allowance_ratio,
            "expected_flow_ratio": found["expected_flow_ratio"],
            "curve_deviation_c": found["curve_deviation_c"],
            "heat_power_kw": heat,
            "indoor_at_standard": at_standard,
        }
