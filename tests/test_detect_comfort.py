"""flow_allocation, indoor_below_standard and supply_below/above_curve."""

from __future__ import annotations

import pytest

from stationd.detect.thresholds import Thresholds
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
