"""The `alarm` measurement: a transition point (changed=1), then the alarm's state on
the same series every tick while it is not normal, so dashboards draw bars."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from alarms.engine import AlarmRecord
from alarms.model import AlarmState
from stationd.historian import EmbeddedStore, Historian
from stationd.historian.lineproto import parse_line

T0 = 1_796_000_000.0


async def test_state_is_written_every_tick_on_the_incident_series(tmp_path):
    h = Historian.from_config(
        {"embedded": {"flush_interval_s": 0.05, "retention_days": 3650}},
        "site1",
        [{"id": "hs001", "name": "幸福里", "branch": "东线"}],
        tmp_path,
        registry=CollectorRegistry(),
    )
    await h.start()
    rec = AlarmRecord(
        alarm_id="hs001/station_comm_loss", kind="station_comm_loss", subject="hs001",
        station="hs001", state=AlarmState.UNACK, severity="major", value=3.0,
        incident_id="inc-1", since=T0,
    )  # fmt: skip
    quiet = AlarmRecord(
        alarm_id="hs001/sensor_fault", kind="sensor_fault", subject="hs001", station="hs001"
    )
    h.write_alarm(
        {"time": T0, "alarm_id": rec.alarm_id, "incident_id": "inc-1", "to_state": "unack",
         "kind": rec.kind, "station": "hs001", "severity": "major", "value": 3.0,
         "priority": 2},
    )  # fmt: skip
    for k in range(3):  # the tick of the transition itself is not written twice
        h.write_alarm_states(T0 + k, [rec, quiet])
    rec.state, rec.since = AlarmState.ACKED, T0 + 2.5
    h.write_alarm_states(T0 + 3, [rec])
    assert await h.forwarder.wait_empty(10.0)
    await h.stop()
    store = EmbeddedStore(tmp_path / "history.db")
    points = [parse_line(f"{s} {f} {ts}") for s, ts, _, f in store.rows(0, 2**62, "alarm")]
    assert [(p.ts, p.fields["state"]) for p in points] == [
        (int(T0 * 1000), 1.0),
        (int((T0 + 1) * 1000), 1.0),
        (int((T0 + 2) * 1000), 1.0),
        (int((T0 + 3) * 1000), 2.0),
    ]
    assert {p.series for p in points} == {points[0].series}  # one series: the incident
    assert points[0].fields["changed"] == 1.0 and "changed" not in points[1].fields
    assert points[1].fields["severity"] == 2.0 and points[1].fields["value"] == 3.0
