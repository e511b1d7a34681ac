"""MQTT against a real mosquitto on a free loopback port: topics, schemas, commands,
broker outage and the last will."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from alarms.mqtt import MqttBridge, MqttSettings
from alarms.service import AlarmService, StationInfo
from stationd.findings import Finding
from tests.servers import free_port, make_test_tls, start_mosquitto

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = {
    json.loads(p.read_text())["$id"]: json.loads(p.read_text())
    for p in (ROOT / "alarms" / "schemas").glob("*.json")
}
T0 = float(int(time.time()))  # commands use the wall clock: ticks must be near it
PREFIX = "heating/site1"


def validate(doc: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(SCHEMAS[doc["schema"]]).validate(doc)


class Collector:
    """A dispatch screen: subscribes to the whole prefix and records what arrives."""

    def __init__(self, port: int, client_id: str, clean: bool = True) -> None:
        self.loop = asyncio.get_running_loop()
        self.changed = asyncio.Event()
        self.lock = threading.Lock()
        self.messages: list[tuple[str, bytes, bool]] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.subscribed = False
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe(f"{PREFIX}/#", qos=1)

    def _on_subscribe(self, *args: Any) -> None:
        self.subscribed = True
        self.loop.call_soon_threadsafe(self.changed.set)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
        self.loop.call_soon_threadsafe(self.changed.set)

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def docs(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.on(topic) if p]

    async def wait(self, pred: Callable[[], Any], within: float = 10.0) -> Any:
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


def service(tmp_path: Path, port: int, **kw: Any) -> AlarmService:
    return AlarmService(
        "site1",
        tmp_path / "state",
        site_name="测试热力公司",
        stations=[StationInfo("hs001", "幸福里换热站")],
        mqtt=MqttSettings(port=port, reconnect_min_s=1, reconnect_max_s=1),
        tuning={"secondary_pressure_drop": {"off_delay_s": 0}},
        **kw,
    )


async def test_state_events_playbook_and_status_validate(tmp_path: Path) -> None:
    with start_mosquitto(tmp_path) as broker:
        screen = Collector(broker.port, "screen1")
        svc = service(tmp_path, broker.port)
        await svc.start()
        try:
            ts = await svc.on_tick(T0, [drop()])
            iid = ts[0].incident_id
            alarm_topic = f"{PREFIX}/alarm/hs001/secondary_pressure_drop"
            state = (await screen.wait(lambda: screen.docs(alarm_topic)))[-1]
            validate(state)
            assert state["state"] == "unack" and state["station_name"] == "幸福里换热站"
            assert "幸福里换热站".encode() in screen.on(alarm_topic)[-1]  # UTF-8, not \\u escapes
            events = await screen.wait(lambda: screen.docs(f"{PREFIX}/events"))
            for e in events:
                validate(e)
            assert events[0]["type"] == "transition" and events[0]["incident_id"] == iid
            pb = (await screen.wait(lambda: screen.docs(f"{PREFIX}/playbook/{iid}")))[-1]
            validate(pb)
            assert pb["steps"][0]["control"] == {"point": "circ_pump_running", "value": 0.0}
            status = (await screen.wait(lambda: screen.docs(f"{PREFIX}/status")))[-1]
            validate(status)
            assert status["state"] == "online"

            # a screen connecting later gets the retained state at once
            late = Collector(broker.port, "screen2")
            retained = await late.wait(lambda: late.docs(alarm_topic))
            assert retained[-1]["incident_id"] == iid
            assert (await late.wait(lambda: late.docs(f"{PREFIX}/playbook/{iid}")))[-1][
                "status"
            ] == "open"
            late.close()

            # condition clears, operator acknowledges over MQTT: retained state emptied
            await svc.on_tick(T0 + 1, [])
            cmd = {
                "schema": "stationd.cmd/1",
                "request_id": "req-1",
                "operator": "张工",
                "command": "ack",
                "alarm_id": "hs001/secondary_pressure_drop",
            }
            jsonschema.Draft202012Validator(SCHEMAS["stationd.cmd/1"]).validate(cmd)
            screen.client.publish(f"{PREFIX}/cmd", json.dumps(cmd, ensure_ascii=False), qos=1)
            res = (await screen.wait(lambda: screen.docs(f"{PREFIX}/cmd/result")))[-1]
            validate(res)
            assert res["ok"] and res["request_id"] == "req-1" and res["result"]["state"] == "normal"
            await screen.wait(lambda: screen.on(alarm_topic)[-1] == b"")
            states = [
                (e["from_state"], e["to_state"], e["operator"])
                for e in screen.docs(f"{PREFIX}/events")
                if e["type"] == "transition"
            ]
            assert states == [
                ("normal", "unack", ""),
                ("unack", "rtn_unack", ""),
                ("rtn_unack", "normal", "张工"),
            ]
            assert svc.log is not None
            logged = svc.log.query(incident=iid)
            assert [(e.kind, e.operator) for e in logged if e.operator] == [
                ("command", "张工"),
                ("transition", "张工"),
            ]
        finally:
            await svc.stop()
            screen.close()


async def test_malformed_and_unauthorised_commands_get_error_results(tmp_path: Path) -> None:
    with start_mosquitto(tmp_path) as broker:
        screen = Collector(broker.port, "screen")
        svc = service(tmp_path, broker.port, operators=["张工"])
        await svc.start()
        try:
            await svc.on_tick(T0, [drop()])
            topic = f"{PREFIX}/cmd"
            await screen.wait(lambda: screen.docs(f"{PREFIX}/alarm/hs001/secondary_pressure_drop"))
            screen.client.publish(topic, b"\xff\xfe not json", qos=1)
            screen.client.publish(
                topic,
                json.dumps({"request_id": "r2", "operator": "张工", "command": "explode"}),
                qos=1,
            )
            screen.client.publish(
                topic,
                json.dumps(
                    {
                        "request_id": "r3",
                        "operator": "外人",
                        "command": "ack",
                        "alarm_id": "hs001/secondary_pressure_drop",
                    }
                ),
                qos=1,
            )
            results = await screen.wait(
                lambda: (r := screen.docs(f"{PREFIX}/cmd/result")) and len(r) >= 3 and r
            )
            for r in results:
                validate(r)
                assert r["ok"] is False and r["error"]
            assert [r["request_id"] for r in results] == ["", "r2", "r3"]
            assert "not allowed" in results[2]["error"]
            assert svc.engine.records["hs001/secondary_pressure_drop"].state == "unack"
        finally:
            await svc.stop()
            screen.close()


async def test_broker_outage_loses_no_transition_and_keeps_order(tmp_path: Path) -> None:
    # ticks near the wall clock *now*: acks are stamped with the wall clock, and in a
    # full run the module's T0 is minutes old by the time this test runs
    t0 = float(int(time.time()))
    port = free_port()
    expected: list[tuple[float, str, str, str, str]] = []

    def key(t: Any) -> tuple[float, str, str, str, str]:
        return (t.time, t.alarm_id, str(t.from_state), str(t.to_state), t.cause)

    def transitions(c: Collector) -> list[tuple[float, str, str, str, str]]:
        return [
            (e["time"], e["alarm_id"], e["from_state"], e["to_state"], e["cause"])
            for e in c.docs(f"{PREFIX}/events")
            if e["type"] == "transition"
        ]

    svc = service(tmp_path, port)
    svc.transition_hooks.append(lambda t: expected.append(key(t)))
    with start_mosquitto(tmp_path, port=port, persistence=True):
        # a persistent session (clean=False): the broker keeps its queue across the outage
        screen = Collector(port, "screen-persistent", clean=False)
        await screen.wait(lambda: screen.subscribed)
        await svc.start()
        await svc.on_tick(t0, [drop(t0)])
        await screen.wait(lambda: len(transitions(screen)) == 1)
    # broker down: the daemon keeps working and its messages queue on disk
    assert svc.bridge is not None
    for i in range(1, 30):
        await svc.on_tick(t0 + i, [drop(t0)] if i % 3 else [])
        if i % 3 == 0:
            r = await svc.command(
                {
                    "request_id": f"x{i}",
                    "operator": "op",
                    "command": "ack",
                    "alarm_id": "hs001/secondary_pressure_drop",
                }
            )
            assert r["ok"], r
    assert len(svc.bridge.outbox) > 0
    with start_mosquitto(tmp_path, port=port, persistence=True):
        await screen.wait(lambda: len(set(transitions(screen))) >= len(expected), within=20)
        await asyncio.wait_for(svc.bridge.drained(), 10)
        await svc.stop()
    screen.close()
    got = transitions(screen)
    assert len(expected) > 20
    # QoS 1 is at-least-once: a message in flight at the outage may arrive twice; none is
    # lost and, first arrivals taken, the order is the order of the transitions
    first = list(dict.fromkeys(got))
    assert first == expected


WILL_SCRIPT = """
import asyncio, sys
from pathlib import Path
from alarms.mqtt import MqttBridge, MqttSettings

