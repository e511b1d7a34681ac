"""The composition root: build the daemon's parts from the config and run them.

Parts start in dependency order (sinks, then detection, then pollers) inside an
AsyncExitStack and stop in reverse, so queues are flushed after the last tick is in.
Nothing here does the work itself; each part lives in its own module.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from pathlib import Path

from prometheus_client import CollectorRegistry

from alarms.pager import Pager
from alarms.pager_metrics import register_pager_metrics
from alarms.service import AlarmService
from drivers.factory import make_driver
from stationd.config import AnyStation, Config, shard_of
from stationd.derived import DerivedWriter
from stationd.detect.engine import Detector
from stationd.detect.static import FleetStatic
from stationd.finding_stream import FindingChange, FindingStream, log_changes
from stationd.findings import Finding
from stationd.frame import FleetFrame
from stationd.health import HealthServer, HttpConfig
from stationd.historian import Historian
from stationd.kpi import kpi_fields
from stationd.poller import Poller, StationSupervisor, TickReport
from stationd.reload import (
    ReloadError,
    ReloadPlan,
    apply_plan,
    prepare_reload,
    remove_pid_file,
    write_pid_file,
)
from stationd.report import ReportScheduler
from stationd.sdnotify import Notifier

log = logging.getLogger(__name__)

TickListener = Callable[[float, TickReport, list[Finding], list[FindingChange]], None]


def apply_shard(cfg: Config, shard: str | None) -> Config:
    """Keep only this daemon's shard of the fleet (`k/n`, stable hash of the station id)."""
    spec = shard or cfg.site.shard
    if not spec:
        return cfg
    k, n = (int(x) for x in spec.split("/"))
    if not 0 <= k < n:
        raise ValueError(f"shard {spec}: need 0 <= k < n")
    mine = tuple(s for s in cfg.stations if shard_of(s.id, n) == k)
    return cfg.model_copy(update={"stations": mine})


def default_state_dir() -> Path:
    # systemd's StateDirectory= sets $STATE_DIRECTORY; by hand we use ./state.
    import os

    return Path(os.environ.get("STATE_DIRECTORY", "state"))


