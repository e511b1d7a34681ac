"""End to end: the real daemon polls the real simulator; alarms reach a real Mosquitto and a
real Alertmanager; the dispatch desk (CLI, run as a subprocess) acks and operates.

Faults are injected into the simulated plant, never into the daemon: pipe_burst must
open playbook 7.1, power_loss playbook 7.2 with the station's pressure alarm suppressed,
comm_loss a station comm-loss alarm. Every MQTT document is validated against
alarms/schemas. Select-before-operate really stops the pump in the simulated plant.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from stationd.app import Daemon
from stationd.config import Config
from stationd.dispatch_cli import render_alarms
from stationd.liveview import width
from tests.daemon_harness import fast_config, fleet, until
from tests.servers import Alertmanager, Mosquitto, start_alertmanager, start_mosquitto
from tools.simulate_station.simulator import Simulator, dump_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = {
    json.loads(p.read_text())["$id"]: json.loads(p.read_text())
    for p in (ROOT / "alarms" / "schemas").glob("*.json")
}
SITE = "beicheng"
PREFIX = f"heating/{SITE}"
OPERATOR = "调度王"


def validate(doc: dict[str, Any]) -> dict[str, Any]:
    jsonschema.Draft202012Validator(SCHEMAS[doc["schema"]]).validate(doc)
    return doc


class Screen:
    """A dispatch screen on the broker: records everything under the prefix."""

    def __init__(self, port: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.changed = asyncio.Event()
        self.lock = threading.Lock()
        self.messages: list[tuple[str, bytes]] = []
        self.retained: dict[str, bytes] = {}
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="e2e-screen")
        self.client.on_connect = lambda c, *a: c.subscribe(f"{PREFIX}/#", qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self.retained[msg.topic] = bytes(msg.payload)
        self.loop.call_soon_threadsafe(self.changed.set)

    def last(self, topic: str) -> dict[str, Any] | None:
        """The newest document on a topic (None if none, or cleared by an empty message)."""
        with self.lock:
            p = self.retained.get(topic)
        return json.loads(p) if p else None

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(p) for t, p in self.messages if t == f"{PREFIX}/events"]

    def playbook_for(self, incident_id: str) -> dict[str, Any] | None:
        return self.last(f"{PREFIX}/playbook/{incident_id}")

    async def wait(self, pred: Callable[[], Any], within: float = 15.0) -> Any:
        async with asyncio.timeout(within):
            while True:
                self.changed.clear()
                got = pred()
                if got:
                    return got
                await self.changed.wait()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def alarm_topic(alarm_id: str) -> str:
    return f"{PREFIX}/alarm/{alarm_id}"


def e2e_config(broker: Mosquitto, am: Alertmanager, window_s: float = 30.0) -> Config:
    """The example fleet at 0.5 s ticks, publishing to the broker, paging Alertmanager,
    control on (hs001 allow-lists circ_pump_running in config/stations.yaml)."""
    quick = {"off_delay_s": 0, "rearm_s": 0}
    return fast_config().with_sections(
        mqtt={"port": broker.port, "reconnect_min_s": 1, "reconnect_max_s": 1},
        pager={"alertmanager": {"url": am.url, "resend_interval_s": 5, "timeout_s": 2}},
        alarms={
            "control": {"enabled": True, "window_s": window_s, "readback_s": 10},
            "tuning": {
                k: quick
                for k in ("secondary_pressure_drop", "station_power_loss", "station_comm_loss")
            },
        },
    )


@asynccontextmanager
async def plant(
    tmp_path: Path, window_s: float = 30.0
) -> AsyncIterator[tuple[Simulator, Daemon, Screen, Alertmanager, Path]]:
    """Broker, Alertmanager, screen, simulator and daemon; yields once every station
    answered a poll. Also writes the config the CLI reads (`--config`)."""
    with start_mosquitto(tmp_path) as broker, start_alertmanager(tmp_path) as am:
        cfg = e2e_config(broker, am, window_s)
        cfg_path = dump_config(cfg, tmp_path / "stations.yaml")
        screen = Screen(broker.port)
        try:
            async with fleet(cfg, tmp_path) as (sim, daemon):
                await asyncio.wait_for(daemon.ready.wait(), 20)
                await screen.wait(lambda: screen.last(f"{PREFIX}/status"))
                yield sim, daemon, screen, am, cfg_path
        finally:
            screen.close()


async def alerts(am: Alertmanager, *matchers: str) -> list[dict[str, Any]]:
    params = [("filter", m) for m in matchers] + [("active", "true")]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{am.url}/api/v2/alerts", params=params) as resp:
            resp.raise_for_status()
            return await resp.json()


async def wait_alerts(
    am: Alertmanager, pred: Callable[[list[dict[str, Any]]], bool], *matchers: str
) -> list[dict[str, Any]]:
    async with asyncio.timeout(15):
        while True:
            got = await alerts(am, *matchers)
            if pred(got):
                return got
            # Alertmanager has no change feed: poll its API with a deadline
            await asyncio.sleep(0.1)


async def desk(*args: str) -> tuple[int, str, str]:
    """Run the dispatch-desk CLI as its own process; the daemon keeps running meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stationd.dispatch_cli",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def raised(screen: Screen, alarm_id: str, state: str = "unack") -> Callable[[], Any]:
    def pred() -> Any:
        doc = screen.last(alarm_topic(alarm_id))
        return doc if doc is not None and doc["state"] == state else None

    return pred


