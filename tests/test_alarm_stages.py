"""Each stage of the alarm service on its own (alarms/stages.py, alarms/pager/stage.py,
alarms/handlers.py): what it reads from a batch, what it adds, and nothing else."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from alarms import commands as cmds
from alarms.batch import Batch
from alarms.dispatch_log import DispatchLog
from alarms.engine import AlarmEngine, CommandError
from alarms.handlers import HANDLERS, ack, field_reading
from alarms.instances import PlaybookInstance
from alarms.model import AlarmState, FieldReading, PagerEvent
from alarms.mqtt import MqttBridge
from alarms.pager.stage import DeliveryStage, PagingStage, pager_action
from alarms.playbooks import load_playbooks
from alarms.settings import MqttSettings, StationInfo
from alarms.stages import HookStage, LogStage, MqttStage, PlaybookStage, StoreStage
from alarms.store import StateStore
from stationd.findings import Finding
from tests.ops_helpers import MqttWatch, wait_for
from tests.servers import start_mosquitto

T0 = 1_764_000_000.0
LIB = load_playbooks()
STATIONS = {"hs001": StationInfo("hs001", "幸福里换热站")}


def drop(onset: float = T0) -> Finding:
    return Finding(
        kind="secondary_pressure_drop",
        subject="hs001",
        scope="station",
        severity="critical",
        onset=onset,
        value=0.12,
        message_zh="二次供水压力骤降",
        message_en="secondary pressure fell",
    )


def engine() -> AlarmEngine:
    return AlarmEngine("site1", severity_floor=LIB.severity_floor())


async def opened(eng: AlarmEngine, instances: dict[str, PlaybookInstance]) -> Batch:
    batch = Batch(T0, eng.step(T0, [drop()]))
    await PlaybookStage(eng, instances, lambda: LIB).run(batch)
    return batch


async def test_playbook_stage_opens_closes_and_escalates_missed_deadlines() -> None:
    eng, instances = engine(), {}
    batch = await opened(eng, instances)
    (t,) = batch.transitions
    assert t.playbook_id == LIB.for_kind("secondary_pressure_drop").id  # type: ignore[union-attr]
    assert set(instances) == batch.changed == {t.incident_id}
    inst = instances[t.incident_id]
    first_due = min(s.due for s in inst.steps if s.due is not None)
    late = Batch(first_due + 1)
    await PlaybookStage(eng, instances, lambda: LIB).run(late)
    assert late.escalations and late.escalations[0][0].cause == "escalate"
    assert [e.kind for e in late.entries][:1] == ["escalation"]
    assert late.events[0]["type"] == "escalation"
    # acknowledged, then the condition clears: the playbook's incident closes with it
    eng.ack("hs001/secondary_pressure_drop", "王工", first_due + 2)
    eng.tuning["secondary_pressure_drop"] = eng.tuning["secondary_pressure_drop"].model_copy(
        update={"off_delay_s": 0.0}
    )
    cleared = Batch(first_due + 3, eng.step(first_due + 3, []))
    await PlaybookStage(eng, instances, lambda: LIB).run(cleared)
    assert [t.cause for t in cleared.transitions] == ["clear"]
    assert not inst.incident_open and t.incident_id in cleared.changed


async def test_paging_stage_pages_raise_ack_resolve_and_escalation_once_each() -> None:
    eng, instances = engine(), {}
    batch = await opened(eng, instances)
    paging = PagingStage("site1", eng, lambda: LIB, lambda: STATIONS)
    await paging.run(batch)
    ((key, ev),) = batch.pages
    assert ev.action == "trigger" and ev.station_name == "幸福里换热站"
    assert key.startswith(f"{ev.incident_id}/trigger/")
    acked = eng.ack("hs001/secondary_pressure_drop", "王工", T0 + 5)
    assert pager_action(acked) == "acknowledge"
    shelved = eng.shelve("hs001/secondary_pressure_drop", 30, "王工", T0 + 6)
    assert [pager_action(t) for t in shelved] == ["resolve"]  # a raised alarm hidden: resolved
    assert pager_action(eng.unshelve("hs001/secondary_pressure_drop", "王工", T0 + 7)) == ""


async def test_store_then_delivery_hand_each_page_over_once(tmp_path: Path) -> None:
    eng, instances = engine(), {}
    batch = await opened(eng, instances)
    await PagingStage("site1", eng, lambda: LIB, lambda: STATIONS).run(batch)
    store = StateStore(tmp_path / "alarms.sqlite")
    got: list[PagerEvent] = []
    delivery = DeliveryStage(store, [got.append])
    try:
        await StoreStage(store, eng, instances).run(batch)
        assert batch.new_pages
        await delivery.run(batch)
        # the same batch again (a replay after a crash): nothing new, nothing re-paged
        await StoreStage(store, eng, instances).run(batch)
        assert not batch.new_pages
        await delivery.run(batch)
        await delivery.deliver()
        assert [e.action for e in got] == ["trigger"] and delivery.delivered == 1
    finally:
        store.close()


async def test_log_stage_writes_the_command_transitions_then_the_rest(tmp_path: Path) -> None:
    eng, instances = engine(), {}
    batch = await opened(eng, instances)
    first_due = min(s.due for s in instances[batch.transitions[0].incident_id].steps if s.due)
    await PlaybookStage(eng, instances, lambda: LIB).run(late := Batch(first_due + 1))
    dlog = DispatchLog(tmp_path / "dispatch_log.sqlite")
    copied: list[str] = []
    try:
        stage = LogStage(dlog, [lambda e: copied.append(e.kind)], lambda: STATIONS)
        await stage.run(batch)
        await stage.run(late)  # the escalation's own row, not a transition row
        rows = dlog.query()
    finally:
        dlog.close()
    assert [r.kind for r in rows] == ["transition", "escalation"] == copied
    assert rows[0].text_zh.startswith("幸福里换热站 secondary_pressure_drop：正常 → 报警未确认")


async def test_hook_stage_reaches_every_hook_even_after_one_fails() -> None:
    eng, instances = engine(), {}
    batch = await opened(eng, instances)
    reading = FieldReading(T0, "hs001", "secondary_supply_pressure", 0.3, "王工")
    batch.field_readings.append(reading)
    seen: list[object] = []

    def broken(_: object) -> None:
        raise RuntimeError("a broken sink")

    await HookStage([broken, seen.append], [broken, seen.append]).run(batch)
    assert seen == [batch.transitions[0], reading]


def test_every_command_has_one_handler_and_a_permission() -> None:
    kinds = {"ack", "shelve", "unshelve", "step_done", "step_skip", "note", "field_reading",
             "select", "operate"}  # fmt: skip
    assert {m.model_fields["command"].annotation.__args__[0] for m in HANDLERS} == kinds
    for spec in HANDLERS.values():
        assert spec.permission and (spec.handle is None) != (spec.control is None)


def test_handlers_refuse_what_they_cannot_do_and_record_what_they_did() -> None:
    class Desk:
        def __init__(self) -> None:
            self.engine = engine()
            self.instances: dict[str, PlaybookInstance] = {}
            self.stations = STATIONS

    desk, caller = Desk(), cmds.Caller("王工")
    batch = Batch(T0)
    with pytest.raises(CommandError, match="not open"):
        ack(desk, cmds.parse_command({"request_id": "r", "operator": "x", "command": "ack",
                                      "incident_id": "nope"}), caller, batch)  # fmt: skip
    c = cmds.parse_command({"request_id": "r", "operator": "x", "command": "field_reading",
                            "station": "hs001", "signal": "secondary_supply_pressure",
                            "value": 0.31})  # fmt: skip
    field_reading(desk, c, caller, batch)
    assert batch.field_readings[0].operator == "王工"  # the caller, not the payload's name
    assert [e.kind for e in batch.entries] == ["field_reading"]
    with pytest.raises(CommandError, match="physical range"):
        field_reading(desk, c.model_copy(update={"value": 99.0}), caller, Batch(T0))


@pytest.mark.integration
async def test_mqtt_stage_publishes_the_alarm_then_clears_it(tmp_path: Path) -> None:
    eng, instances = engine(), {}
    with start_mosquitto(tmp_path) as broker:
        bridge = MqttBridge(MqttSettings(port=broker.port), "site1", tmp_path / "outbox.sqlite")
        watch = MqttWatch(broker.port, "heating/site1", "stage-test")
        await wait_for(watch.subscribed.is_set, 10)
        await bridge.start()
        try:
            stage = MqttStage(
                bridge, "site1", "测试", eng, instances, lambda: LIB, lambda: STATIONS
            )
            batch = await opened(eng, instances)
            await stage.run(batch)
            await asyncio.wait_for(bridge.drained(), 10)
            topic = "heating/site1/alarm/hs001/secondary_pressure_drop"
            docs = await wait_for(lambda: watch.docs(topic), 10)
            assert docs[-1]["state"] == "unack" and docs[-1]["station_name"] == "幸福里换热站"
            assert docs[-1]["state_zh"] == "报警未确认"
            events = await wait_for(lambda: watch.events(), 10)
            assert events[0]["to_state"] == "unack"
            # the alarm back to normal: its retained document is emptied
            eng.tuning["secondary_pressure_drop"] = eng.tuning[
                "secondary_pressure_drop"
            ].model_copy(update={"off_delay_s": 0.0})
            eng.ack("hs001/secondary_pressure_drop", "王工", T0 + 1)
            cleared = Batch(T0 + 2, eng.step(T0 + 2, []))
            await stage.run(cleared)
            await asyncio.wait_for(bridge.drained(), 10)
            assert eng.records["hs001/secondary_pressure_drop"].state is AlarmState.NORMAL
            await wait_for(lambda: len(watch.events()) >= 2, 10)
        finally:
            await bridge.stop()
            watch.close()
