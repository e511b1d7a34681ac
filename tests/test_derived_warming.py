"""The historian's derived series start with the first tick: a provisional loss rate
flagged `warming=1` until the detector's own average judges the station, then the
detector's figures with `warming=0`; `alarm_level` is the worst active alarm."""

from __future__ import annotations

import numpy as np

from alarms.engine import AlarmRecord
from alarms.model import AlarmState
from stationd.derived import DerivedWriter, alarm_levels
from stationd.detect.engine import Detector
from stationd.frame import FleetFrame
from tests.synth import SIG, T0, SynthFleet, feed, fleet_static

STEP = 10.0


def test_loss_rate_is_written_from_the_first_tick_and_flagged_while_warming():
    st = fleet_static(6)
    frame = FleetFrame(list(st.ids), window=120)
    det = Detector(st)
    fleet = SynthFleet(st)
    w = DerivedWriter()
    first = second = None
    warmed_at = None
    for k in range(120):
        t = T0 + STEP * k
        feed(frame, t, fleet.values(t))
        det.step(frame)
        out = w.fields(det, st, frame)
        if k == 0:
            first = out
        if k == 1:
            second = out
        if warmed_at is None and not out["warming"].any():
            warmed_at = k
            detector_rate = det.derived()["loss_rate_pct"] / 100.0
            np.testing.assert_allclose(out["loss_ratio"], detector_rate)
    assert first is not None and second is not None
    # tick one: every station has a loss rate, and says it is provisional
    assert np.isfinite(first["loss_ratio"]).all()
    np.testing.assert_array_equal(first["warming"], 1.0)
    share = fleet.makeup_share * st.th.makeup_allowance_ratio  # what the fleet loses
    assert (first["loss_ratio"] < 5 * share).all()
    np.testing.assert_allclose(first["loss_vs_allowance"], first["loss_ratio"] / 0.005)
    # the detector's own average takes over once it judges (half its 600 s window)
    assert warmed_at is not None and 20 <= warmed_at <= 60, warmed_at
    # the detector's other averages need one time step (the second tick)
    assert np.isfinite(first["heat_power_kw"]).all()
    for name in ("expected_flow_ratio", "curve_deviation_c", "primary_curve_deficit_c"):
        assert np.isfinite(second[name]).all(), name


def test_a_fresh_detector_warms_up_again():
    st = fleet_static(3)
    frame = FleetFrame(list(st.ids), window=10)
    fleet = SynthFleet(st)
    w = DerivedWriter()
    det = Detector(st)
    for k in range(80):
        feed(frame, T0 + STEP * k, fleet.values(T0 + STEP * k))
        det.step(frame)
        out = w.fields(det, st, frame)
    assert not out["warming"].any()
    det = Detector(st)  # a clock step or a reload
    feed(frame, T0 + STEP * 80, fleet.values(T0 + STEP * 80))
    det.step(frame)
    out = w.fields(det, st, frame)
    np.testing.assert_array_equal(out["warming"], 1.0)
    assert np.isfinite(out["loss_ratio"]).all()


def test_stopped_loop_has_no_provisional_loss_rate():
    st = fleet_static(2)
    frame = FleetFrame(list(st.ids), window=10)
    fleet = SynthFleet(st)
    v = fleet.values(T0)
    v[1, SIG["secondary_flow"]] = 0.0
    feed(frame, T0, v)
    det = Detector(st)
    det.step(frame)
    out = DerivedWriter().fields(det, st, frame)
    assert np.isfinite(out["loss_ratio"][0]) and np.isnan(out["loss_ratio"][1])


def test_alarm_level_is_the_worst_active_alarm_per_station():
    ids = ["hs1", "hs2", "hs3", "hs4"]

    def rec(station, severity, state, stations=()):
        return AlarmRecord(
            alarm_id=f"{station or 'branch'}/x", kind="x", subject=station or "东线",
            station=station, state=state, severity=severity, stations=stations,
        )  # fmt: skip

    alarms = [
        rec("hs1", "minor", AlarmState.UNACK),
        rec("hs1", "critical", AlarmState.ACKED),
        rec("hs2", "critical", AlarmState.SHELVED),  # hidden: not active
        rec("hs3", "notice", AlarmState.RTN_UNACK),  # cleared: not active
        rec("", "major", AlarmState.UNACK, stations=("hs3", "hs4")),  # a branch alarm
    ]
    np.testing.assert_array_equal(alarm_levels(ids, alarms), [4.0, 0.0, 3.0, 3.0])
