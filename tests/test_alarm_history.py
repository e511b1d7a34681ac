"""DESIGN: every transition, command and step reaches the historian too — and so do
controls, notes and manual field readings. The alarm service wired to a real historian
(embedded store) as the daemon wires it (`record_alarm_history`)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from alarms.service import AlarmService, StationInfo
from stationd.app import record_alarm_history
from stationd.findings import Finding
from stationd.historian import EmbeddedStore, Historian, export
from stationd.historian.lineproto import parse_line

T0 = 1_764_000_000.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def test_commands_steps_readings_and_transitions_reach_the_historian(
    tmp_path: Path,
) -> None:
    historian = Historian.from_config(
        {"embedded": {"flush_interval_s": 0.05, "retention_days": 3650}},
        "site1",
        [{"id": "hs001", "name": "幸福里换热站", "branch": "东线"}],
        tmp_path,
        registry=CollectorRegistry(),
    )
    clock = Clock(T0)
    svc = AlarmService(
        "site1", tmp_path / "alarms", stations=[StationInfo("hs001", "幸福里换热站")], clock=clock
    )
    record_alarm_history(svc, historian)
    await historian.start()
    await svc.start()
    try:
        drop = Finding("secondary_pressure_drop", "hs001", "station", "critical", T0, 0.12,
                       "二次供水压力骤降", "secondary pressure fell")  # fmt: skip
        (t,) = await svc.on_tick(T0, [drop])
        step = svc.instances[t.incident_id].steps[0].id

        def cmd(command: str, **kw: object) -> dict[str, object]:
            return {"request_id": f"r-{command}", "operator": "王工", "command": command, **kw}

        clock.t = T0 + 10
        assert (await svc.command(cmd("ack", alarm_id=t.alarm_id)))["ok"]
        clock.t = T0 + 20
        assert (await svc.command(cmd("step_done", incident=t.incident_id, step=step)))["ok"]
        clock.t = T0 + 30
        reading = cmd("field_reading", station="hs001", signal="secondary_supply_pressure",
                      value=0.31)  # fmt: skip
        assert (await svc.command(reading))["ok"]
        clock.t = T0 + 40
        assert not (await svc.command(cmd("unshelve", alarm_id=t.alarm_id)))["ok"]  # refused
    finally:
        await svc.stop()
        assert await historian.forwarder.wait_empty(10.0)
        await historian.stop()
    store = EmbeddedStore(tmp_path / "history.db")
    try:
        points = [parse_line(x.rstrip("\n")) for x in export(store, None, None, "lp")]
    finally:
        store.close()
    by = {m: [p for p in points if p.measurement == m] for m in ("alarm", "dispatch", "field_reading")}  # fmt: skip
    assert [p.fields["state"] for p in by["alarm"]] == [1.0, 2.0]  # unack, then acked
    dispatch = sorted(
        (round(p.ts / 1e9 - T0), p.tags["kind"], p.tags.get("command", p.tags.get("step")))
        for p in by["dispatch"]
    )
    assert dispatch == [
        (10, "command", "ack"),
        (20, "command", "step_done"),
        (20, "step", step),
        (30, "command", "field_reading"),
        (40, "command", "unshelve"),
    ]
    ok = sorted((p.ts, p.fields.get("ok")) for p in by["dispatch"] if p.tags["kind"] == "command")
    assert [x for _, x in ok] == [1.0, 1.0, 1.0, 0.0]
    assert all(p.tags["operator"] == "王工" for p in by["dispatch"])
    (manual,) = by["field_reading"]
    assert manual.tags == {"site": "site1", "station": "hs001", "operator": "王工"}
    assert manual.fields == {"secondary_supply_pressure": 0.31}
    assert manual.ts == int((T0 + 30) * 1e9)
