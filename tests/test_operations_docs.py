"""docs/operations.md says what it means: its Mosquitto ACL lets only the dispatch desk
write the command topic, and the metrics it lists are the ones the daemon exports."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from stationd.app import Daemon
from tests.daemon_harness import fast_config
from tests.servers import start_mosquitto

DOC = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
USERS = {"stationd-beicheng": "pw-daemon", "desk-wang": "pw-desk", "screen": "pw-screen"}


def _block_after(marker: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("```", text.index(marker)) + 3
    return text[text.index("\n", start) + 1 : text.index("```", start)]


def _client(
    port: int, user: str, received: list[tuple[str, bytes]], subscribe: str = ""
) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"acl-{user}")
    c.username_pw_set(user, USERS[user])
    ready = threading.Event()
    if subscribe:
        c.on_connect = lambda cl, *a: cl.subscribe(subscribe, qos=1)
        c.on_subscribe = lambda *a: ready.set()
    else:
        c.on_connect = lambda *a: ready.set()
    c.on_message = lambda _c, _u, m: received.append((m.topic, bytes(m.payload)))
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert ready.wait(10), f"{user} could not connect (and subscribe)"
    return c


def test_the_documented_acl_lets_only_the_desk_write_commands(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text(_block_after("`/etc/mosquitto/acl`"), encoding="utf-8")
    passwd = tmp_path / "passwd"
    passwd.write_text("", encoding="utf-8")
    for user, pw in USERS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, pw], check=True)
    extra = ["allow_anonymous false", f"password_file {passwd}", f"acl_file {acl}"]
    with start_mosquitto(tmp_path, extra_config=extra) as broker:
        got: list[tuple[str, bytes]] = []
        daemon = _client(broker.port, "stationd-beicheng", got, "heating/beicheng/cmd")
        desk = _client(broker.port, "desk-wang", [])
        screen_got: list[tuple[str, bytes]] = []
        screen = _client(broker.port, "screen", screen_got, "heating/#")
        try:
            screen.publish("heating/beicheng/cmd", b'{"from":"screen"}', qos=1).wait_for_publish(5)
            desk.publish("heating/beicheng/cmd", b'{"from":"desk"}', qos=1).wait_for_publish(5)
            daemon.publish(
                "heating/beicheng/status", b'{"state":"online"}', qos=1
            ).wait_for_publish(5)
            # the daemon's user may not forge commands either
            daemon.publish("heating/beicheng/cmd", b'{"from":"daemon"}', qos=1).wait_for_publish(5)
            end = time.monotonic() + 10
            while time.monotonic() < end and not (got and len(screen_got) >= 2):
                time.sleep(0.05)
            time.sleep(0.3)  # anything the broker wrongly let through arrives by now
        finally:
            for c in (daemon, desk, screen):
                c.disconnect()
                c.loop_stop()
    assert got == [("heating/beicheng/cmd", b'{"from":"desk"}')]
    assert ("heating/beicheng/status", b'{"state":"online"}') in screen_got
    assert all(b"screen" not in p and b"daemon" not in p for _, p in screen_got)


def test_every_documented_metric_is_exported(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from stationd.health import DaemonCollector

    daemon = Daemon(fast_config(), state_dir=tmp_path / "state")
    daemon.registry.register(DaemonCollector(daemon))
    text = generate_latest(daemon.registry).decode()
    exported = {
        name.removesuffix("_total")
        for name, kind in re.findall(r"^# TYPE (\S+) (\S+)", text, re.M)
        if not name.endswith("_created")
    }
    section = DOC.read_text(encoding="utf-8").split("## 5.")[1].split("## 6.")[0]
    documented = set(re.findall(r"`(stationd_[a-z_]+?)(?:_total)?`", section))
    # the pager series exist when a pager is configured; the detection pass after a tick
    runtime_only = {
        "stationd_pager_items",
        "stationd_pager_retries",
        "stationd_pager_queued",
        "stationd_pager_render_errors",
        "stationd_detection_pass_seconds",
        "stationd_poll_latency_seconds",
        "stationd_station_good_signals_ratio",
    }
    assert documented - exported - runtime_only == set()
    assert {m for m in exported if m.startswith("stationd_")} - documented == set()
