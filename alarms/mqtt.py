"""The daemon's broker connection: publishes through the disk outbox, feeds commands in.

The topic layout is alarms/topics.py, the payloads alarms/payloads.py, the client setup
(credentials, TLS) alarms/mqtt_client.py — all shared with the dispatch desk CLI.

Every outgoing message goes through the disk outbox (alarms/outbox.py) so a broker outage
or a restart loses nothing and keeps order. paho's network loop runs in its own thread
(`loop_start`); its callbacks only hand work to asyncio with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from alarms import payloads
from alarms.mqtt_client import dumps, make_client
from alarms.outbox import Outbox
from alarms.settings import MqttSettings
from alarms.topics import Topics

log = logging.getLogger(__name__)


CommandHandler = Callable[[bytes], Awaitable[dict[str, Any]]]


class MqttBridge:
    """One broker connection: publishes through the outbox and feeds commands in."""

    def __init__(
        self,
        settings: MqttSettings,
        site: str,
        outbox_path: Path,
        on_command: CommandHandler | None = None,
        command_queue_size: int = 1000,
        window: int = 1000,
    ) -> None:
        self.settings = settings
        self.site = site
        self.topics = Topics.of(settings, site)
        self.prefix = self.topics.prefix
        self.outbox = Outbox(outbox_path, max_rows=settings.outbox_max_rows)
        self.on_command = on_command
        self.window = window  # messages handed to paho and not yet acknowledged, at most
        self.connected = asyncio.Event()
        self.refused = asyncio.Event()  # the broker refused us (bad credentials, not allowed)
        self.last_refusal = ""
        self.commands_dropped = 0
        self.sent = 0
        self._cmd_queue: asyncio.Queue[bytes] = asyncio.Queue(command_queue_size)
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._gen = 0  # bumped on every publish: a stale "nothing left" must not say drained
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq
        self._acked: list[int] = []
        self._last_seq = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._started_at = 0.0
        self._stopping = False

    def status_payload(self, state: str, **extra: Any) -> dict[str, Any]:
        """The retained status document, stamped with when this connection started."""
        return payloads.status(self.site, state, self._started_at, **extra)

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started_at = time.time()
        s = self.settings
        client = make_client(s, s.client_id or f"stationd-{self.site}-{os.getpid()}")
        # paho's own limit only before connect(); our window bounds what we hand it
        client.max_inflight_messages_set(s.max_inflight)
        client.reconnect_delay_set(min_delay=s.reconnect_min_s, max_delay=s.reconnect_max_s)
        client.will_set(
            self.topics.status,
            dumps(self.status_payload("offline", reason="connection lost")),
            qos=1,
            retain=True,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client
        await self.publish([(self.topics.status, self.status_payload("online"), True)])
        # connect_async + loop_start: the network thread connects and reconnects on its own,
        # so a broker that is down at start-up does not stop the daemon
        client.connect_async(s.host, s.port, keepalive=s.keepalive)
        client.loop_start()
        self._tasks = [
            asyncio.create_task(self._sender(), name="mqtt-sender"),
            asyncio.create_task(self._commands(), name="mqtt-commands"),
        ]

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Say offline (a clean disconnect sends no will), drain the outbox, disconnect."""
        if self._client is None:
            return
        await self.publish(
            [(self.topics.status, self.status_payload("offline", reason="stopped"), True)]
        )
        try:
            async with asyncio.timeout(drain_timeout):
                await self.drained()
        except TimeoutError:
            log.warning(
                "mqtt stop: %d message(s) left in the outbox for the next start", len(self.outbox)
            )
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
        self._tasks = []
        client, self._client = self._client, None
        self._stopping = True
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        self.outbox.close()

    # -- publishing --------------------------------------------------------------------
    async def publish(self, messages: list[tuple[str, dict[str, Any] | None, bool]]) -> None:
        """Queue (topic, payload or None for an empty retained clear, retain) in order."""
        if not messages:
            return
        rows = [(t, b"" if p is None else dumps(p), r) for t, p, r in messages]
        await asyncio.to_thread(self.outbox.add, rows)
        self._gen += 1
        self._drained.clear()
        self._wake.set()

    async def _sender(self) -> None:
        assert self._client is not None
        while True:
            await self.connected.wait()
            if self._acked:
                done, self._acked = self._acked, []
                await asyncio.to_thread(self.outbox.remove, done)
            room = self.window - len(self._inflight)
            gen = self._gen
            batch = (
                await asyncio.to_thread(self.outbox.after, self._last_seq, room) if room > 0 else []
            )
            for m in batch:
                if not self.connected.is_set():
                    break
                # once handed over, paho keeps the message and resends it after a reconnect
                info = self._client.publish(m.topic, m.payload, qos=1, retain=m.retain)
                if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                    break
                self._inflight[info.mid] = m.seq
                self._last_seq = m.seq
            if not batch and not self._inflight and not self._acked and gen == self._gen:
                self._drained.set()
            if not batch or len(self._inflight) >= self.window:
                self._wake.clear()
                try:
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def _commands(self) -> None:
        while True:
            raw = await self._cmd_queue.get()
            if self.on_command is None:
                continue
            try:
                result = await self.on_command(raw)
            except Exception:
                log.exception("mqtt command handler failed")
                continue
            await self.publish([(self.topics.result, result, False)])

    async def drained(self) -> None:
        """Return once every queued message has been acknowledged by the broker."""
        await self._drained.wait()

    # -- paho callbacks (network thread): hand over to the loop, nothing else ----------
    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        if rc.is_failure:
            self._call(self._set_refused, str(rc))
            log.warning(
                "mqtt connect to %s:%d refused: %s", self.settings.host, self.settings.port, rc
            )
            return
        client.subscribe(self.topics.cmd, qos=1)
        self._call(self._set_connected, True)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        self._call(self._set_connected, False)

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any = None
    ) -> None:
        self._call(self._puback, mid)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.topics.cmd:
            self._call(self._enqueue_command, bytes(msg.payload))

    # -- loop side ---------------------------------------------------------------------
    def _set_connected(self, up: bool) -> None:
        if up:
            log.info("mqtt connected to %s:%d", self.settings.host, self.settings.port)
            self.connected.set()
            self._wake.set()
        else:
            if self.connected.is_set() and not self._stopping:
                log.warning(
                    "mqtt disconnected from %s:%d; queueing on disk",
                    self.settings.host,
                    self.settings.port,
                )
            self.connected.clear()

    def _set_refused(self, reason: str) -> None:
        self.last_refusal = reason
        self.refused.set()

    def _puback(self, mid: int) -> None:
        seq = self._inflight.pop(mid, None)
        if seq is not None:
            self.sent += 1
            self._acked.append(seq)
            self._wake.set()

    def _enqueue_command(self, raw: bytes) -> None:
        try:
            self._cmd_queue.put_nowait(raw)
        except asyncio.QueueFull:
            self.commands_dropped += 1
            log.warning(
                "mqtt command queue full: dropped a command (%d so far)", self.commands_dropped
            )
