"""makeup_over_allowance and secondary_leak: the 0.5 % make-up allowance (000 方案2 三.1)."""

from __future__ import annotations

import numpy as np
import pytest

from stationd.detect.thresholds import Thresholds
from tests.synth import SIG, T0, SynthFleet, at, first, fleet_static, raised, run

MK, Q, TOTAL = SIG["makeup_flow"], SIG["secondary_flow"], SIG["makeup_total"]


class LeakyFleet(SynthFleet):
    """Station `i` loses `share` of its circulating flow from `onset` on; its meter counts it."""

    def __init__(self, static, i, share, onset, meter_only=False):
        super().__init__(static)
        self.i, self.share, self.onset, self.meter_only = i, share, onset, meter_only

    def values(self, t):
        v = super().values(t)
        if t >= self.onset:
            extra = self.share * v[self.i, Q]
            dt = 0.0 if t == self.onset else self.step
            self.total[self.i] += extra * dt / 3600.0
            v[self.i, TOTAL] = self.total[self.i]
            v[self.i, MK] = np.nan if self.meter_only else v[self.i, MK] + extra
        if self.meter_only:
            v[self.i, MK] = np.nan
        return v


def test_loss_above_allowance_raises_makeup_over_allowance_with_excess():
    st = fleet_static(10)
    fleet = LeakyFleet(st, 2, 0.010, T0 + 1800)
    fleet.step = 10.0
    h = run(st, 3 * 3600, interval=10.0, fleet=fleet)
    t_raise = first(h, "makeup_over_allowance", "hs00002")
    assert t_raise is not None and T0 + 1800 < t_raise <= T0 + 1800 + 600
    assert raised(h) == {("makeup_over_allowance", "hs00002")}  # 1.3 % < 4 x 0.5 %: no leak
    f = at(h, h[-1][0], "makeup_over_allowance", "hs00002")
    q = fleet.flow0[2]
    # normal make-up is 0.15 % here, so the loss rate is ~1.15 %, ~0.65 % over the allowance
    assert f.value == pytest.approx(1.15, abs=0.15)
    assert f.evidence["excess_m3_h"] == pytest.approx(0.0065 * q, rel=0.25)
    assert "40" in f.message_zh and "m³/h" in f.message_en


def test_loss_far_above_allowance_raises_secondary_leak():
    st = fleet_static(10)
    fleet = LeakyFleet(st, 5, 0.04, T0 + 1200)
    fleet.step = 5.0
    h = run(st, 3600, interval=5.0, fleet=fleet)
    t_leak = first(h, "secondary_leak", "hs00005")
    assert t_leak is not None and T0 + 1200 < t_leak <= T0 + 1200 + 150
    assert raised(h) == {("makeup_over_allowance", "hs00005"), ("secondary_leak", "hs00005")}


def test_tank_falling_while_makeup_pump_runs_raises_secondary_leak():
    st = fleet_static(6)

    def tank(k, t, v):
        v[1, MK] = np.nan  # no make-up flow meter here: the tank is the evidence
        if k >= 600:
            v[1, SIG["makeup_pump_running"]] = 1.0
            v[1, SIG["makeup_tank_level"]] = 1.5 - 0.0005 * (k - 600)  # 3 cm a minute

    h = run(st, 1200, interval=1.0, inject=tank)
    t_leak = first(h, "secondary_leak", "hs00001")
    # 5 cm gone after 100 s
    assert t_leak is not None and T0 + 680 <= t_leak <= T0 + 720
    f = at(h, t_leak, "secondary_leak", "hs00001")
    assert "补水箱" in f.message_zh


def test_pump_changeover_flow_dip_raises_no_makeup_alarm():
    st = fleet_static(6)

    def dip(k, t, v):
        if 300 <= k < 304:
            v[:, Q] *= 0.2
            v[:, MK] = 2.0  # the make-up pump kicks in while the loop re-pressurises

    h = run(st, 900, interval=1.0, inject=dip)
    assert raised(h) == set()


def test_day_volume_over_allowance_from_meter_despite_reset_and_gap():
    # no make-up flow signal at this station: only the cumulative meter tells
    st = fleet_static(6, thresholds=Thresholds(makeup_day_min_s=3600))
    fleet = LeakyFleet(st, 3, 0.006, T0, meter_only=True)
    fleet.step = 60.0

    def reset_and_gap(k, t, v):
        if k == 100:
            fleet.total[3] = 0.0  # meter replaced / rolled over
            fleet.total[4] = 0.0  # a healthy station's meter too
            v[3, TOTAL] = v[4, TOTAL] = 0.0
        if 150 <= k < 180:
            v[3, :] = np.nan  # 30 minutes without data; the meter kept counting

    h = run(st, 8 * 3600, interval=60.0, fleet=fleet, inject=reset_and_gap)
    # the gap is a comm loss of its own; the healthy station's reset raises nothing
    assert raised(h) == {("makeup_over_allowance", "hs00003"), ("station_comm_loss", "hs00003")}
    f = at(h, h[-1][0], "makeup_over_allowance", "hs00003")
    # 0.6 % leak + 0.15 % normal make-up; the reset loses at most one tick's increment
    assert f.evidence["day_loss_rate_pct"] == pytest.approx(0.75, abs=0.08)
    assert f.evidence["loss_rate_pct"] is None  # no flow signal: unknown, JSON null
    assert f.value == pytest.approx(0.75, abs=0.08)  # the day's rate is the headline


def test_fault_free_day_with_day_night_load_swings_raises_nothing():
    st = fleet_static(30)
    h = run(st, 86_400, interval=60.0)
    assert raised(h) == set()


def test_tank_sawing_with_a_makeup_meter_present_is_judged_by_the_meter():
    st = fleet_static(6)

    def refill_cycles(k, t, v):
        # normal duty: the pump draws the tank down, the float valve refills it
        v[2, SIG["makeup_pump_running"]] = 1.0
        v[2, SIG["makeup_tank_level"]] = 1.8 - 0.0025 * (k % 240)  # 0.6 m in 20 min

    h = run(st, 3600, interval=5.0, inject=refill_cycles)
    assert raised(h) == set()


def test_refill_after_a_pump_stop_is_not_a_leak():
    st = fleet_static(6)

    def stop_then_refill(k, t, v):
        if 1200 <= k < 3000:  # circulation stopped for half an hour
            v[3, Q] = 0.0
            v[3, MK] = 0.0
            v[3, SIG["circ_pump_running"]] = 0.0
        if 3000 <= k < 3300:  # restarted: the make-up pump refills what the loop lost
            v[3, MK] = 0.03 * v[3, Q]

    h = run(st, 5400, interval=5.0, inject=stop_then_refill)
    assert raised(h) == set()