async def test_pipe_burst_power_loss_and_comm_loss_reach_mqtt_and_alertmanager(
    tmp_path: Path,
) -> None:
    async with plant(tmp_path) as (sim, _daemon, screen, am, _cfg):
        burst = sim.inject(kind="pipe_burst", station="hs001", size=300)
        power = sim.inject(kind="power_loss", station="hs004")
        comm = sim.inject(kind="comm_loss", station="hs006")

        # pipe burst -> secondary_pressure_drop, playbook 7.1
        drop = validate(await screen.wait(raised(screen, "hs001/secondary_pressure_drop")))
        assert drop["severity"] == "critical" and drop["station_name"] == "阳光花园换热站"
        assert drop["playbook_id"] == "secondary_pressure_drop"
        pb = validate(await screen.wait(lambda: screen.playbook_for(drop["incident_id"])))
        assert pb["plan_section"] == "7.1" and pb["steps"][0]["id"] == "stop_circ_pump"
        assert pb["steps"][0]["control"] == {"point": "circ_pump_running", "value": 0}

        # power loss -> station_power_loss, 7.2; its pressure alarm is suppressed, not paged
        pwr = validate(await screen.wait(raised(screen, "hs004/station_power_loss")))
        assert pwr["playbook_id"] == "station_power_loss"
        assert (
            validate(await screen.wait(lambda: screen.playbook_for(pwr["incident_id"])))[
                "plan_section"
            ]
            == "7.2"
        )
        sup = validate(
            await screen.wait(raised(screen, "hs004/secondary_pressure_drop", "suppressed"))
        )
        assert sup["suppressed_by"] == "hs004/station_power_loss"

        # comm loss -> station_comm_loss
        lost = validate(await screen.wait(raised(screen, "hs006/station_comm_loss")))
        assert lost["station"] == "hs006"

        # the event stream carries each activation; every event validates
        def activations() -> set[str]:
            return {
                e["alarm_id"]
                for e in screen.events()
                if e["type"] == "transition" and e["cause"] == "activate"
            }

        want = {
            "hs001/secondary_pressure_drop",
            "hs004/station_power_loss",
            "hs006/station_comm_loss",
        }
        await screen.wait(lambda: want <= activations())
        for e in screen.events():
            validate(e)
        assert "hs004/secondary_pressure_drop" not in activations()

        # Alertmanager lists each with the plan labels; the suppressed alarm is not paged
        site = f'site="{SITE}"'
        got = await wait_alerts(am, lambda a: len(a) >= 3, site)
        labels = {(a["labels"]["alertname"], a["labels"]["station"]): a["labels"] for a in got}
        assert set(labels) == {
            ("secondary_pressure_drop", "hs001"),
            ("station_power_loss", "hs004"),
            ("station_comm_loss", "hs006"),
        }
        for lab in labels.values():
            assert lab["site"] == SITE and lab["severity"] in ("critical", "major")

        # the faults clear: power returns, the station answers again -> resolved
        sim.clear(power.id)
        sim.clear(comm.id)
        await screen.wait(raised(screen, "hs004/station_power_loss", "rtn_unack"))
        await screen.wait(raised(screen, "hs006/station_comm_loss", "rtn_unack"))
        left = await wait_alerts(
            am, lambda a: {x["labels"]["station"] for x in a} == {"hs001"}, site
        )
        assert [a["labels"]["alertname"] for a in left] == ["secondary_pressure_drop"]
        assert burst.kind == "pipe_burst"


