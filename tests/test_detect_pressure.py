"""secondary_pressure_drop (plan 7.1) on synthetic fleets with known onsets."""

from __future__ import annotations

import numpy as np

from stationd.detect.thresholds import Thresholds
from tests.synth import SIG, T0, first, fleet_static, raised, run

SUP, RET = SIG["secondary_supply_pressure"], SIG["secondary_return_pressure"]


def test_pressure_collapse_raises_secondary_pressure_drop_within_3_ticks():
    st = fleet_static(20)
    onset_k = 300

    def burst(k, t, v):
        if k >= onset_k:
            # the loop empties over a few ticks: both sides fall together
            fall = min(k - onset_k + 1, 4) * 0.06
            v[3, SUP] -= fall
            v[3, RET] -= fall

    h = run(st, 400, inject=burst)
    t_raise = first(h, "secondary_pressure_drop", "hs00003")
    assert t_raise is not None
    assert T0 + onset_k <= t_raise <= T0 + onset_k + 2
    # silence elsewhere and before the fault
    assert raised(h) == {("secondary_pressure_drop", "hs00003")}
    f = next(f for f in h[-1][1] if f.subject == "hs00003")
    assert f.severity == "critical" and f.scope == "station"
    assert f.onset == t_raise
    assert 0.2 <= f.value <= 0.26
    assert f.evidence["from_return_mpa"] > 0.25
    assert "7.1" in f.message_zh and "7.1" in f.message_en


def test_slow_fall_below_low_limit_raises_secondary_pressure_drop():
    st = fleet_static(10)

    def drift(k, t, v):
        # 0.0005 MPa per 5 s tick: never fast, but the loop ends up nearly empty
        v[1, RET] -= 0.0005 * k
        v[1, SUP] -= 0.0005 * k

    h = run(st, 3000, interval=5.0, inject=drift)
    t_raise = first(h, "secondary_pressure_drop", "hs00001")
    # return pressure crosses 0.10 MPa at k = 360 (t = 1800 s)
    assert t_raise is not None and abs(t_raise - (T0 + 1800)) <= 30
    assert raised(h) == {("secondary_pressure_drop", "hs00001")}


def test_circulation_pump_changeover_raises_no_pressure_drop():
    st = fleet_static(10)

    def changeover(k, t, v):
        # pump A stops, pump B takes over: supply sags by the pump head for 3 ticks,
        # flow dips, the return (held by the make-up pump) does not move
        if 200 <= k < 203:
            v[2, SUP] = 0.30
            v[2, SIG["secondary_flow"]] *= 0.3
            v[2, SIG["circ_pump_running"]] = 0.0 if k == 200 else 1.0

    h = run(st, 400, inject=changeover)
    assert raised(h) == set()


def test_pressure_drop_holds_while_the_loop_stays_empty_and_clears_when_refilled():
    st = fleet_static(6)

    def empty_then_refill(k, t, v):
        if 100 <= k < 600:
            v[0, SUP] = 0.20
            v[0, RET] = 0.12
        elif k >= 600:
            pass  # back to normal (0.45 / 0.28)

    h = run(st, 700, inject=empty_then_refill)
    active = [any(f.kind == "secondary_pressure_drop" for f in found) for _, found in h]
    assert not any(active[:100])
    assert all(active[100:600])  # the window (60 s) passed long ago: still in alarm
    assert not any(active[602:])


def test_noise_and_a_nan_gap_raise_nothing():
    st = fleet_static(10)

    def gap(k, t, v):
        if 100 <= k < 130:
            v[4, :] = np.nan  # station delivers nothing usable (shorter than comm loss? no)
        if 100 <= k < 160:
            v[5, SUP] = np.nan
            v[5, RET] = np.nan

    h = run(st, 300, inject=gap)
    assert ("secondary_pressure_drop", "hs00004") not in raised(h)
    assert ("secondary_pressure_drop", "hs00005") not in raised(h)


def test_per_station_threshold_override_is_respected():
    ths = [Thresholds(pressure_drop_mpa=0.2)] + [Thresholds()] * 3
    st = fleet_static(4, thresholds=ths)

    def fall(k, t, v):
        if k >= 100:
            v[0:2, SUP] -= 0.1
            v[0:2, RET] -= 0.1

    h = run(st, 200, inject=fall)
    assert raised(h) == {("secondary_pressure_drop", "hs00001")}
