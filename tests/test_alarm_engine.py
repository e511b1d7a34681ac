"""The alarm state machine, tick by tick, with time passed in (no clock, no I/O)."""

from __future__ import annotations

import pytest

from alarms.engine import AlarmEngine, CommandError, make_incident_id
from alarms.model import AlarmState as S
from alarms.tuning import AlarmTuning
from stationd.findings import Finding

T0 = 1_764_000_000.0  # a tick-aligned unix time


def finding(
    kind: str = "secondary_pressure_drop",
    subject: str = "hs001",
    scope: str = "station",
    severity: str = "critical",
    onset: float = T0,
    value: float = 0.12,
    stations: tuple[str, ...] = (),
) -> Finding:
    return Finding(
        kind=kind,
        subject=subject,
        scope=scope,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        onset=onset,
        value=value,
        message_zh="二次压力骤降",
        message_en="secondary pressure collapsed",
        stations=stations,
    )


def states(transitions) -> list[tuple[str, str, str, str]]:
    return [(t.alarm_id, str(t.from_state), str(t.to_state), t.cause) for t in transitions]


def test_full_cycle_normal_unack_acked_normal() -> None:
    eng = AlarmEngine("site1")
    f = finding()
    ts = eng.step(T0, [f])
    assert states(ts) == [("hs001/secondary_pressure_drop", "normal", "unack", "activate")]
    iid = ts[0].incident_id
    assert iid == make_incident_id("site1", f.alarm_id, f.onset)
    assert ts[0].priority == 1 and ts[0].station == "hs001"

    t = eng.ack(f.alarm_id, "张工", T0 + 5)
    assert (str(t.from_state), str(t.to_state), t.operator) == ("unack", "acked", "张工")
    assert eng.step(T0 + 10, [f]) == []  # still present: nothing new

    # gone, but the off-delay (60 s for this kind) holds it
    assert eng.step(T0 + 20, []) == []
    ts = eng.step(T0 + 80, [])
    assert states(ts) == [(f.alarm_id, "acked", "normal", "clear")]
    assert ts[0].incident_id == iid
    assert eng.records[f.alarm_id].incident_id == ""


def test_clear_before_ack_goes_to_returned_then_ack_closes() -> None:
    eng = AlarmEngine("site1", tuning={"secondary_pressure_drop": {"off_delay_s": 0}})
    f = finding()
    iid = eng.step(T0, [f])[0].incident_id
    ts = eng.step(T0 + 1, [])
    assert states(ts) == [(f.alarm_id, "unack", "rtn_unack", "clear")]
    t = eng.ack(f.alarm_id, "op", T0 + 2)
    assert (str(t.to_state), t.incident_id) == ("normal", iid)
    with pytest.raises(CommandError):
        eng.ack(f.alarm_id, "op", T0 + 3)


def test_return_before_ack_reraises_same_incident() -> None:
    eng = AlarmEngine("site1", tuning={"secondary_pressure_drop": {"off_delay_s": 0}})
    f = finding()
    iid = eng.step(T0, [f])[0].incident_id
    eng.step(T0 + 1, [])
    ts = eng.step(T0 + 2, [f])
    assert states(ts) == [(f.alarm_id, "rtn_unack", "unack", "activate")]
    assert ts[0].incident_id == iid


def test_on_and_off_delays_stop_chattering() -> None:
    tune = {"supply_below_curve": AlarmTuning(on_delay_s=300, off_delay_s=600, rearm_s=0)}
    eng = AlarmEngine("site1", tuning=tune)
    f = finding("supply_below_curve", severity="notice", value=-6.0)
    # a condition flickering every other minute never raises
    out = []
    for i in range(20):
        out += eng.step(T0 + 60 * i, [f] if i % 2 == 0 else [])
    assert out == []
    # present for the full on-delay: raises once
    out = []
    for i in range(6):
        out += eng.step(T0 + 3600 + 60 * i, [f])
    assert states(out) == [(f.alarm_id, "normal", "unack", "activate")]
    # now flickering off for less than the off-delay: stays raised, no transitions
    out = []
    for i in range(20):
        out += eng.step(T0 + 4000 + 60 * i, [] if i % 2 == 0 else [f])
    assert out == []
    assert eng.records[f.alarm_id].state is S.UNACK


