"""The composition root: build the daemon's parts from the config and run them.

Parts start in dependency order (sinks, then detection, then pollers) inside an
AsyncExitStack and stop in reverse, so queues are flushed after the last tick is in.
Nothing here does the work itself; each part lives in its own module.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path

from prometheus_client import CollectorRegistry

from alarms.kpi import kpi_fields
from alarms.pager.fanout import Pager
from alarms.pager.metrics import register_pager_metrics
from alarms.service import AlarmService, StationInfo
from drivers.factory import make_driver
from stationd import state
from stationd.config import AnyStation, Config, shard_of
from stationd.derived import DerivedWriter
from stationd.detect.engine import Detector
from stationd.detect.static import FleetStatic
from stationd.finding_stream import FindingChange, changes_from, log_changes
from stationd.findings import Finding
from stationd.frame import FleetFrame
from stationd.health import HealthServer
from stationd.historian import Historian
from stationd.poller import Poller, PollStats, StationSupervisor, TickReport
from stationd.reload import (
    ReloadError,
    ReloadPlan,
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


def record_alarm_history(alarms: AlarmService, historian: Historian) -> None:
    """DESIGN: every transition, command and step also goes to the historian — and so do
    controls, notes and manual field readings (measurements `alarm`, `dispatch`,
    `field_reading`)."""
    alarms.transition_hooks.append(historian.write_alarm)
    alarms.log_hooks.append(historian.write_dispatch)
    alarms.field_reading_hooks.append(historian.write_field_reading)


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
        self.state_dir = state.resolve(state_dir, self.cfg.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ids = [s.id for s in self.cfg.stations]
        self.frame = FleetFrame(ids, self.cfg.defaults.window)
        self.static = FleetStatic.from_config(self.cfg)
        self.detector = Detector(self.static)
        # findings as last seen, per alarm id: the finding log names what an alarm is about
        self._seen: dict[str, Finding] = {}
        self.derived = DerivedWriter()
        factory = driver_factory or (lambda st, c: make_driver(st, c.defaults))
        self.poller = Poller(self.cfg, self.frame, factory, on_tick=self._on_tick)  # type: ignore[arg-type]
        self.notifier = Notifier()
        self.listeners: list[TickListener] = []
        # Gauges other parts expose on /metrics: (name, value, help) triples at scrape time.
        self.gauge_sources: list[Callable[[], Iterable[tuple[str, float, str]]]] = []
        self.http_cfg = self.cfg.http
        self.health: HealthServer | None = None
        self.findings: list[Finding] = []
        self._detect_seconds = float("nan")
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
        if self.cfg.mqtt is not None:
            self.cfg.mqtt.password()  # a missing password env var or file fails now, named
        self.alarms = AlarmService.from_config(
            self.cfg, state_dir=self.state_dir / state.ALARMS_SUBDIR
        )
        self.alarms.set_control_writer(self.poller.write, lambda: self.frame)
        self.pager: Pager | None = None
        if self.cfg.pager is not None:
            self.pager = Pager.from_config(self.cfg.pager)
            register_pager_metrics(self.pager, self.registry)
            self.alarms.pager_hooks.append(self.pager.notify)
        record_alarm_history(self.alarms, self.historian)
        self.reports = ReportScheduler(
            self.cfg, self.state_dir, self.state_dir / state.REPORTS_SUBDIR
        )
        self.gauge_sources.append(self._queue_gauges)
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
        self._detect_seconds = time.perf_counter() - t0
        self.findings = findings
        self._seen.update((f.alarm_id, f) for f in findings)
        # extras go as read, one array per station in its read order: no names per tick
        self.historian.write_tick(tick, self.frame.latest(), report.extras)
        transitions = []
        try:
            transitions = await self.alarms.on_tick(tick, findings)
        except Exception:  # the alarm side must not stop polling; its state is on disk
            log.exception("alarm service failed on tick %.0f", tick)
        # raise/clear is the alarm engine's decision; the finding log follows it
        changes = changes_from(transitions, self._seen)
        log_changes(changes)
        active = self.alarms.active_records()
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
                "alarms_active": self.alarms.active_count(),
                "detect_seconds": self._detect_seconds,
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
                done.set_result(self.apply(plan))
            except Exception as exc:  # nothing was swapped (see apply): old fleet runs on
                done.set_exception(exc)

    def apply(self, plan: ReloadPlan) -> list[StationSupervisor]:
        """Swap the fleet-shaped parts to a reload plan (between ticks, on the loop).

        Each part takes the new fleet through its own public method; the plan was built
        and validated off the loop (stationd/reload.py), so this is only a swap of
        references. Returns the retired supervisors; the caller closes their drivers off
        the tick path."""
        cfg, diff = plan.cfg, plan.diff
        frame = self.frame.reshaped([s.id for s in cfg.stations], keep=frozenset(diff.unchanged))
        retired = self.poller.reconfigure(cfg, frame, restart=set(diff.changed))
        self.frame = frame
        self.static = plan.static
        self.detector = plan.detector
        self.historian.encoder = plan.encoder
        self.alarms.update_fleet(
            [StationInfo.of(s) for s in cfg.stations],
            plan.playbooks if plan.playbooks_changed else None,
        )
        self.reports.update_config(cfg)  # the next daily report covers the new fleet
        self.cfg = cfg
        return retired

    # -- what the health endpoint and the status line read (stationd.health.Observed) ----
    @property
    def site_id(self) -> str:
        return self.cfg.site.id

    @property
    def tick_interval(self) -> float:
        return self.cfg.defaults.interval

    @property
    def last_tick(self) -> float | None:
        return self.frame.now if self.frame.count else None

    @property
    def detect_seconds(self) -> float:
        """Time of the last detection pass (NaN before the first)."""
        return self._detect_seconds

    @property
    def active_findings(self) -> Sequence[Finding]:
        return self.findings

    @property
    def historian_problem(self) -> str | None:
        return self.historian.config_error

    def poll_stats(self) -> PollStats:
        return self.poller.stats()

    def _queue_gauges(self) -> Iterable[tuple[str, float, str]]:
        yield ("stationd_alarms_active", float(self.alarms.active_count()), "Alarms not normal")

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
                fields = await asyncio.to_thread(kpi_fields, self.state_dir / state.ALARMS_SUBDIR)
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
    try:
        daemon = Daemon(cfg, state_dir=state_dir, shard=shard)
    except (ValueError, OSError) as exc:
        # a secret's env var or file missing, a state dir not writable: say which, exit 2
        log.debug("start-up failed", exc_info=True)
        print(f"{cfg.path or 'config'}: cannot start / 无法启动: {exc}", file=sys.stderr)
        return 2
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    loop.add_signal_handler(signal.SIGHUP, daemon.request_reload)
    await daemon.run()
    return 0


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