async def main():
    b = MqttBridge(MqttSettings(port=int(sys.argv[1])), "site1", Path(sys.argv[2]))
    await b.start()
    await asyncio.wait_for(b.drained(), 10)
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_last_will_offline_when_the_daemon_dies(tmp_path: Path) -> None:
    with start_mosquitto(tmp_path) as broker:
        screen = Collector(broker.port, "screen")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WILL_SCRIPT,
            str(broker.port),
            str(tmp_path / "outbox.sqlite"),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert line.strip() == b"ready"
            topic = f"{PREFIX}/status"
            await screen.wait(lambda: any(d["state"] == "online" for d in screen.docs(topic)))
            proc.kill()  # no DISCONNECT: the broker must publish the will
            offline = await screen.wait(
                lambda: [d for d in screen.docs(topic) if d["state"] == "offline"]
            )
            validate(offline[-1])
            assert offline[-1]["reason"] == "connection lost"
            late = Collector(broker.port, "late")
            retained = await late.wait(lambda: late.docs(topic))
            assert retained[-1]["state"] == "offline"
            late.close()
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            screen.close()


async def test_step_done_over_mqtt_updates_the_retained_playbook(tmp_path: Path) -> None:
    with start_mosquitto(tmp_path) as broker:
        screen = Collector(broker.port, "screen")
        svc = service(tmp_path, broker.port)
        await svc.start()
        try:
            iid = (await svc.on_tick(T0, [drop()]))[0].incident_id
            topic = f"{PREFIX}/playbook/{iid}"
            await screen.wait(lambda: screen.docs(topic))
            cmd = {
                "request_id": "s1",
                "operator": "运行工刘",
                "command": "step_done",
                "incident": iid,
                "step": "stop_circ_pump",
            }
            screen.client.publish(f"{PREFIX}/cmd", json.dumps(cmd, ensure_ascii=False), qos=1)
            pb = await screen.wait(
                lambda: [d for d in screen.docs(topic) if d["steps"][0]["status"] == "done"]
            )
            validate(pb[-1])
            assert pb[-1]["steps"][0]["by"] == "运行工刘"
            steps = await screen.wait(
                lambda: [e for e in screen.docs(f"{PREFIX}/events") if e["type"] == "step"]
            )
            validate(steps[0])
            assert (steps[0]["step"], steps[0]["status"]) == ("stop_circ_pump", "done")
        finally:
            await svc.stop()
            screen.close()


