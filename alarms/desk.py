"""The dispatch desk's MQTT session: a short-lived, synchronous client for the CLI.

`stationd alarms` reads the retained alarm and playbook state; the commands publish one
`stationd.cmd/1` document and wait for the `stationd.cmd_result/1` with the same
`request_id`. It connects exactly as the daemon's bridge does (alarms/mqtt_client.py)
and uses the same topic layout (alarms/topics.py). paho's network thread runs the
session; the CLI just waits on its events.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from typing import Any

from alarms.mqtt_client import dumps, make_client
from alarms.settings import MqttSettings
from alarms.topics import Topics


class NoAnswer(Exception):
    """The broker or the daemon did not answer in time."""


class DeskClient:
    def __init__(self, settings: MqttSettings, topics: Topics, connect_timeout: float = 5.0):
        self.topics = topics
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.messages: dict[str, bytes] = {}  # topic -> last payload
        self.results: dict[str, dict[str, Any]] = {}  # request_id -> result
        self._subacks: set[int] = set()
        self._connected = threading.Event()
        self._refused = ""
        client = make_client(settings, f"stationd-desk-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self.client = client
        try:
            client.connect(settings.host, settings.port, keepalive=30)
        except OSError as e:
            raise NoAnswer(f"cannot reach the broker {settings.host}:{settings.port}: {e}") from e
        client.loop_start()
        if not self._connected.wait(connect_timeout) or self._refused:
            self.close()
            raise NoAnswer(
                f"broker {settings.host}:{settings.port} "
                + (f"refused the session: {self._refused}" if self._refused else "did not answer")
            )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> DeskClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # paho callbacks (network thread)
    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        if rc.is_failure:
            self._refused = str(rc)
        self._connected.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, *args: Any) -> None:
        with self._changed:
            self._subacks.add(mid)
            self._changed.notify_all()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        payload = bytes(msg.payload)
        with self._changed:
            self.messages[msg.topic] = payload
            if msg.topic == self.topics.result:
                try:
                    doc = json.loads(payload)
                    self.results[str(doc.get("request_id", ""))] = doc
                except (ValueError, AttributeError):
                    pass
            self._changed.notify_all()

    def subscribe(self, topics: list[str], timeout: float) -> None:
        """Subscribe and wait for the broker's SUBACK (so nothing published after is missed)."""
        _, mid = self.client.subscribe([(t, 1) for t in topics])
        with self._changed:
            if not self._changed.wait_for(lambda: mid in self._subacks, timeout):
                raise NoAnswer(f"broker did not confirm the subscription to {topics}")

    def command(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Publish one command and wait for its result."""
        rid = body["request_id"]
        self.subscribe([self.topics.result], timeout)
        self.client.publish(self.topics.cmd, dumps(body), qos=1)
        with self._changed:
            if not self._changed.wait_for(lambda: rid in self.results, timeout):
                raise NoAnswer(
                    f"no answer to {body['command']} (request {rid}) within {timeout:g} s: "
                    "is the daemon running and connected to this broker?"
                )
            return self.results[rid]

    def retained(self, settle: float) -> dict[str, bytes]:
        """Every retained alarm and playbook document, collected for `settle` seconds."""
        self.subscribe([self.topics.alarms, self.topics.playbooks], max(settle, 5.0))
        time.sleep(settle)  # retained messages have no end marker: wait a fixed moment
        with self._lock:
            return {t: p for t, p in self.messages.items() if p}
