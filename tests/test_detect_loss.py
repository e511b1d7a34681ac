"""station_power_loss vs station_comm_loss vs monitoring_loss, decided centrally."""

from __future__ import annotations

import numpy as np
import pytest

from tests.synth import SIG, T0, at, first, fleet_static, raised, run

LOSS = {"station_power_loss", "station_comm_loss", "monitoring_loss"}


def kinds_per_station(history):
    """At every tick, no station may carry more than one of the three loss findings."""
    for _, found in history:
        subjects = [f.subject for f in found if f.kind in LOSS and f.scope == "station"]
        assert len(subjects) == len(set(subjects))


def test_mains_power_zero_raises_station_power_loss_then_data_vanishes():
    st = fleet_static(20)

    def outage(k, t, v):
        if k >= 100:
            v[5, SIG["mains_power"]] = 0.0  # the PLC on its UPS still reports

    silent = lambda k, t: np.arange(20) == 5 if k >= 110 else None  # noqa: E731
    h = run(st, 200, inject=outage, silent=silent)
    assert first(h, "station_power_loss", "hs00005") == T0 + 100
    kinds = {k for k, s in raised(h) if s == "hs00005"}
    assert "station_comm_loss" not in kinds  # the UPS ran out: still power loss
    f = at(h, T0 + 150, "station_power_loss", "hs00005")
    assert f.evidence["cause"] == "vanished_after_power_fail"
    assert f.onset == T0 + 100
    kinds_per_station(h)


def test_single_silent_station_raises_station_comm_loss_after_n_ticks():
    st = fleet_static(20)
    silent = lambda k, t: np.arange(20) == 7 if 100 <= k < 200 else None  # noqa: E731
    h = run(st, 300, silent=silent)
    # comm_loss_ticks = 3: the third missed tick
    assert first(h, "station_comm_loss", "hs00007") == T0 + 102
    assert raised(h) == {("station_comm_loss", "hs00007")}
    assert at(h, T0 + 199, "station_comm_loss", "hs00007") is not None
    assert at(h, T0 + 200, "station_comm_loss", "hs00007") is None  # back: cleared


def test_feeder_outage_raises_power_loss_for_each_station_with_feeder_noted():
    st = fleet_static(20)  # feeder000 feeds hs00000..hs00003
    silent = lambda k, t: np.arange(20) < 4 if k >= 100 else None  # noqa: E731
    h = run(st, 150, silent=silent)
    assert raised(h) == {("station_power_loss", f"hs0000{i}") for i in range(4)}
    f = at(h, T0 + 149, "station_power_loss", "hs00002")
    assert f.evidence["cause"] == "feeder"
    assert f.evidence["feeder"] == "feeder000"
    assert sorted(f.evidence["feeder_stations"]) == [f"hs0000{i}" for i in range(4)]
    assert first(h, "station_power_loss", "hs00000") == T0 + 102


def test_stations_on_different_feeders_going_silent_are_comm_losses():
    st = fleet_static(20)
    silent = lambda k, t: np.isin(np.arange(20), [1, 9]) if k >= 100 else None  # noqa: E731
    h = run(st, 150, silent=silent)
    assert raised(h) == {("station_comm_loss", "hs00001"), ("station_comm_loss", "hs00009")}


def test_large_share_of_fleet_silent_raises_monitoring_loss_only():
    st = fleet_static(20)
    silent = lambda k, t: np.arange(20) < 15 if k >= 100 else None  # noqa: E731
    h = run(st, 150, silent=silent)
    assert raised(h) == {("monitoring_loss", "demo")}
    f = at(h, T0 + 120, "monitoring_loss", "demo")
    assert f.scope == "site" and f.value == 0.75
    assert len(f.stations) == 15
    assert "6.3" in f.message_zh


def test_pumps_stop_and_pressure_falls_to_static_without_mains_signal_is_power_loss():
    st = fleet_static(10)

    def blackout(k, t, v):
        v[3, SIG["mains_power"]] = np.nan  # this station has no mains signal
        if k >= 100:
            v[3, SIG["circ_pump_running"]] = 0.0
            v[3, SIG["makeup_pump_running"]] = 0.0
            v[3, SIG["makeup_flow"]] = 0.0
            v[3, SIG["secondary_flow"]] = 0.0
            v[3, SIG["secondary_supply_pressure"]] = 0.31
            v[3, SIG["secondary_return_pressure"]] = 0.30

    h = run(st, 200, inject=blackout)
    assert first(h, "station_power_loss", "hs00003") == T0 + 100
    # the supply side fell by the pump head, the return rose: not a secondary pressure drop
    assert raised(h) == {("station_power_loss", "hs00003")}


def test_findings_held_through_a_gap_stay_json_safe():
    import json

    from stationd.detect.thresholds import Thresholds

    st = fleet_static(10, thresholds=Thresholds(flow_allocation_sustain_s=600))

    def throttled_then_gap(k, t, v):
        v[6, SIG["secondary_flow"]] *= 0.4
        v[6, SIG["makeup_flow"]] *= 0.4
        if k >= 100:
            v[6, SIG["secondary_flow"]] = np.nan  # meter dropped out; the station still reports

    h = run(st, 7200, interval=60.0, inject=throttled_then_gap)
    f = at(h, h[-1][0], "flow_allocation", "hs00006")
    assert f is not None and f.value == pytest.approx(0.4, abs=0.05)  # held, not NaN
    for _, found in h:
        for g in found:
            json.dumps({"value": g.value, "evidence": g.evidence}, allow_nan=False)
