"""Detector thresholds with the heating plan's numbers as defaults (PLAN.md).

Set per site (`thresholds:` at the top of stations.yaml) and overridden per station
(`thresholds:` on a station). Validated like the rest of the config: unknown keys refused.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class HeatingCurve(BaseModel):
    """Weather-compensated supply temperature, as station controllers define it:

    T = room + slope * (room - outdoor) + shift, clipped to [min_c, max_c].
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    slope: float = Field(1.2, ge=0.0, le=6.0)
    shift: float = Field(0.0, ge=-30.0, le=30.0)
    room_c: float = Field(20.0, ge=10.0, le=30.0)
    min_c: float = Field(30.0, ge=0.0, le=150.0)
    max_c: float = Field(75.0, ge=0.0, le=180.0)

    def at(self, outdoor_c: float) -> float:
        t = self.room_c + self.slope * (self.room_c - outdoor_c) + self.shift
        return min(max(t, self.min_c), self.max_c)


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # secondary_pressure_drop (plan 7.1): a fall of > 0.05 MPa within 60 s, or below the low limit
    pressure_drop_mpa: float = Field(0.05, gt=0)
    pressure_drop_window_s: float = Field(60.0, gt=0)
    secondary_pressure_low_mpa: float = Field(0.10, ge=0)

    # makeup_over_allowance: make-up above 0.5 % of circulating flow (plan 000 方案2 三.1)
    makeup_allowance_ratio: float = Field(0.005, gt=0, lt=1)
    makeup_window_s: float = Field(600.0, gt=0)
    # secondary_leak: make-up this many times the allowance, or the tank falling with the pump on
    leak_factor: float = Field(4.0, gt=1)
    # a loss that large is judged on a shorter average: it empties the loop within the hour
    leak_window_s: float = Field(150.0, gt=0)
    tank_drop_m: float = Field(0.05, gt=0)
    tank_window_s: float = Field(600.0, gt=0)
    # the day's make-up volume is judged once this much of the day has circulated
    makeup_day_min_s: float = Field(3600.0, ge=0)

    # comm / power / monitoring loss
    comm_loss_ticks: int = Field(3, ge=1)
    monitoring_loss_share: float = Field(0.5, gt=0, le=1)
    # ... and at least this many: in a small fleet one silent station is a comm loss
    monitoring_loss_min_stations: int = Field(3, ge=2)
    feeder_min_stations: int = Field(2, ge=2)
    # pumps stopped and the secondary supply-return differential gone: the loop sits at its
    # static pressure, which is what a station without power looks like
    static_dp_mpa: float = Field(0.02, ge=0)
    # stations on one feeder whose data vanished within this span went dark together
    feeder_together_s: float = Field(60.0, gt=0)

    # heat_source_shortfall (plan 6.1) and the primary heating curve of the source
    primary_curve: HeatingCurve = HeatingCurve(slope=2.4, shift=0.0, min_c=60.0, max_c=120.0)
    shortfall_deficit_c: float = Field(8.0, gt=0)
    shortfall_min_share: float = Field(0.5, gt=0, le=1)
    shortfall_min_stations: int = Field(3, ge=1)
    shortfall_delay_s: float = Field(300.0, ge=0)

    # primary_leak (plan 6.2)
    primary_leak_drop_mpa: float = Field(0.05, gt=0)
    primary_leak_window_s: float = Field(300.0, gt=0)
    primary_leak_min_stations: int = Field(2, ge=2)

    # extreme_cold: below the site's design outdoor temperature, sustained
    design_outdoor_temp_c: float = Field(-9.0, ge=-50, le=10)
    extreme_cold_sustain_s: float = Field(3600.0, ge=0)

    # flow_allocation: 10 t/h per 10,000 m² (plan 000 方案2 一.8)
    flow_per_10k_m2_t_h: float = Field(10.0, gt=0)
    flow_allocation_tolerance: float = Field(0.5, gt=0, lt=1)
    flow_allocation_sustain_s: float = Field(3600.0, ge=0)

    # sensor_fault: a frozen analog value, a value outside the signal's physical range, or a
    # return hotter than its supply (by the margin) while water circulates
    frozen_s: float = Field(1800.0, gt=0)
    out_of_range_s: float = Field(10.0, ge=0)
    inconsistent_s: float = Field(900.0, gt=0)
    inconsistent_margin_c: float = Field(2.0, ge=0)

    # indoor_below_standard: 20 °C standard, 18 °C legal floor (plan 001 方案1)
    indoor_standard_c: float = Field(20.0, ge=10, le=30)
    indoor_floor_c: float = Field(18.0, ge=10, le=30)
    indoor_sustain_s: float = Field(7200.0, ge=0)
    # The plan sets one standard for the whole heating day; a site that agrees a night
    # set-back with its customers lowers the standard by `indoor_night_setback_c` outside
    # the local hours [indoor_day_start_h, indoor_day_end_h). The defaults (0-24, no
    # set-back) keep the plan's round-the-clock 20 °C. The 18 °C floor is legal and never
    # lowered: a set-back below it still grades as below the floor.
    indoor_day_start_h: int = Field(0, ge=0, le=24)
    indoor_day_end_h: int = Field(24, ge=0, le=24)
    indoor_night_setback_c: float = Field(0.0, ge=0, le=10)
    # below the standard (or the floor) this long is one severity step worse: a whole day
    # cold is a complaint case, not a routine repair order
    indoor_escalate_s: float = Field(86400.0, gt=0)
    # smoothing of the noisy temperatures judged against a standard or a curve
    smoothing_s: float = Field(300.0, gt=0)

    # supply_below_curve / supply_above_curve: the station's own secondary curve
    secondary_curve: HeatingCurve = HeatingCurve()
    curve_deviation_c: float = Field(8.0, gt=0)
    curve_delay_s: float = Field(1800.0, ge=0)