def test_rearm_deadband_folds_a_hovering_condition_into_one_incident() -> None:
    tune = {"makeup_over_allowance": AlarmTuning(on_delay_s=0, off_delay_s=0, rearm_s=1800)}
    eng = AlarmEngine("site1", tuning=tune)
    f = finding("makeup_over_allowance", severity="minor", value=0.007)
    eng.step(T0, [f])
    eng.ack(f.alarm_id, "op", T0 + 1)
    assert states(eng.step(T0 + 2, [])) == [(f.alarm_id, "acked", "normal", "clear")]
    # back within the deadband: no new incident
    assert (
        eng.step(T0 + 60, [finding("makeup_over_allowance", severity="minor", onset=T0 + 60)]) == []
    )
    ts = eng.step(T0 + 1900, [finding("makeup_over_allowance", severity="minor", onset=T0 + 60)])
    assert states(ts) == [(f.alarm_id, "normal", "unack", "activate")]


def test_shelve_hides_then_expires_and_reraises() -> None:
    eng = AlarmEngine("site1")
    f = finding()
    iid = eng.step(T0, [f])[0].incident_id
    ts = eng.shelve(f.alarm_id, 30, "李班长", T0 + 10, reason="检修")
    assert states(ts) == [(f.alarm_id, "unack", "shelved", "shelve")]
    assert ts[0].incident_id == iid
    assert eng.step(T0 + 20, [f]) == []  # hidden while shelved
    assert eng.step(T0 + 10 + 29 * 60, [f]) == []
    ts = eng.step(T0 + 10 + 30 * 60, [f])
    assert states(ts) == [
        (f.alarm_id, "shelved", "normal", "unshelve"),
        (f.alarm_id, "normal", "unack", "activate"),
    ]
    # same onset reported again, yet a distinct incident: the pager must page again
    assert ts[1].incident_id != iid


def test_shelve_limits_and_unshelve_command() -> None:
    eng = AlarmEngine("site1")
    with pytest.raises(CommandError):
        eng.shelve("hs001/secondary_pressure_drop", 0, "op", T0)
    with pytest.raises(CommandError):
        eng.shelve("hs001/not_a_kind", 10, "op", T0)
    eng.shelve("hs001/sensor_fault", 60, "op", T0)  # ahead of planned work
    with pytest.raises(CommandError):
        eng.shelve("hs001/sensor_fault", 60, "op", T0)
    t = eng.unshelve("hs001/sensor_fault", "op", T0 + 5)
    assert (str(t.from_state), str(t.to_state)) == ("shelved", "normal")


def test_station_power_loss_suppresses_what_it_explains() -> None:
    eng = AlarmEngine("site1")
    drop = finding("secondary_pressure_drop")
    comm = finding("station_comm_loss", severity="minor")
    power = finding("station_power_loss", severity="critical")
    other = finding("secondary_pressure_drop", subject="hs002")
    ts = eng.step(T0, [drop, comm, power, other])
    by = {t.alarm_id: (str(t.to_state), t.cause) for t in ts}
    assert by["hs001/station_power_loss"] == ("unack", "activate")
    assert by["hs001/secondary_pressure_drop"] == ("suppressed", "suppress")
    assert by["hs001/station_comm_loss"] == ("suppressed", "suppress")
    assert by["hs002/secondary_pressure_drop"] == ("unack", "activate")  # not explained
    assert eng.records["hs001/secondary_pressure_drop"].suppressed_by == "hs001/station_power_loss"
    # power back, pressure still low: the pressure alarm now raises on its own
    ts = eng.step(T0 + 10, [drop])
    assert (drop.alarm_id, "suppressed", "normal", "unsuppress") in states(ts)
    assert (drop.alarm_id, "normal", "unack", "activate") in states(ts)


def test_power_loss_arriving_later_suppresses_an_active_alarm() -> None:
    eng = AlarmEngine("site1")
    drop = finding("secondary_pressure_drop")
    iid = eng.step(T0, [drop])[0].incident_id
    ts = eng.step(T0 + 1, [drop, finding("station_power_loss")])
    assert (drop.alarm_id, "unack", "suppressed", "suppress") in states(ts)
    assert [t.incident_id for t in ts if t.alarm_id == drop.alarm_id] == [iid]
    assert eng.records[drop.alarm_id].incident_id == ""


