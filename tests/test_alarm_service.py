"""AlarmService without a broker: pages, playbooks, escalation, commands, restart, log."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from alarms.model import FieldReading, PagerEvent
from alarms.service import AlarmService, StationInfo
from stationd.findings import Finding

T0 = 1_764_000_000.0
STATIONS = [StationInfo("hs001", "幸福里换热站", branch="东线"), StationInfo("hs002", "阳光小区站")]


def drop(subject: str = "hs001", onset: float = T0) -> Finding:
    return Finding(
        kind="secondary_pressure_drop",
        subject=subject,
        scope="station",
        severity="critical",
        onset=onset,
        value=0.12,
        message_zh="二次供水压力 60 秒内下降 0.12 MPa",
        message_en="secondary supply pressure fell 0.12 MPa within 60 s",
    )


def leak(onset: float = T0) -> Finding:
    return Finding(
        kind="makeup_over_allowance",
        subject="hs002",
        scope="station",
        severity="minor",
        onset=onset,
        value=0.009,
        message_zh="补水率 0.9%，超过 0.5% 允许值",
        message_en="make-up 0.9 % of circulation, above the 0.5 % allowance",
    )


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(tmp_path: Path, clock: Clock, operators: list[str] | None = None) -> AlarmService:
    svc = AlarmService(
        "site1",
        tmp_path / "state",
        site_name="测试热力公司",
        stations=STATIONS,
        operators=operators,
        clock=clock,
        tuning={"makeup_over_allowance": {"on_delay_s": 0, "rearm_s": 0}},
    )
    return svc


async def test_pressure_collapse_starts_playbook_7_1_and_pages_once(tmp_path: Path) -> None:
    clock = Clock(T0)
    svc = make(tmp_path, clock)
    pages: list[PagerEvent] = []
    svc.pager_hooks.append(pages.append)
    await svc.start()
    try:
        ts = await svc.on_tick(T0, [drop()])
        assert [(t.cause, t.playbook_id) for t in ts] == [("activate", "secondary_pressure_drop")]
        iid = ts[0].incident_id
        inst = svc.instances[iid]
        assert inst.steps[0].id == "stop_circ_pump" and inst.steps[0].due == T0 + 300
        assert [(p.action, p.incident_id) for p in pages] == [("trigger", iid)]
        p = pages[0]
        assert p.station_name == "幸福里换热站" and "停止循环泵" in p.first_steps[0]
        assert p.summary_zh.startswith("幸福里换热站 二次系统压力突然大幅下降")
        assert p.starts_at == T0 and p.ends_at is None and p.severity == "critical"

        await svc.on_tick(T0 + 1, [drop()])
        assert len(pages) == 1
        active = svc.active_alarms()
        assert [(a["alarm_id"], a["state"], a["station_name"]) for a in active] == [
            ("hs001/secondary_pressure_drop", "unack", "幸福里换热站")
        ]
    finally:
        await svc.stop()


async def test_restart_restores_state_and_does_not_repage(tmp_path: Path) -> None:
    clock = Clock(T0)
    svc = make(tmp_path, clock)
    pages: list[PagerEvent] = []
    svc.pager_hooks.append(pages.append)
    await svc.start()
    iid = (await svc.on_tick(T0, [drop()]))[0].incident_id
    await svc.stop()

    svc2 = make(tmp_path, clock)
    pages2: list[PagerEvent] = []
    svc2.pager_hooks.append(pages2.append)
    await svc2.start()
    try:
        assert svc2.engine.records["hs001/secondary_pressure_drop"].incident_id == iid
        assert iid in svc2.instances
        assert await svc2.on_tick(T0 + 1, [drop()]) == []
        assert pages2 == []  # already paged before the restart
        res = await svc2.command(
            {"request_id": "r1", "operator": "张工", "command": "ack", "incident_id": iid}
        )
        assert res["ok"], res
        assert [(p.action, p.operator) for p in pages2] == [("acknowledge", "张工")]
    finally:
        await svc2.stop()


async def test_page_recorded_but_not_handed_over_is_delivered_after_restart(
    tmp_path: Path,
) -> None:
    clock = Clock(T0)
    svc = make(tmp_path, clock)

    def crash(event: PagerEvent) -> None:
        raise KeyboardInterrupt  # the process dies between recording and handing over

    svc.pager_hooks.append(crash)
    await svc.start()
    with pytest.raises(KeyboardInterrupt):
        await svc.on_tick(T0, [drop()])
    assert svc.store is not None and svc.log is not None
    svc.store.close()
    svc.log.close()

    svc2 = make(tmp_path, clock)
    pages: list[PagerEvent] = []
    svc2.pager_hooks.append(pages.append)
    await svc2.start()
    try:
        assert [p.action for p in pages] == ["trigger"]
    finally:
        await svc2.stop()


async def test_missed_leak_deadline_escalates_through_pager(tmp_path: Path) -> None:
    clock = Clock(T0)
    svc = make(tmp_path, clock)
    pages: list[PagerEvent] = []
    svc.pager_hooks.append(pages.append)
    await svc.start()
    try:
        iid = (await svc.on_tick(T0, [leak()]))[0].incident_id
        clock.t = T0 + 60
        r = await svc.command(
            {
                "request_id": "a",
                "operator": "调度王",
                "command": "step_done",
                "incident": iid,
                "step": "dispatch_work_order",
            }
        )
        assert r["ok"], r
        await svc.on_tick(T0 + 39 * 60, [leak()])
        assert [p.action for p in pages] == ["trigger"]
        ts = await svc.on_tick(T0 + 41 * 60, [leak()])
        assert [(t.cause, t.severity) for t in ts] == [("escalate", "major")]
        esc = pages[-1]
        assert (esc.action, esc.step_id, esc.severity) == ("escalate", "crew_on_site", "major")
        await svc.on_tick(T0 + 42 * 60, [leak()])
        assert [p.action for p in pages] == ["trigger", "escalate"]  # once per step

        stats = await svc.stats()
        assert stats["alarms_unack"] == 1 and stats["pages_sent"] == 2
        assert stats["playbooks_open"] == 1
        assert svc.log is not None
        kinds = [e.kind for e in svc.log.query(incident=iid)]
        assert kinds.count("escalation") == 1 and "step" in kinds and "transition" in kinds
    finally:
        await svc.stop()


async def test_commands_refused_change_nothing(tmp_path: Path) -> None:
    clock = Clock(T0)
    svc = make(tmp_path, clock, operators=["张工", "调度王"])
    await svc.start()
    try:
        iid = (await svc.on_tick(T0, [drop()]))[0].incident_id
        bad = [
            b"{not json",
            b"[1, 2]",
            {"request_id": "r", "operator": "张工", "command": "reboot"},
            {"request_id": "r", "operator": "张工", "command": "ack"},
            {"request_id": "r", "operator": "张工", "command": "ack", "alarm_id": "x/y"},
            {
                "request_id": "r",
                "operator": "张工",
                "command": "shelve",
                "alarm_id": "hs001/secondary_pressure_drop",
                "minutes": -5,
            },
            {
                "request_id": "r",
                "operator": "张工",
                "command": "ack",
                "alarm_id": "hs001/secondary_pressure_drop",
                "extra": 1,
            },
            {
                "request_id": "r",
                "operator": "路人",
                "command": "ack",
                "alarm_id": "hs001/secondary_pressure_drop",
            },
            {
                "request_id": "r",
                "operator": "张工",
                "command": "step_skip",
                "incident": iid,
                "step": "stop_circ_pump",
                "reason": "",
            },
            {
                "request_id": "r",
                "operator": "张工",
                "command": "step_done",
                "incident": iid,
                "step": "no_such_step",
            },
            {
                "request_id": "r",
                "operator": "张工",
                "command": "field_reading",
                "station": "hs001",
                "signal": "secondary_supply_pressure",
                "value": 99,
            },
            {
                "request_id": "r",
                "operator": "张工",
                "command": "field_reading",
                "station": "hs404",
                "signal": "secondary_supply_pressure",
                "value": 0.3,
            },
        ]
        for raw in bad:
            r = await svc.command(raw)
            assert r["ok"] is False and r["error"], (raw, r)
        rec = svc.engine.records["hs001/secondary_pressure_drop"]
        assert rec.state == "unack"
        assert all(s.status == "pending" for s in svc.instances[iid].steps)
    finally:
        await svc.stop()


async def test_field_reading_note_and_dispatch_log_queries(tmp_path: Path) -> None:
    clock = Clock(T0)
    svc = make(tmp_path, clock)
    readings: list[FieldReading] = []
    svc.field_reading_hooks.append(readings.append)
    copied: list[str] = []
    svc.log_hooks.append(lambda e: copied.append(e.kind))
    await svc.start()
    try:
        await svc.on_tick(T0, [drop("hs001"), leak()])
        clock.t = T0 + 120
        r = await svc.command(
            {
                "request_id": "f1",
                "operator": "运行工刘",
                "command": "field_reading",
                "station": "hs001",
                "signal": "secondary_supply_pressure",
                "value": 0.31,
            }
        )
        assert r["ok"], r
        assert readings == [
            FieldReading(T0 + 120, "hs001", "secondary_supply_pressure", 0.31, "运行工刘")
        ]
        r = await svc.command(
            {
                "request_id": "n1",
                "operator": "调度王",
                "command": "note",
                "text": "已通知热源调度",
                "station": "hs001",
            }
        )
        assert r["ok"], r
        assert svc.log is not None
        hs1 = svc.log.query(station="hs001")
        assert [e.kind for e in hs1] == [
            "transition",
            "command",
            "field_reading",
            "command",
            "note",
        ]
        assert copied == ["daemon", "transition", "transition"] + [e.kind for e in hs1[1:]]
        assert hs1[2].operator == "运行工刘" and "二次供水压力" in hs1[2].text_zh
        assert [e.kind for e in svc.log.query(station="hs002")] == ["transition"]
        assert svc.log.query(since=T0 + 60, kinds=["note"])[0].text_zh == "已通知热源调度"
        assert svc.log.query(until=T0 + 1, kinds=["transition"])[0].time == T0
        assert "运行工刘" in hs1[2].line()
        # append-only by construction
        db = sqlite3.connect(svc.log.path)
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM log")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE log SET operator = 'x'")
        db.close()
    finally:
        await svc.stop()


async def test_shelve_unshelve_and_step_skip_over_commands(tmp_path: Path) -> None:
    clock = Clock(T0)
    svc = make(tmp_path, clock)
    pages: list[PagerEvent] = []
    svc.pager_hooks.append(pages.append)
    await svc.start()
    try:
        iid = (await svc.on_tick(T0, [drop()]))[0].incident_id
        r = await svc.command(
            {
                "request_id": "s",
                "operator": "op",
                "command": "step_skip",
                "incident": iid,
                "step": "check_makeup_pump",
                "reason": "补水泵已在检修",
            }
        )
        assert r["ok"] and r["result"]["status"] == "skipped"
        r = await svc.command(
            {
                "request_id": "sh",
                "operator": "op",
                "command": "shelve",
                "alarm_id": "hs001/secondary_pressure_drop",
                "minutes": 10,
                "reason": "维修中",
            }
        )
        assert r["ok"] and r["result"]["state"] == "shelved", r
        assert [p.action for p in pages] == ["trigger", "resolve"]
        # the incident closed by shelving; its playbook keeps its pending steps (open)
        assert svc.instances[iid].incident_open is False
        r = await svc.command(
            {
                "request_id": "u",
                "operator": "op",
                "command": "unshelve",
                "alarm_id": "hs001/secondary_pressure_drop",
            }
        )
        assert r["ok"] and r["result"]["state"] == "normal"
        ts = await svc.on_tick(T0 + 60, [drop()])
        assert ts[0].cause == "activate" and ts[0].incident_id != iid
        # the shelved incident's playbook was never finished: closed a day later, logged
        await svc.on_tick(T0 + 10 + 24 * 3600, [drop()])
        assert iid not in svc.instances
        assert svc.log is not None
        auto = [e for e in svc.log.query(incident=iid, kinds=["step"]) if e.operator == "stationd"]
        assert len(auto) == 10 and "未回报" in auto[0].text_zh
    finally:
        await svc.stop()


def notice(onset: float = T0) -> Finding:
    return Finding(
        kind="flow_allocation",
        subject="hs002",
        scope="station",
        severity="notice",
        onset=onset,
        value=0.4,
        message_zh="循环流量仅为配置值的 40%",
        message_en="circulating flow is 40 % of its allocation",
    )


async def test_playbook_closes_when_alarm_normal_and_steps_finished(tmp_path: Path) -> None:
    clock = Clock(T0)
    svc = AlarmService(
        "site1",
        tmp_path / "state",
        stations=STATIONS,
        clock=clock,
        tuning={"flow_allocation": {"off_delay_s": 0, "rearm_s": 0}},
    )
    await svc.start()
    try:
        iid = (await svc.on_tick(T0, [notice()]))[0].incident_id
        for step in ("review", "rebalance"):
            r = await svc.command(
                {
                    "request_id": step,
                    "operator": "op",
                    "command": "step_done",
                    "incident": iid,
                    "step": step,
                }
            )
            assert r["ok"], r
        assert svc.instances[iid].status == "open"  # the alarm is still up
        await svc.on_tick(T0 + 10, [])
        r = await svc.command(
            {
                "request_id": "ack",
                "operator": "op",
                "command": "ack",
                "alarm_id": "hs002/flow_allocation",
            }
        )
        assert r["ok"] and r["result"]["state"] == "normal", r
        assert iid not in svc.instances
    finally:
        await svc.stop()
    svc2 = AlarmService("site1", tmp_path / "state", stations=STATIONS, clock=clock)
    await svc2.start()
    try:
        assert svc2.instances == {} and svc2.active_alarms() == []
    finally:
        await svc2.stop()


async def test_cli_helpers_read_state_and_log_from_disk(tmp_path: Path) -> None:
    from alarms.dispatch_log import query_log
    from alarms.store import read_alarms

    clock = Clock(T0)
    svc = make(tmp_path, clock)
    await svc.start()
    try:
        await svc.on_tick(T0, [drop(), leak()])
        alarms = read_alarms(tmp_path / "state")
        assert sorted(a["alarm_id"] for a in alarms) == [
            "hs001/secondary_pressure_drop",
            "hs002/makeup_over_allowance",
        ]
        entries = query_log(tmp_path / "state", station="hs002", kinds=["transition"])
        assert len(entries) == 1 and "补水率" in entries[0].text_zh
    finally:
        await svc.stop()
    with pytest.raises(FileNotFoundError, match="no dispatch log"):
        query_log(tmp_path / "elsewhere")


def test_from_config_reads_alarms_and_mqtt_sections(tmp_path: Path) -> None:
    from stationd.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "config" / "stations.yaml")
    svc = AlarmService.from_config(cfg, tmp_path)
    assert svc.site == cfg.site.id and svc.mqtt_settings is None
    assert all(svc.stations[s.id].name == s.name for s in cfg.stations)

    good = cfg.with_sections(
        alarms={"operators": ["张工"], "tuning": {"sensor_fault": {"on_delay_s": 120}}},
        mqtt={
            "host": "127.0.0.1",
            "port": 1883,
            "username": "stationd",
            "password_env": "STATIOND_MQTT_PASSWORD",
        },
    )
    svc = AlarmService.from_config(good, tmp_path)
    assert svc.operators == frozenset({"张工"})
    assert svc.engine.tuning["sensor_fault"].on_delay_s == 120
    assert svc.mqtt_settings is not None and svc.mqtt_settings.username == "stationd"

    # the sections are checked with the whole config, before any service is built
    with pytest.raises(ValueError, match=r"alarms\.tuning\.sensor_fault\.on_dely_s"):
        cfg.with_sections(alarms={"tuning": {"sensor_fault": {"on_dely_s": 1}}})
    # a password in the YAML itself is refused: env var or file only
    with pytest.raises(ValueError, match=r"mqtt\.password"):
        cfg.with_sections(mqtt={"host": "x", "password": "secret"})


async def test_restart_hands_active_incidents_to_the_pager_without_re_paging(
    tmp_path: Path,
) -> None:
    clock = Clock(T0)
    svc = make(tmp_path, clock)
    paged: list[PagerEvent] = []
    svc.pager_hooks.append(paged.append)
    await svc.start()
    await svc.on_tick(T0, [drop()])
    await svc.stop()
    triggers = [e for e in paged if e.action == "trigger"]
    assert len(triggers) == 1

    again = make(tmp_path, clock)
    repaged: list[PagerEvent] = []
    again.pager_hooks.append(repaged.append)
    await again.start()
    try:
        restore = again.active_pages()
        assert [e.incident_id for e in restore] == [triggers[0].incident_id]
        assert (
            restore[0].action == "trigger"
            and restore[0].alarm_id == "hs001/secondary_pressure_drop"
        )
        assert repaged == []  # restoring is for the adapters' re-send, not a new page
    finally:
        await again.stop()
