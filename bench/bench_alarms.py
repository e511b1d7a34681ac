"""Benchmark the alarm side: engine tick cost, a full alarm storm, MQTT throughput.

Prints figures, asserts nothing. Baselines are measured in the same run:
- engine tick: as a share of a 1 s poll interval, quiet fleet vs storm;
- storm through AlarmService (engine + SQLite state + dispatch log + pager hook);
- MQTT: the disk-backed outbox path vs bare paho publishing QoS 1 to the same broker.

    python bench/bench_alarms.py [--stations 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from alarms.engine import AlarmEngine  # noqa: E402
from alarms.mqtt import MqttBridge, MqttSettings  # noqa: E402
from alarms.service import AlarmService  # noqa: E402
from stationd.findings import Finding  # noqa: E402
from tests.servers import start_mosquitto  # noqa: E402

T0 = float(int(time.time()))


def storm(stations: int, t: float) -> list[Finding]:
    """A feeder trip: every station loses power, pressure and comms at once."""
    out = []
    for i in range(stations):
        sid = f"hs{i:04d}"
        for kind, sev in (
            ("station_power_loss", "critical"),
            ("secondary_pressure_drop", "critical"),
            ("station_comm_loss", "minor"),
        ):
            out.append(
                Finding(kind, sid, "station", sev, T0, 0.1, "停电", "power loss")  # type: ignore[arg-type]
            )
    return out


def bench_engine(n: int) -> None:
    eng = AlarmEngine("bench")
    findings = storm(n, T0)
    t = time.perf_counter()
    eng.step(T0, findings)
    first = time.perf_counter() - t
    reps = 20
    t = time.perf_counter()
    for k in range(reps):
        eng.step(T0 + 1 + k, findings)
    steady = (time.perf_counter() - t) / reps
    # power back: everything clears; then a quiet fleet with all those records on file
    eng.step(T0 + 100, [])
    eng.step(T0 + 200, [])
    t = time.perf_counter()
    for k in range(reps):
        eng.step(T0 + 300 + k, [])
    quiet = (time.perf_counter() - t) / reps
    print(f"engine, {n} stations x 3 findings ({len(findings)} alarms):")
    print(f"  storm onset tick   {first * 1e3:8.2f} ms  = {first * 100:.2f} % of a 1 s interval")
    print(f"  storm steady tick  {steady * 1e3:8.2f} ms  = {steady * 100:.2f} % of a 1 s interval")
    print(f"  quiet fleet tick   {quiet * 1e3:8.3f} ms  ({len(eng.records)} records on file)")


async def bench_service(n: int, tmp: Path) -> None:
    svc = AlarmService("bench", tmp / "svc")
    pages = 0

    def count(_e: object) -> None:
        nonlocal pages
        pages += 1

    svc.pager_hooks.append(count)
    await svc.start()
    findings = storm(n, T0)
    t = time.perf_counter()
    ts = await svc.on_tick(T0, findings)
    onset = time.perf_counter() - t
    t = time.perf_counter()
    await svc.on_tick(T0 + 1, findings)
    steady = time.perf_counter() - t
    await svc.stop()
    print(f"service storm ({len(ts)} transitions, {pages} pages, state + dispatch log on disk):")
    print(f"  onset tick  {onset * 1e3:8.1f} ms   next tick {steady * 1e3:6.1f} ms")


async def bench_mqtt(tmp: Path, count: int) -> None:
    payload = {"schema": "stationd.event/1", "site": "bench", "type": "note", "text": "换热站" * 20}
    with start_mosquitto(tmp) as broker:
        # baseline: bare paho, QoS 1, wait for every PUBACK
        done = threading.Event()
        acked = 0

        def on_publish(*_a: object) -> None:
            nonlocal acked
            acked += 1
            if acked == count:
                done.set()

        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw")
        c.max_inflight_messages_set(1000)
        c.on_publish = on_publish
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        body = str(payload).encode()
        t = time.perf_counter()
        for _ in range(count):
            c.publish("heating/bench/raw", body, qos=1)
        await asyncio.to_thread(done.wait, 60)
        raw = time.perf_counter() - t
        c.disconnect()
        c.loop_stop()

        bridge = MqttBridge(MqttSettings(port=broker.port), "bench", tmp / "outbox.sqlite")
        await bridge.start()
        await asyncio.wait_for(bridge.drained(), 10)
        t = time.perf_counter()
        batch = 100
        for _ in range(count // batch):
            await bridge.publish([("heating/bench/events", payload, False)] * batch)
        await asyncio.wait_for(bridge.drained(), 120)
        ours = time.perf_counter() - t
        await bridge.stop()
    print(f"mqtt, {count} QoS 1 messages to a local mosquitto:")
    print(f"  bare paho (baseline)   {count / raw:9.0f} msg/s")
    print(
        f"  disk outbox + bridge   {count / ours:9.0f} msg/s   ratio {raw / ours:.2f}x of baseline"
    )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stations", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=20000)
    args = ap.parse_args()
    bench_engine(args.stations)
    with tempfile.TemporaryDirectory() as d:
        await bench_service(args.stations, Path(d))
        await bench_mqtt(Path(d), args.messages)


if __name__ == "__main__":
    asyncio.run(main())
