"""Benchmark the pager: what notify() costs the alarm path, and how fast an alarm flood
reaches a real Alertmanager. Prints figures with a baseline measured in the same run.

    python -m bench.pager_bench [--alerts 3000] [--notify 20000]

1. notify() with three adapters (Alertmanager, PagerDuty, webhook), versus the floor of
   three bare `asyncio.Queue.put_nowait` calls: the fan-out's overhead on the engine.
2. A flood of distinct alerts into Debian's prometheus-alertmanager on loopback, batched
   (up to 64 alerts per POST, as the adapter sends) versus one alert per POST (the
   baseline a naive client would be); reports alerts/s and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from alarms.pager.alertmanager import AlertmanagerAdapter
from alarms.pager.config import AlertmanagerConfig
from alarms.pager.fanout import Pager
from tests.pager_fixtures import ROUTING_KEY, pager_event
from tests.servers import start_alertmanager


async def bench_notify(n: int) -> None:
    events = [pager_event(incident_id=f"bench-{i}", station=f"hs{i % 1000:03d}") for i in range(n)]
    section = {
        "alertmanager": {"url": "http://127.0.0.1:9", "queue_size": n + 1},
        "pagerduty": {"url": "http://127.0.0.1:9", "routing_key_env": "K", "queue_size": n + 1},
        "webhook": {"url": "http://127.0.0.1:9", "queue_size": n + 1},
    }
    pager = Pager.from_config(section, environ={"K": ROUTING_KEY})
    # Not started: nothing is sent, so this times only what the engine's call costs.
    t0 = time.perf_counter()
    for ev in events:
        pager.notify(ev)
    fan = time.perf_counter() - t0

    queues: list[asyncio.Queue[object]] = [asyncio.Queue(maxsize=n + 1) for _ in range(3)]
    t0 = time.perf_counter()
    for ev in events:
        for q in queues:
            q.put_nowait(ev)
    floor = time.perf_counter() - t0
    print(
        f"notify(): {fan / n * 1e6:.1f} us/event with 3 adapters; bare 3x Queue.put_nowait "
        f"{floor / n * 1e6:.2f} us/event; ratio {fan / floor:.1f}x "
        f"(the render of 3 request bodies per event)"
    )


async def _flood(url: str, n: int, batch_max: int, tag: str) -> float:
    config = AlertmanagerConfig(url=url, queue_size=n + 1, resend_interval_s=600)
    adapter = AlertmanagerAdapter(config, batch_max=batch_max)
    pager = Pager([adapter], drain_timeout_s=300)
    await pager.start()
    t0 = time.perf_counter()
    for i in range(n):
        pager.notify(pager_event(incident_id=f"{tag}-{i}", station=f"hs{i % 1000:03d}"))
    await pager.stop()  # drains the outbox
    elapsed = time.perf_counter() - t0
    c = pager.counters()["alertmanager"]
    if c.sent != n:
        raise RuntimeError(f"flood {tag}: sent {c.sent} of {n} ({c})")
    return elapsed


async def bench_alertmanager(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, start_alertmanager(Path(tmp)) as am:
        single = await _flood(am.url, n, 1, "single")
        batched = await _flood(am.url, n, 64, "batched")
    print(
        f"Alertmanager flood of {n} alerts: batched {n / batched:,.0f} alerts/s "
        f"({batched:.2f} s); one per POST {n / single:,.0f} alerts/s ({single:.2f} s); "
        f"ratio {single / batched:.1f}x"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=3000)
    ap.add_argument("--notify", type=int, default=20000)
    args = ap.parse_args()
    asyncio.run(bench_notify(args.notify))
    asyncio.run(bench_alertmanager(args.alerts))


if __name__ == "__main__":
    main()
