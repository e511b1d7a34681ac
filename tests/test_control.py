"""Select-before-operate rules (alarms/control.py) through AlarmService.command.

Nothing is written unless the site enables control, the station allow-lists the point,
and the same operator operates the same step's selection within its window. Refusals,
writes that fail and confirmations all land in the dispatch log. The write path is the
real daemon's `Poller.write` to the real simulator.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from alarms.control import ControlSettings
from alarms.dispatch_log import query_log
from alarms.service import AlarmService, StationInfo
from stationd.findings import Finding
from stationd.poller import LinkState
from tests.daemon_harness import fast_config, fleet, until

T0 = float(int(time.time()))


def drop(onset: float = T0) -> Finding:
    return Finding(
        kind="secondary_pressure_drop",
        subject="hs001",
        scope="station",
        severity="critical",
        onset=onset,
        value=0.12,
        message_zh="二次供水压力骤降 0.12 MPa",
        message_en="secondary supply pressure fell 0.12 MPa",
    )


def cmd(command: str, incident: str, step: str, operator: str = "刘工", **kw: Any) -> dict:
    return {
        "request_id": f"r-{command}-{step}-{time.monotonic_ns()}",
        "operator": operator,
        "command": command,
        "incident": incident,
        "step": step,
        **kw,
    }


def control_log(state_dir: Path) -> list[tuple[str, str]]:
    return [(e.data["action"], e.data["detail"]) for e in query_log(state_dir, kinds=["control"])]


async def open_incident(svc: AlarmService) -> str:
    ts = await svc.on_tick(T0, [drop()])
    return ts[0].incident_id


async def test_control_is_refused_while_the_site_has_not_enabled_it(tmp_path: Path) -> None:
    svc = AlarmService(
        "site1",
        tmp_path / "state",
        stations=[StationInfo("hs001", "阳光花园换热站", control_allow=("circ_pump_running",))],
    )
    await svc.start()
    try:
        incident = await open_incident(svc)
        res = await svc.command(cmd("select", incident, "stop_circ_pump"))
        assert not res["ok"] and "disabled" in res["error"] and "遥控未启用" in res["error"]
        # an operate naming a made-up selection is refused the same way
        res = await svc.command(cmd("operate", incident, "stop_circ_pump", select_id="sel-1"))
        assert not res["ok"] and "disabled" in res["error"]
    finally:
        await svc.stop()
    assert [a for a, _ in control_log(tmp_path / "state")] == ["refused", "refused"]


async def test_enabled_control_without_a_writer_refuses(tmp_path: Path) -> None:
    svc = AlarmService(
        "site1",
        tmp_path / "state",
        stations=[StationInfo("hs001", control_allow=("circ_pump_running",))],
        control=ControlSettings(enabled=True),
    )
    await svc.start()
    try:
        incident = await open_incident(svc)
        res = await svc.command(cmd("select", incident, "stop_circ_pump"))
        assert not res["ok"] and "no control writer" in res["error"]
        # a step with no control action, and a step that does not exist
        res = await svc.command(cmd("select", incident, "report"))
        assert not res["ok"] and "no control action" in res["error"]
        res = await svc.command(cmd("select", incident, "fly_to_the_moon"))
        assert not res["ok"] and "stop_circ_pump" in res["error"]  # the known steps are named
        res = await svc.command(cmd("select", "no-such-incident", "stop_circ_pump"))
        assert not res["ok"] and "no open playbook" in res["error"]
        # a config reload that drops the point from the allow list takes effect at once
        svc.stations = {"hs001": StationInfo("hs001")}
        res = await svc.command(cmd("select", incident, "stop_circ_pump"))
        assert not res["ok"] and "not allow-listed" in res["error"]
    finally:
        await svc.stop()


async def test_operator_must_match_and_a_lost_link_fails_the_write(tmp_path: Path) -> None:
    cfg = fast_config().with_sections(alarms={"control": {"enabled": True}})
    async with fleet(cfg, tmp_path) as (sim, daemon):
        await asyncio.wait_for(daemon.ready.wait(), 20)
        svc = daemon.alarms
        sim.inject(kind="pipe_burst", station="hs001", size=300)
        alarm_id = "hs001/secondary_pressure_drop"
        await until(daemon, lambda: alarm_id in {r.alarm_id for r in svc.engine.active()})
        incident = svc.engine.records[alarm_id].incident_id

        sel = await svc.command(cmd("select", incident, "stop_circ_pump", operator="刘工"))
        assert sel["ok"], sel
        assert sel["result"]["station_name"] == "阳光花园换热站"
        res = await svc.command(
            cmd("operate", incident, "stop_circ_pump", operator="王工", select_id=sel["result"]["select_id"])
        )  # fmt: skip
        assert not res["ok"] and "made by 刘工" in res["error"]

        # the PLC stops answering before the operate: the write fails, nothing is confirmed
        sim.inject(kind="comm_loss", station="hs001")
        sup = daemon.poller.supervisors[daemon.frame.index["hs001"]]
        await until(daemon, lambda: sup.state != LinkState.CONNECTED)
        res = await svc.command(
            cmd("operate", incident, "stop_circ_pump", operator="刘工", select_id=sel["result"]["select_id"])
        )  # fmt: skip
        assert not res["ok"] and res["error"].startswith("failed: write failed")
        assert res["result"]["written"] is False
        assert sim.plant.circ_cmd[sim.plant.index["hs001"]]  # the pump still runs
        inst = svc.instances[incident]
        assert inst.step("stop_circ_pump").status == "pending"

    log = control_log(tmp_path / "state" / "alarms")
    assert [a for a, _ in log] == ["selected", "refused", "operated", "failed"]
    assert "not connected" in log[-1][1]