async def test_dispatch_desk_acks_and_operates_by_select_before_operate(tmp_path: Path) -> None:
    async with plant(tmp_path, window_s=6.0) as (sim, daemon, screen, _am, cfg):
        assert sim.state()["stations"]["hs001"]["values"]["circ_pump_running"] == 1.0
        sim.inject(kind="pipe_burst", station="hs001", size=300)
        alarm_id = "hs001/secondary_pressure_drop"
        doc = await screen.wait(raised(screen, alarm_id))
        incident = doc["incident_id"]
        await screen.wait(lambda: screen.playbook_for(incident))

        # `stationd alarms`: the alarm, its station's Chinese name and its playbook steps
        rc, out, err = await desk("alarms", "--config", str(cfg), "--wait", "0.5")
        assert rc == 0, err
        assert "阳光花园换热站" in out and alarm_id in out and "stop_circ_pump" in out
        assert "遥控 circ_pump_running=0" in out

        # `stationd ack` moves the retained state and lands in the dispatch log
        rc, out, err = await desk("ack", alarm_id, "--operator", OPERATOR, "--config", str(cfg))
        assert rc == 0, err
        acked = validate(await screen.wait(raised(screen, alarm_id, "acked")))
        assert acked["acked_by"] == OPERATOR
        state_dir = tmp_path / "state"
        since = doc["onset"] - 1  # --from takes unix seconds or an ISO time (local)
        to_iso = datetime.fromtimestamp(time.time() + 60).isoformat(timespec="seconds")
        rc, out, err = await desk(
            "log", "--state-dir", str(state_dir), "--station", "hs001",
            "--from", str(since), "--to", to_iso,
        )  # fmt: skip
        assert rc == 0, err
        ack_lines = [ln for ln in out.splitlines() if "transition" in ln and OPERATOR in ln]
        assert ack_lines and "报警已确认" in ack_lines[0]

        # refused: a point hs001 does not allow-list (close_primary_supply writes a valve)
        rc, out, err = await desk(
            "select", incident, "close_primary_supply", "--operator", OPERATOR, "--config", str(cfg)
        )
        assert rc == 1 and "allow-listed" in err

        # select answers exactly what will be written
        rc, out, err = await desk(
            "select", incident, "stop_circ_pump", "--operator", OPERATOR,
            "--config", str(cfg), "--json",
        )  # fmt: skip
        assert rc == 0, err
        sel = validate(json.loads(out))["result"]
        assert (sel["station"], sel["point"], sel["value"], sel["current"]) == (
            "hs001",
            "circ_pump_running",
            0.0,
            1.0,
        )

        # refused: operating that selection as another step (another point)
        refused = await daemon.alarms.command(
            {
                "request_id": "x1",
                "operator": OPERATOR,
                "command": "operate",
                "incident": incident,
                "step": "restart",
                "select_id": sel["select_id"],
            }
        )
        assert not validate(refused)["ok"] and "not " + incident in refused["error"]
        assert sim.state()["stations"]["hs001"]["values"]["circ_pump_running"] == 1.0

        # operate within the window: the pump really stops in the plant, and is confirmed
        rc, out, err = await desk(
            "operate", incident, "stop_circ_pump", "--select-id", sel["select_id"],
            "--operator", OPERATOR, "--config", str(cfg),
        )  # fmt: skip
        assert rc == 0, err + out
        assert "confirmed" in out
        assert sim.state()["stations"]["hs001"]["values"]["circ_pump_running"] == 0.0
        assert not sim.plant.circ_cmd[sim.plant.index["hs001"]]
        step = await screen.wait(
            lambda: next(
                (
                    s
                    for s in (screen.playbook_for(incident) or {"steps": []})["steps"]
                    if s["id"] == "stop_circ_pump" and s["status"] == "done"
                ),
                None,
            )
        )
        assert step["by"] == OPERATOR

        # the same selection cannot be operated twice
        again = await daemon.alarms.command(
            {
                "request_id": "x2",
                "operator": OPERATOR,
                "command": "operate",
                "incident": incident,
                "step": "stop_circ_pump",
                "select_id": sel["select_id"],
            }
        )
        assert not again["ok"] and "no open selection" in again["error"]

        # refused: the window ran out between select and operate
        first = await daemon.alarms.command(
            {"request_id": "x3", "operator": OPERATOR, "command": "select", "incident": incident,
             "step": "restart"}
        )  # fmt: skip
        assert first["ok"], first
        expires = first["result"]["expires_at"]
        await until(daemon, lambda: daemon.alarms.clock() > expires, timeout=15)
        late = await daemon.alarms.command(
            {"request_id": "x4", "operator": OPERATOR, "command": "operate", "incident": incident,
             "step": "restart", "select_id": first["result"]["select_id"]}
        )  # fmt: skip
        assert not late["ok"] and "expired" in late["error"]
        assert sim.state()["stations"]["hs001"]["values"]["circ_pump_running"] == 0.0

        # every control stage is on the event stream and in the dispatch log
        def control_actions() -> list[str]:
            return [e["action"] for e in screen.events() if e["type"] == "control"]

        actions = await screen.wait(lambda: (a := control_actions()).count("refused") == 4 and a)
        assert actions[:1] == ["refused"] and "confirmed" in actions
        for e in screen.events():
            validate(e)
        rc, out, err = await desk(
            "log", "--state-dir", str(state_dir), "--incident", incident, "--kind", "control",
            "--json",
        )  # fmt: skip
        assert rc == 0, err
        logged = [json.loads(ln)["data"]["action"] for ln in out.splitlines()]
        assert logged == ["refused", "selected", "refused", "operated", "confirmed", "refused",
                          "selected", "refused"]  # fmt: skip