def test_feeder_power_loss_explains_its_stations() -> None:
    eng = AlarmEngine("site1")
    feeder = finding(
        "station_power_loss", subject="10kV-3", scope="feeder", stations=("hs001", "hs002")
    )
    own = finding("station_power_loss", subject="hs002")
    comm = finding("station_comm_loss", subject="hs001", severity="minor")
    ts = eng.step(T0, [feeder, own, comm])
    by = {t.alarm_id: str(t.to_state) for t in ts}
    assert by == {
        "10kV-3/station_power_loss": "unack",
        "hs002/station_power_loss": "suppressed",
        "hs001/station_comm_loss": "suppressed",
    }
    assert ts[0].station == "" and "hs001" in eng.records["10kV-3/station_power_loss"].stations


def test_monitoring_loss_explains_comm_loss() -> None:
    eng = AlarmEngine("site1")
    mon = finding(
        "monitoring_loss", subject="site1", scope="site", severity="major", stations=("hs001",)
    )
    comm1 = finding("station_comm_loss", subject="hs001", severity="minor")
    comm2 = finding("station_comm_loss", subject="hs009", severity="minor")
    by = {t.alarm_id: str(t.to_state) for t in eng.step(T0, [mon, comm1, comm2])}
    assert by["hs001/station_comm_loss"] == "suppressed"
    assert by["hs009/station_comm_loss"] == "unack"
    # suppressed and then the condition goes away: straight back to normal, never paged
    ts = eng.step(T0 + 5, [mon, comm2])
    assert ("hs001/station_comm_loss", "suppressed", "normal", "clear") in states(ts)


def test_incident_id_is_deterministic_across_replicas() -> None:
    a, b = AlarmEngine("site1"), AlarmEngine("site1")
    f = finding(onset=T0 - 30)
    ia = a.step(T0, [f])[0].incident_id
    ib = b.step(T0 + 1, [f])[0].incident_id  # the other replica ticks a moment later
    assert ia == ib
    assert AlarmEngine("site2").step(T0, [f])[0].incident_id != ia


def test_snapshot_restore_keeps_state_and_incident() -> None:
    a = AlarmEngine("site1")
    f = finding()
    iid = a.step(T0, [f])[0].incident_id
    a.ack(f.alarm_id, "op", T0 + 1)
    b = AlarmEngine("site1")
    b.restore(a.snapshot(only_dirty=False))
    rec = b.records[f.alarm_id]
    assert (rec.state, rec.incident_id, rec.acked_by) == (S.ACKED, iid, "op")
    assert b.step(T0 + 2, [f]) == []  # no re-activation after a restart


def test_escalation_raises_severity_of_open_incident() -> None:
    eng = AlarmEngine("site1")
    f = finding("makeup_over_allowance", severity="minor")
    eng.tuning["makeup_over_allowance"] = AlarmTuning()
    iid = eng.step(T0, [f])[0].incident_id
    t = eng.escalate(iid, "major", T0 + 2400, "crew_on_site overdue")
    assert t is not None and (t.cause, t.severity, t.priority) == ("escalate", "major", 2)
    # the finding still says minor; an escalated incident keeps its raised severity
    eng.step(T0 + 2410, [f])
    assert eng.records[f.alarm_id].severity == "major"
    assert eng.escalate("nope", "major", T0, "x") is None


def test_playbook_severity_is_a_floor() -> None:
    eng = AlarmEngine("site1", severity_floor={"secondary_pressure_drop": "critical"})
    t = eng.step(T0, [finding(severity="minor")])[0]
    assert t.severity == "critical"


def test_unknown_tuning_kind_refused() -> None:
    with pytest.raises(ValueError, match="unknown finding kind"):
        AlarmEngine("site1", tuning={"pressure": {"on_delay_s": 5}})


def test_site_wide_monitoring_loss_explains_every_comm_loss() -> None:
    eng = AlarmEngine("site1")
    mon = finding("monitoring_loss", subject="site1", scope="site", severity="major")
    comms = [finding("station_comm_loss", subject=f"hs{i:03d}", severity="minor") for i in range(5)]
    by = {t.alarm_id: str(t.to_state) for t in eng.step(T0, [mon, *comms])}
    assert by.pop("site1/monitoring_loss") == "unack"
    assert set(by.values()) == {"suppressed"} and len(by) == 5