async def test_messages_queued_while_broker_down_survive_a_daemon_restart(
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing listens yet
    svc = service(tmp_path, port)
    await svc.start()
    iid = (await svc.on_tick(T0, [drop()]))[0].incident_id
    await svc.stop(drain_timeout=0.2)  # gives up: the messages stay on disk

    with start_mosquitto(tmp_path, port=port) as broker:
        screen = Collector(broker.port, "screen")
        await screen.wait(lambda: screen.subscribed)
        svc2 = service(tmp_path, broker.port)
        await svc2.start()
        try:
            events = await screen.wait(
                lambda: [e for e in screen.docs(f"{PREFIX}/events") if e["type"] == "transition"]
            )
            assert events[0]["incident_id"] == iid and events[0]["to_state"] == "unack"
            state = await screen.wait(
                lambda: screen.docs(f"{PREFIX}/alarm/hs001/secondary_pressure_drop")
            )
            assert state[-1]["incident_id"] == iid
            # the first run's statuses arrive first, in order, then the second run's
            statuses = await screen.wait(
                lambda: (d := screen.docs(f"{PREFIX}/status")) and len(d) >= 6 and d
            )
            assert [d["state"] for d in statuses] == [
                "online",
                "online",
                "online",
                "offline",
                "online",
                "online",
            ]
            assert statuses[3]["reason"] == "stopped"
        finally:
            await svc2.stop()
            screen.close()


async def test_username_and_password_from_a_credential_file(tmp_path: Path) -> None:
    pw = tmp_path / "mosquitto.passwd"
    mkpw = await asyncio.create_subprocess_exec(
        "mosquitto_passwd", "-b", "-c", str(pw), "stationd", "s3cret-口令"
    )
    assert await mkpw.wait() == 0
    pw.chmod(0o600)
    secret = tmp_path / "mqtt.secret"
    secret.write_text("s3cret-口令\n", encoding="utf-8")
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("nope\n", encoding="utf-8")
    extra = ["allow_anonymous false", f"password_file {pw}"]
    with start_mosquitto(tmp_path, extra_config=extra) as broker:
        ok = MqttBridge(
            MqttSettings(port=broker.port, username="stationd", password_file=secret),
            "site1",
            tmp_path / "ok.sqlite",
        )
        bad = MqttBridge(
            MqttSettings(port=broker.port, username="stationd", password_file=wrong),
            "site1",
            tmp_path / "bad.sqlite",
        )
        await ok.start()
        await bad.start()
        try:
            await asyncio.wait_for(ok.drained(), 10)
            await asyncio.wait_for(bad.refused.wait(), 10)
            assert not bad.connected.is_set()
            assert "not authori" in bad.last_refusal.lower() or bad.last_refusal
        finally:
            await ok.stop()
            await bad.stop(drain_timeout=0.1)


async def test_tls_listener_with_the_site_ca(tmp_path: Path) -> None:
    tls = await asyncio.to_thread(make_test_tls, tmp_path)
    extra = [f"cafile {tls.ca}", f"certfile {tls.cert}", f"keyfile {tls.key}"]
    with start_mosquitto(tmp_path, extra_config=extra) as broker:
        bridge = MqttBridge(
            MqttSettings(port=broker.port, tls=True, ca_file=tls.ca),
            "site1",
            tmp_path / "outbox.sqlite",
        )
        await bridge.start()
        try:
            await asyncio.wait_for(bridge.drained(), 10)  # the online status went out over TLS
            assert bridge.connected.is_set()
        finally:
            await bridge.stop()


async def test_feeder_trip_storm_reaches_the_screen_complete(tmp_path: Path) -> None:
    """300 stations lose power together: 900 findings, ~2,000 messages in one tick, more
    than mosquitto's default per-client queue of 1,000. None may go missing."""
    n = 300
    with start_mosquitto(tmp_path) as broker:
        screen = Collector(broker.port, "screen")
        await screen.wait(lambda: screen.subscribed)
        svc = service(tmp_path, broker.port)
        await svc.start()
        try:
            findings = []
            for i in range(n):
                for kind in ("station_power_loss", "secondary_pressure_drop", "station_comm_loss"):
                    findings.append(
                        Finding(
                            kind, f"hs{i:03d}", "station", "critical", T0, 0.1, "停电", "power loss"
                        )
                    )
            ts = await svc.on_tick(T0, findings)
            assert len(ts) == 3 * n
            assert svc.bridge is not None
            await asyncio.wait_for(svc.bridge.drained(), 60)
            events = await screen.wait(
                lambda: (e := screen.docs(f"{PREFIX}/events")) and len(e) >= 3 * n and e, within=30
            )
            assert len(events) == 3 * n
            raised = [e for e in events if e["to_state"] == "unack"]
            assert {e["kind"] for e in raised} == {"station_power_loss"} and len(raised) == n
            # events and playbooks are separate topics: wait for both, not just the events
            playbooks = await screen.wait(
                lambda: (
                    (p := [t for t, _, _ in screen.messages if t.startswith(f"{PREFIX}/playbook/")])
                    and len(p) >= n
                    and p
                ),
                within=30,
            )
            assert len(playbooks) == n
        finally:
            await svc.stop()
            screen.close()
