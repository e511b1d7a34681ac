"""/metrics (Prometheus text), /healthz and /readyz on a local port.

The metrics are read from the poller's and detector's own arrays at scrape time by a
custom collector, so the tick path pays nothing for them. Binds to loopback by default.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from stationd.app import Daemon

log = logging.getLogger(__name__)


class HttpConfig(BaseModel):
    """The `http:` section. Loopback by default: metrics are not for the open network."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9810, ge=0, le=65535)  # 0: any free port (tests)


class DaemonCollector(Collector):
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def collect(self) -> Iterable[Any]:
        d = self.d
        p = d.poller
        site = d.cfg.site.id
        ids = [s.station.id for s in p.supervisors]
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
        latest = d.frame.latest()
        for i, sid in enumerate(ids):
            v = float(p.latency[i])
            if not math.isnan(v):
                lat.add_metric([site, sid], v)
            miss.add_metric([site, sid], float(d.frame.consecutive_misses[i]))
            up.add_metric(
                [site, sid], 1.0 if d.frame.consecutive_misses[i] == 0 and d.frame.count else 0.0
            )
            cols = p.supervisors[i].frame_cols
            if len(cols):
                row = latest[i, cols]
                good.add_metric([site, sid], float((row == row).sum()) / len(cols))
            rec.add_metric([site, sid], float(p.reconnects[i]))
            fail.add_metric([site, sid], float(p.read_failures[i]))
        yield from (lat, miss, up, good, rec, fail)
        yield CounterMetricFamily("stationd_ticks", "Ticks opened", value=float(p.clock.ticks))
        yield CounterMetricFamily(
            "stationd_ticks_skipped", "Ticks skipped (loop late)", value=float(p.clock.skipped)
        )
        yield CounterMetricFamily(
            "stationd_clock_steps", "Backward wall-clock steps", value=float(p.clock.clock_steps)
        )
        yield CounterMetricFamily(
            "stationd_late_results",
            "Reads that arrived after their tick closed",
            value=float(p.late),
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
        for kind, n in sorted(Counter(f.kind for f in d.findings).items()):
            by_kind.add_metric([site, kind], float(n))
        yield by_kind
        for name, value, help_ in d.extra_gauges():
            yield GaugeMetricFamily(name, help_, value=value)


class HealthServer:
    def __init__(
        self,
        daemon: Daemon,
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
        age = self.wall() - d.frame.now if d.frame.count else float("inf")
        limit = 3 * d.cfg.defaults.interval + 5
        if d.frame.count == 0 or age <= limit:
            return web.json_response(
                {"status": "ok", "last_tick_age_s": None if d.frame.count == 0 else round(age, 3)}
            )
        return web.json_response(
            {"status": "stalled", "last_tick_age_s": round(age, 3)}, status=503
        )

    async def _readyz(self, _req: web.Request) -> web.Response:
        # A historian that refuses our config loses nothing (the queue keeps it), but the
        # box is not doing its job until a person fixes it: not ready, and say why.
        problem = self.daemon.historian.config_error
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
