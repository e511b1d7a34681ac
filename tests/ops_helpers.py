"""Helpers for the operations tests (lifecycle, scale-out, faults, soak).

A daemon run as a real `stationd run` subprocess (`DaemonProcess`), a stations.yaml
written from a Config with edits (`write_fleet`), an MQTT watcher that records what a
dispatch screen would see (`MqttWatch`), and polling waits with deadlines.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from stationd.config import Config
from tools.simulate_station.simulator import dump_config

ROOT = Path(__file__).resolve().parents[1]


def write_fleet(
    cfg: Config,
    path: Path,
    *,
    drop: Iterable[str] = (),
    only: Iterable[str] | None = None,
    edit: dict[str, dict[str, Any]] | None = None,
    **sections: Any,
) -> Path:
    """Write `cfg` as a stations.yaml: stations in `drop` left out (or only those in
    `only`), station fields replaced per id from `edit`, top-level sections replaced
    by `sections` (mqtt=..., historian=..., pager=..., http=...)."""
    dropped = set(drop)
    keep = set(only) if only is not None else None
    stations = []
    for st in cfg.stations:
        if st.id in dropped or (keep is not None and st.id not in keep):
            continue
        if edit and st.id in edit:
            st = st.model_copy(update=edit[st.id])
        stations.append(st)
    out = cfg.model_copy(update={"stations": tuple(stations)}).with_sections(**sections)
    return dump_config(out, path)


async def wait_for(pred: Callable[[], Any], within: float, step: float = 0.05) -> Any:
    """Poll `pred` until it returns something true; fail after `within` seconds."""
    end = time.monotonic() + within
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > end:
            raise TimeoutError(f"condition not met within {within}s: {pred}")
        await asyncio.sleep(step)


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


class DaemonProcess:
    """`python -m stationd run` as a child process, its log in a file."""

    def __init__(self, config: Path, state_dir: Path, log_path: Path, *args: str) -> None:
        self.config, self.state_dir, self.log_path = config, state_dir, log_path
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        cmd = [sys.executable, "-m", "stationd", "run", "--config", str(self.config)]
        cmd += ["--state-dir", str(self.state_dir), *self.args]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("NOTIFY_SOCKET", None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
            )
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, within: float) -> int:
        assert self.proc is not None
        proc = self.proc
        await wait_for(lambda: proc.poll() is not None, within)
        return int(proc.returncode)

    async def wait_log(self, text: str, within: float) -> None:
        try:
            await wait_for(lambda: text in self.log, within, step=0.1)
        except TimeoutError as exc:
            raise AssertionError(f"{text!r} not in the daemon log:\n{self.log[-4000:]}") from exc

    def stop(self) -> None:
        """Cleanup: TERM, then KILL (only our own child, by its pid)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class MqttWatch:
    """A dispatch screen: subscribes to `<prefix>/#` and records every message."""

    def __init__(self, port: int, prefix: str, client_id: str, clean: bool = True) -> None:
        self.prefix = prefix
        self.lock = threading.Lock()
        self.messages: list[tuple[str, bytes, bool]] = []
        self.subscribed = threading.Event()
        # clean=False: a persistent session, so the broker keeps what arrives while this
        # screen is reconnecting (QoS 1)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, *a: c.subscribe(f"{prefix}/#", qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def docs(self, topic: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(p) for t, p, _ in self.messages if t == topic and p]

    def events(self, type_: str = "transition") -> list[dict[str, Any]]:
        return [e for e in self.docs(f"{self.prefix}/events") if e.get("type") == type_]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