class Daemon:
    """One site's (or shard's) stationd: poll, detect, and hand results to the sinks."""

    def __init__(
        self,
        cfg: Config,
        state_dir: Path | None = None,
        shard: str | None = None,
        driver_factory: Callable[[AnyStation, Config], object] | None = None,
    ) -> None:
        self.shard = shard
        self.cfg = apply_shard(cfg, shard)
        self.state_dir = state_dir or default_state_dir()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ids = [s.id for s in self.cfg.stations]
        self.frame = FleetFrame(ids, self.cfg.defaults.window)
        self.static = FleetStatic.from_config(self.cfg)
        self.detector = Detector(self.static)
        self.stream = FindingStream()
        self.derived = DerivedWriter()
        factory = driver_factory or (lambda st, c: make_driver(st, c.defaults))
        self.poller = Poller(self.cfg, self.frame, factory, on_tick=self._on_tick)  # type: ignore[arg-type]
        self.notifier = Notifier()
        self.listeners: list[TickListener] = []
        # Gauges other parts expose on /metrics: (name, value, help) triples at scrape time.
        self.gauge_sources: list[Callable[[], Iterable[tuple[str, float, str]]]] = []
        self.http_cfg = HttpConfig.model_validate(self.cfg.http)
        self.health: HealthServer | None = None
        self.findings: list[Finding] = []
        self.detect_seconds = float("nan")
        self.ready = asyncio.Event()
        self.stop_event = asyncio.Event()
        # One registry for everything this daemon exports on /metrics.
        self.registry = CollectorRegistry()
        self.historian = Historian.from_config(
            self.cfg.historian,
            self.cfg.site.id,
            list(self.cfg.stations),
            self.state_dir,
            registry=self.registry,
        )
        self.alarms = AlarmService.from_config(self.cfg, state_dir=self.state_dir / "alarms")
        self.alarms.set_control_writer(self.poller.write, lambda: self.frame)
        self.pager: Pager | None = None
        if self.cfg.pager:
            self.pager = Pager.from_config(self.cfg.pager)
            register_pager_metrics(self.pager, self.registry)
            self.alarms.pager_hooks.append(self.pager.notify)
        self.alarms.transition_hooks.append(self.historian.write_alarm)
        self.reports = ReportScheduler(self.cfg, self.state_dir, self.state_dir / "reports")
        self.gauge_sources.append(self._queue_gauges)
        self._extra_names = [st.extras for st in self.cfg.stations]
        # SIGHUP: the reload task validates off the tick path, the tick handler swaps
        self.reloads = 0
        self.reload_failures = 0
        self._reload_requested = asyncio.Event()
        self._pending: tuple[ReloadPlan, asyncio.Future[list[StationSupervisor]]] | None = None
        self.gauge_sources.append(self._reload_gauges)

    async def _on_tick(self, tick: float, report: TickReport) -> None:
        if report.clock_stepped:
            # Incremental detector state assumes forward time; start it afresh.
            self.detector = Detector(self.static)
        t0 = time.perf_counter()
        findings = self.detector.step(self.frame)
        self.detect_seconds = time.perf_counter() - t0
        changes = self.stream.update(tick, findings)
        log_changes(changes)
        self.findings = findings
        self.historian.write_tick(tick, self.frame.latest(), self._extras(report))
        try:
            await self.alarms.on_tick(tick, findings)
        except Exception:  # the alarm side must not stop polling; its state is on disk
            log.exception("alarm service failed on tick %.0f", tick)
        active = self.alarms.engine.active()
        self.historian.write_derived(
            tick, self.derived.fields(self.detector, self.static, self.frame, active)
        )
        self.historian.write_alarm_states(tick, active)
        for listener in self.listeners:
            try:
                listener(tick, report, findings, changes)
            except Exception:  # a view or sink bug must not stop polling
                log.exception("tick listener failed")
        if not self.ready.is_set() and self.poller.first_full_poll.is_set():
            self.ready.set()
            self.notifier.ready(self.status_line(report))
        self.historian.write_daemon(
            {
                "stations_answering": report.answered,
                "stations": report.stations,
                "findings_active": len(findings),
                "alarms_active": len(self.alarms.engine.active()),
                "detect_seconds": self.detect_seconds,
                "late_results": self.poller.late,
                "ticks_skipped": self.poller.clock.skipped,
                "historian_queue_depth": self.historian.queue_depth,
            },
            tick_time=tick,
        )
        self.notifier.watchdog()
        self.notifier.status(self.status_line(report))
        if self._pending is not None:
            # Between two ticks: the committed tick is fully handled, the next not opened.
            plan, done = self._pending
            self._pending = None
            try:
                done.set_result(apply_plan(self, plan))
            except Exception as exc:  # nothing was swapped (see apply_plan): old fleet runs on
                done.set_exception(exc)

    def _extras(self, report: TickReport) -> dict[int, dict[str, float]]:
        return {
            i: dict(zip(self._extra_names[i], map(float, vals), strict=True))
            for i, vals in report.extras.items()
        }

    def _queue_gauges(self) -> Iterable[tuple[str, float, str]]:
        yield (
            "stationd_alarms_active",
            float(len(self.alarms.engine.active())),
            "Alarms not normal",
        )

    def _reload_gauges(self) -> Iterable[tuple[str, float, str]]:
        yield ("stationd_config_reloads", float(self.reloads), "Config reloads applied")
        yield (
            "stationd_config_reload_failures",
            float(self.reload_failures),
            "Config reloads refused (invalid file; old config kept)",
        )

    def extra_gauges(self) -> Iterable[tuple[str, float, str]]:
        for source in self.gauge_sources:
            yield from source()

    def status_line(self, report: TickReport) -> str:
        return (
            f"{report.answered}/{report.stations} stations answering, "
            f"{len(self.findings)} findings active, tick {time.strftime('%H:%M:%S', time.localtime(report.tick))}"
        )

    async def run(self) -> None:
        async with AsyncExitStack() as stack:
            # Sinks first, pollers last; the stack stops them in reverse, so the last tick's
            # data is handed to the historian and alarms before their queues are flushed.
            await self.historian.start()
            stack.push_async_callback(self.historian.stop)
            if self.pager is not None:
                await self.pager.start()
                stack.push_async_callback(self.pager.stop)
            await self.alarms.start()
            stack.push_async_callback(self.alarms.stop)
            if self.pager is not None:
                # incidents raised before a restart: the pager re-sends them, never re-pages
                self.pager.restore(self.alarms.active_pages())
            if self.http_cfg.enabled:
                self.health = HealthServer(
                    self, self.http_cfg.host, self.http_cfg.port, registry=self.registry
                )
                await self.health.start()
                stack.push_async_callback(self.health.stop)
            stack.push_async_callback(self.poller.close)
            write_pid_file(self.state_dir)
            stack.callback(remove_pid_file, self.state_dir)
            reloader = asyncio.create_task(self._reload_loop(), name="reload")
            stack.push_async_callback(_cancel, reloader)
            # The plan's 09:00 / 17:00 daily report and the hourly alarm KPIs.
            reports = asyncio.create_task(self.reports.run(self.stop_event), name="daily-report")
            stack.push_async_callback(_cancel, reports)
            kpis = asyncio.create_task(self._kpi_loop(), name="alarm-kpis")
            stack.push_async_callback(_cancel, kpis)
            log.info(
                "stationd starting site=%s stations=%d interval=%ss",
                self.cfg.site.id,
                len(self.cfg.stations),
                self.cfg.defaults.interval,
            )
            await self.poller.run(self.stop_event)
        self.notifier.stopping()
        log.info("stationd stopped")

    async def _kpi_loop(self) -> None:
        """Every hour, the last 24 h of alarm-system KPIs into the `daemon` measurement."""
        while True:
            try:
                fields = await asyncio.to_thread(kpi_fields, self.state_dir / "alarms")
                self.historian.write_daemon(fields)
            except Exception:  # KPIs are advisory: a failure is logged, the loop goes on
                log.exception("alarm KPI computation failed")
            await asyncio.sleep(3600)

    def request_stop(self) -> None:
        self.stop_event.set()

    def request_reload(self) -> None:
        """SIGHUP: reload stations.yaml and playbooks (safe to call from a signal handler)."""
        self._reload_requested.set()

    async def _reload_loop(self) -> None:
        while True:
            await self._reload_requested.wait()
            self._reload_requested.clear()
            try:
                await self.reload()
            except Exception:  # a reload bug must not take the daemon down
                self.reload_failures += 1
                log.exception("reload failed; the old config stays in use")

    async def reload(self) -> bool:
        """Reload the config file now; True when applied (or nothing changed)."""
        path = self.cfg.path
        if path is None:
            log.error("reload: the config was not loaded from a file; nothing to reload")
            self.reload_failures += 1
            return False
        log.info("reload requested: %s / 重新加载配置", path)
        try:
            plan = await asyncio.to_thread(
                prepare_reload,
                self.cfg,
                Path(path),
                lambda c: apply_shard(c, self.shard),
                self.alarms.playbooks,
            )
        except ReloadError as exc:
            self.reload_failures += 1
            for line in exc.errors:
                log.error("reload refused, old config kept / 配置无效，保留原配置: %s", line)
            return False
        for warning in plan.warnings:
            log.warning("reload: %s", warning)
        if plan.diff.empty and not plan.playbooks_changed:
            log.info("reload: no station or playbook changed")
            self.reloads += 1
            return True
        done: asyncio.Future[list[StationSupervisor]] = asyncio.get_running_loop().create_future()
        self._pending = (plan, done)
        retired = await done  # the tick handler applies it between two ticks
        await self.poller.retire(retired)
        self.reloads += 1
        d = plan.diff
        log.info(
            "reload applied: stations %s (added %s, removed %s, changed %s), playbooks %s",
            d.summary(),
            ",".join(d.added) or "-",
            ",".join(d.removed) or "-",
            ",".join(d.changed) or "-",
            "reloaded" if plan.playbooks_changed else "unchanged",
        )
        return True


async def run_daemon(cfg: Config, state_dir: Path | None = None, shard: str | None = None) -> int:
    daemon = Daemon(cfg, state_dir=state_dir, shard=shard)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    loop.add_signal_handler(signal.SIGHUP, daemon.request_reload)
    await daemon.run()
    return 0


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
