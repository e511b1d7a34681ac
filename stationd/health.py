"""/metrics (Prometheus text), /healthz and /readyz on a local port.

The metrics are read at scrape time by a custom collector through the daemon's public
accessors (`Observed`: the poller's `PollStats`, the active findings, the gauges other
parts register), so the tick path pays nothing for them. Binds to loopback by default
(`http:` in stationd.config).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from stationd.findings import Finding
from stationd.poller import PollStats

log = logging.getLogger(__name__)


class Observed(Protocol):
    """What the health endpoint reads of the daemon (stationd.app.Daemon fits), all
    through public accessors."""

    ready: asyncio.Event

    @property
    def site_id(self) -> str: ...

    @property
    def tick_interval(self) -> float: ...

    @property
    def last_tick(self) -> float | None:
        """Wall time of the newest committed tick; None before the first."""
        ...

    @property
    def detect_seconds(self) -> float: ...

    @property
    def active_findings(self) -> Sequence[Finding]: ...

    @property
    def historian_problem(self) -> str | None:
        """The database's refusal of our historian settings; None when fine."""
        ...

    def poll_stats(self) -> PollStats: ...

    def extra_gauges(self) -> Iterable[tuple[str, float, str]]: ...


class DaemonCollector(Collector):
    def __init__(self, daemon: Observed) -> None:
        self.d = daemon

    def collect(self) -> Iterable[Any]:
        d = self.d
        p = d.poll_stats()
        site = d.site_id
        lat = GaugeMetricFamily(
            "stationd_poll_latency_seconds",
            "Last read latency per station",
            labels=["site", "station"],
        )
        miss = GaugeMetricFamily(
            "stationd_station_consecutive_misses",
            "Ticks without a good sample",
            labels=["site", "station"],
        )
        up = GaugeMetricFamily(
            "stationd_station_up",
            "1 if the station answered the last tick",
            labels=["site", "station"],
        )
        good = GaugeMetricFamily(
            "stationd_station_good_signals_ratio",
            "Share of the station's canonical signals with good quality",
            labels=["site", "station"],
        )
        rec = CounterMetricFamily(
            "stationd_reconnects", "Reconnects per station", labels=["site", "station"]
        )
        fail = CounterMetricFamily(
            "stationd_read_failures", "Failed reads per station", labels=["site", "station"]
        )
        for i, sid in enumerate(p.station_ids):
            v = float(p.latency_s[i])
            if not math.isnan(v):
                lat.add_metric([site, sid], v)
            miss.add_metric([site, sid], float(p.consecutive_misses[i]))
            up.add_metric([site, sid], 1.0 if p.up[i] else 0.0)
            g = float(p.good_ratio[i])
            if not math.isnan(g):
                good.add_metric([site, sid], g)
            rec.add_metric([site, sid], float(p.reconnects[i]))
            fail.add_metric([site, sid], float(p.read_failures[i]))
        yield from (lat, miss, up, good, rec, fail)
        yield CounterMetricFamily("stationd_ticks", "Ticks opened", value=float(p.ticks))
        yield CounterMetricFamily(
            "stationd_ticks_skipped", "Ticks skipped (loop late)", value=float(p.ticks_skipped)
        )
        yield CounterMetricFamily(
            "stationd_clock_steps", "Backward wall-clock steps", value=float(p.clock_steps)
        )
        yield CounterMetricFamily(
            "stationd_late_results",
            "Reads that arrived after their tick closed",
            value=float(p.late_results),
        )
        yield CounterMetricFamily(
            "stationd_handler_overruns",
            "Ticks whose sinks ran into the next tick",
            value=float(p.handler_overruns),
        )
        if not math.isnan(d.detect_seconds):
            yield GaugeMetricFamily(
                "stationd_detection_pass_seconds", "Last detection pass", value=d.detect_seconds
            )
        by_kind = GaugeMetricFamily(
            "stationd_findings_active", "Active findings by kind", labels=["site", "finding"]
        )
        for kind, n in sorted(Counter(f.kind for f in d.active_findings).items()):
            by_kind.add_metric([site, kind], float(n))
        yield by_kind
        for name, value, help_ in d.extra_gauges():
            yield GaugeMetricFamily(name, help_, value=value)


class HealthServer:
    def __init__(
        self,
        daemon: Observed,
        host: str = "127.0.0.1",
        port: int = 9810,
        registry: CollectorRegistry | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.daemon = daemon
        self.host, self.port = host, port
        self.registry = registry or CollectorRegistry()
        self.registry.register(DaemonCollector(daemon))
        self.wall = wall
        self._runner: web.AppRunner | None = None

    async def _metrics(self, _req: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(
            body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )

    async def _healthz(self, _req: web.Request) -> web.Response:
        # Alive = the tick loop committed a tick recently (a hung loop fails this).
        d = self.daemon
        last = d.last_tick
        age = float("inf") if last is None else self.wall() - last
        limit = 3 * d.tick_interval + 5
        if last is None or age <= limit:
            return web.json_response(
                {"status": "ok", "last_tick_age_s": None if last is None else round(age, 3)}
            )
        return web.json_response(
            {"status": "stalled", "last_tick_age_s": round(age, 3)}, status=503
        )

    async def _readyz(self, _req: web.Request) -> web.Response:
        # A historian that refuses our config loses nothing (the queue keeps it), but the
        # box is not doing its job until a person fixes it: not ready, and say why.
        problem = self.daemon.historian_problem
        if problem:
            return web.json_response(
                {"status": "historian configuration error", "historian": problem}, status=503
            )
        if self.daemon.ready.is_set():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "starting"}, status=503)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sock = site._server.sockets[0] if site._server and site._server.sockets else None  # type: ignore[union-attr]
        if sock is not None:
            self.port = sock.getsockname()[1]
        log.info("health endpoint http://%s:%d/metrics /healthz /readyz", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
