"""flow_allocation, indoor_below_standard and supply_below/above_curve."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from stationd.detect.comfort import group_median, indoor_standard_at
from stationd.detect.static import FleetStatic
from stationd.detect.thresholds import HeatingCurve, Thresholds
from tests.synth import SIG, T0, at, first, fleet_static, raised, run


def test_circulating_flow_far_below_allocation_raises_flow_allocation_notice():
    st = fleet_static(10, thresholds=Thresholds(flow_allocation_sustain_s=1800))

    def throttled(k, t, v):
        # a half-closed valve: less flow, and proportionally less make-up for the smaller loss
        v[6, SIG["secondary_flow"]] *= 0.4
        v[6, SIG["makeup_flow"]] *= 0.4

    h = run(st, 3 * 3600, interval=60.0, inject=throttled)
    assert raised(h) == {("flow_allocation", "hs00006")}
    t_raise = first(h, "flow_allocation", "hs00006")
    assert t_raise <= T0 + 1800 + 900  # after the average settles and the sustain time
    f = at(h, h[-1][0], "flow_allocation", "hs00006")
    assert f.severity == "notice" and f.value == pytest.approx(0.4, abs=0.05)
    assert "偏小" in f.message_zh


def test_cold_estate_raises_indoor_below_standard_and_floor_is_more_severe():
    st = fleet_static(10, thresholds=Thresholds(indoor_sustain_s=3600))

    def cold(k, t, v):
        if k >= 60:
            v[2, SIG["indoor_temp"]] = 16.5
            v[3, SIG["indoor_temp"]] = 19.0

    h = run(st, 4 * 3600, interval=60.0, inject=cold)
    assert raised(h) == {
        ("indoor_below_standard", "小区00002"),
        ("indoor_below_standard", "小区00003"),
    }
    below_floor = at(h, h[-1][0], "indoor_below_standard", "小区00002")
    below_std = at(h, h[-1][0], "indoor_below_standard", "小区00003")
    assert below_floor.severity == "major" and below_floor.scope == "estate"
    assert below_std.severity == "minor"
    assert below_floor.stations == ("hs00002",)
    assert first(h, "indoor_below_standard", "小区00002") <= T0 + 3600 + 3600 + 1200


def test_secondary_supply_off_its_curve_raises_after_the_delay():
    st = fleet_static(10, thresholds=Thresholds(curve_delay_s=1800))

    def off(k, t, v):
        if k >= 60:
            v[1, SIG["secondary_supply_temp"]] -= 12.0
            v[1, SIG["secondary_return_temp"]] -= 12.0
            v[2, SIG["secondary_supply_temp"]] += 12.0

    h = run(st, 4 * 3600, interval=60.0, inject=off)
    assert raised(h) == {("supply_below_curve", "hs00001"), ("supply_above_curve", "hs00002")}
    t_raise = first(h, "supply_below_curve", "hs00001")
    assert T0 + 3600 + 1800 <= t_raise <= T0 + 3600 + 1800 + 900
    f = at(h, h[-1][0], "supply_below_curve", "hs00001")
    assert f.value == pytest.approx(-12.0, abs=1.0)


# --- indoor_below_standard: the no-alarm cases and the severity grading -------------------

NIGHT_SETBACK = Thresholds(
    indoor_sustain_s=3600,
    indoor_day_start_h=6,
    indoor_day_end_h=22,
    indoor_night_setback_c=2.0,
)


def _shanghai(day: int, hour: int) -> float:
    """Unix time of a local (Asia/Shanghai, the fleet's zone) hour in November 2023."""
    return datetime(2023, 11, day, hour, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


def _shared_estate_static(rooms: int, thresholds: Thresholds) -> FleetStatic:
    """`rooms` stations whose indoor sensors all stand for 小区甲, plus two of their own."""
    n = rooms + 2
    estates = [["小区甲"]] * rooms + [["小区乙"], ["小区丙"]]
    return FleetStatic.build(
        ids=[f"hs{i:05d}" for i in range(n)],
        heated_area_m2=[80_000.0] * n,
        branches=["支线000"] * n,
        feeders=[f"feeder{i:03d}" for i in range(n)],
        sources=["热源0"] * n,
        estates=estates,
        thresholds=[thresholds] * n,
        site_id="demo",
        names=[f"{i}号站" for i in range(n)],
        curves=[HeatingCurve()] * n,
    )


def test_warm_afternoon_dip_that_recovers_within_the_sustain_time_raises_nothing():
    st = fleet_static(10, thresholds=Thresholds(indoor_sustain_s=3600))

    def afternoon(k, t, v):
        # a mild afternoon: the controller eases off, rooms sag to 19 °C for 40 min, then recover
        if 60 <= k < 100:
            v[:, SIG["indoor_temp"]] = 19.0
        elif k >= 100:
            v[:, SIG["indoor_temp"]] = 21.5

    h = run(st, 5 * 3600, interval=60.0, inject=afternoon, t0=_shanghai(15, 13))
    assert first(h, "indoor_below_standard") is None


def test_night_setback_dip_is_silent_at_night_and_alarms_by_day():
    def setback(k, t, v):
        if k >= 60:
            v[4, SIG["indoor_temp"]] = 18.5  # the set-back level: 20 - 2 = 18 °C, above it

    st = fleet_static(10, thresholds=NIGHT_SETBACK)
    night = run(st, 6 * 3600, interval=60.0, inject=setback, t0=_shanghai(15, 22))
    assert first(night, "indoor_below_standard") is None

    st = fleet_static(10, thresholds=NIGHT_SETBACK)
    day = run(st, 6 * 3600, interval=60.0, inject=setback, t0=_shanghai(15, 8))
    assert raised(day) == {("indoor_below_standard", "小区00004")}
    f = at(day, day[-1][0], "indoor_below_standard", "小区00004")
    assert f.severity == "minor" and f.evidence["standard_c"] == 20.0
    assert f.value == pytest.approx(18.5, abs=0.1)


def test_without_a_configured_setback_the_night_dip_alarms():
    def setback(k, t, v):
        if k >= 60:
            v[4, SIG["indoor_temp"]] = 18.5

    st = fleet_static(10, thresholds=Thresholds(indoor_sustain_s=3600))
    h = run(st, 6 * 3600, interval=60.0, inject=setback, t0=_shanghai(15, 22))
    assert raised(h) == {("indoor_below_standard", "小区00004")}


def test_night_below_the_legal_floor_still_alarms_despite_setback():
    def freezing(k, t, v):
        if k >= 60:
            v[4, SIG["indoor_temp"]] = 16.0

    st = fleet_static(10, thresholds=NIGHT_SETBACK)
    h = run(st, 5 * 3600, interval=60.0, inject=freezing, t0=_shanghai(15, 22))
    assert raised(h) == {("indoor_below_standard", "小区00004")}
    assert at(h, h[-1][0], "indoor_below_standard", "小区00004").severity == "major"


def test_single_cold_room_among_warm_ones_keeps_the_estate_at_standard():
    st = _shared_estate_static(3, Thresholds(indoor_sustain_s=3600))
    assert st.indoor_estate_idx.tolist()[:3] == [0, 0, 0]

    def one_cold(k, t, v):
        if k >= 60:
            v[1, SIG["indoor_temp"]] = 15.0  # one sensor by an open window

    h = run(st, 5 * 3600, interval=60.0, inject=one_cold)
    assert first(h, "indoor_below_standard") is None


def test_most_rooms_of_an_estate_cold_raises_with_its_stations():
    st = _shared_estate_static(3, Thresholds(indoor_sustain_s=3600))

    def two_cold(k, t, v):
        if k >= 60:
            v[1, SIG["indoor_temp"]] = 17.0
            v[2, SIG["indoor_temp"]] = 17.4

    h = run(st, 5 * 3600, interval=60.0, inject=two_cold)
    assert raised(h) == {("indoor_below_standard", "小区甲")}
    f = at(h, h[-1][0], "indoor_below_standard", "小区甲")
    assert f.value == pytest.approx(17.4, abs=0.15)  # the median of 21, 17.0, 17.4
    assert f.severity == "major" and f.evidence["sensors"] == 3
    assert f.stations == ("hs00000", "hs00001", "hs00002")


def test_indoor_severity_grows_with_depth_and_duration():
    th = Thresholds(indoor_sustain_s=1800, indoor_escalate_s=3 * 3600)
    st = fleet_static(10, thresholds=th)

    def cold(k, t, v):
        if k >= 30:
            v[2, SIG["indoor_temp"]] = 16.5  # below the floor
            v[3, SIG["indoor_temp"]] = 19.0  # below the standard only

    h = run(st, 6 * 3600, interval=60.0, inject=cold)

    def severities(subject):
        return [f.severity for _, found in h for f in found if f.subject == subject]

    deep, shallow = severities("小区00002"), severities("小区00003")
    assert deep[0] == "major" and deep[-1] == "critical"
    assert shallow[0] == "minor" and shallow[-1] == "major"
    # the step up comes once the escalation time has passed since the onset
    t_up = next(
        t for t, found in h for f in found if f.subject == "小区00003" and f.severity == "major"
    )
    onset = at(h, t_up, "indoor_below_standard", "小区00003").onset
    assert t_up - onset == pytest.approx(3 * 3600, abs=60)
    assert "小时" in at(h, h[-1][0], "indoor_below_standard", "小区00003").message_zh


def test_standard_by_hour_and_group_median_match_reference():
    hours = np.arange(24)
    std = indoor_standard_at(NIGHT_SETBACK, hours)
    assert std.tolist() == [18.0] * 6 + [20.0] * 16 + [18.0] * 2
    wrap = Thresholds(indoor_day_start_h=22, indoor_day_end_h=6, indoor_night_setback_c=3.0)
    assert indoor_standard_at(wrap, hours).tolist() == [20.0] * 6 + [17.0] * 16 + [20.0] * 2
    assert (indoor_standard_at(Thresholds(), hours) == 20.0).all()

    rng = np.random.default_rng(3)
    idx = rng.integers(-1, 7, 200)
    vals = rng.normal(20.0, 2.0, 200)
    mask = (idx >= 0) & (rng.random(200) > 0.2)
    got = group_median(idx, vals, mask, 8)
    for g in range(8):
        sel = vals[mask & (idx == g)]
        if sel.size:
            assert got[g] == pytest.approx(float(np.median(sel)))
        else:
            assert np.isnan(got[g])