def test_alarms_table_aligns_chinese_names_and_marks_overdue_steps() -> None:
    now = 1_800_000_000.0
    alarm = {
        "alarm_id": "hs001/secondary_pressure_drop",
        "incident_id": "i1",
        "state": "unack",
        "state_zh": "报警未确认",
        "priority": 1,
        "severity": "critical",
        "station_name": "阳光花园换热站",
        "subject": "hs001",
        "since": now - 400,
        "message_zh": "二次供水压力骤降",
    }
    branch = {**alarm, "alarm_id": "东一支线/primary_leak", "incident_id": "i2",
              "station_name": "", "subject": "东一支线", "state": "acked", "priority": 2}  # fmt: skip
    hidden = {**alarm, "alarm_id": "hs004/secondary_pressure_drop", "state": "suppressed",
              "station_name": "翠湖苑换热站", "suppressed_by": "hs004/station_power_loss"}  # fmt: skip
    steps = [
        {"id": "stop_circ_pump", "status": "pending", "due": now - 60, "action_zh": "停泵",
         "control": {"point": "circ_pump_running", "value": 0}},
        {"id": "report", "status": "done", "due": None, "action_zh": "报告", "control": None},
    ]  # fmt: skip
    playbook = {"incident_id": "i1", "plan_section": "7.1", "title_zh": "压力骤降",
                "title_en": "pressure drop", "steps": steps}  # fmt: skip
    docs = {
        f"{PREFIX}/alarm/{d['alarm_id']}": json.dumps(d).encode() for d in (hidden, branch, alarm)
    }
    docs[f"{PREFIX}/playbook/i1"] = json.dumps(playbook).encode()
    lines = render_alarms(docs, PREFIX, now).splitlines()
    rows = [ln for ln in lines if ln.startswith("P")]
    # standing alarms first by priority, the suppressed one last
    assert [r.split()[4] for r in rows][:1] == ["hs001/secondary_pressure_drop"]
    assert "hs004" in rows[-1]
    # the message column starts at the same display column on every row
    cols = {width(r[: r.index(m)]) for r, m in zip(rows, ("二次", "二次", "二次"), strict=True)}
    assert len(cols) == 1
    text = "\n".join(lines)
    assert "超时 OVERDUE" in text and "遥控 circ_pump_running=0" in text
    assert "report" not in text  # done steps are not listed


async def test_desk_exits_2_when_no_daemon_answers(tmp_path: Path) -> None:
    with start_mosquitto(tmp_path) as broker:
        cfg = fast_config().with_sections(mqtt={"port": broker.port})
        path = dump_config(cfg, tmp_path / "stations.yaml")
        rc, _out, err = await desk(
            "note",
            "已通知热源调度",
            "--operator",
            OPERATOR,
            "--config",
            str(path),
            "--timeout",
            "1",
        )
    assert rc == 2 and "no answer" in err
