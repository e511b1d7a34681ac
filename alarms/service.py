"""AlarmService: the alarm side of the daemon — its lifecycle and its pipeline of stages.

The daemon calls `start()`, `on_tick()` once per tick and `stop()`; operator commands
(MQTT or CLI) come in through `command()`. Both become a `Batch` that runs through the
same stages (alarms/stages.py: engine → playbooks → paging → store → dispatch log →
MQTT → retire → pager delivery → hooks) under one lock. Commands are a table of handlers
(alarms/handlers.py); select-before-operate has its own flow (alarms/control.py).

Hooks out (each sync or async, a failure logged and never fatal): `pager_hooks` (the
pagers), `transition_hooks` and `field_reading_hooks` (the historian), `log_hooks`
(every dispatch-log row, after it is on disk: the historian copies commands, steps,
controls and readings).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from alarms import commands as cmds
from alarms import entries, payloads
from alarms.batch import Batch
from alarms.control import ControlDesk, ControlWriter, FrameView
from alarms.dispatch_log import DispatchLog, LogEntry
from alarms.engine import AlarmEngine, AlarmRecord, CommandError
from alarms.files import LOG_FILE, OUTBOX_FILE, STATE_FILE
from alarms.handlers import HANDLERS, CommandSpec
from alarms.instances import PlaybookInstance, StepError
from alarms.model import (
    AlarmState,
    FieldReadingHook,
    PagerEvent,
    PagerHook,
    Transition,
    TransitionHook,
)
from alarms.mqtt import MqttBridge
from alarms.pager.stage import DeliveryStage, PagingStage
from alarms.playbooks import PlaybookLibrary, load_playbooks
from alarms.settings import ControlSettings, MqttSettings, SiteConfig, StationInfo
from alarms.stages import (
    HookStage,
    LogStage,
    MqttStage,
    Pipeline,
    PlaybookStage,
    RetireStage,
    StoreStage,
    station_name,
)
from alarms.store import StateStore
from alarms.tuning import AlarmTuning

__all__ = ["AlarmService", "StationInfo"]

log = logging.getLogger(__name__)
S = AlarmState


class AlarmService:
    def __init__(
        self,
        site_id: str,
        state_dir: Path,
        *,
        site_name: str = "",
        stations: Iterable[StationInfo] = (),
        playbooks: PlaybookLibrary | None = None,
        tuning: dict[str, AlarmTuning | dict[str, float]] | None = None,
        mqtt: MqttSettings | None = None,
        operators: Iterable[str] | None = None,
        control: ControlSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.site = site_id
        self.site_name = site_name
        self.state_dir = Path(state_dir)
        self.stations: dict[str, StationInfo] = {s.id: s for s in stations}
        self.playbooks = playbooks or load_playbooks()
        self.engine = AlarmEngine(site_id, tuning, self.playbooks.severity_floor())
        self.operators = frozenset(operators) if operators is not None else None
        self.clock = clock
        self.instances: dict[str, PlaybookInstance] = {}
        self.pager_hooks: list[PagerHook] = []
        self.transition_hooks: list[TransitionHook] = []
        self.field_reading_hooks: list[FieldReadingHook] = []
        self.log_hooks: list[Callable[[LogEntry], Any]] = []
        self.mqtt_settings = mqtt
        self.bridge: MqttBridge | None = None
        self.store: StateStore | None = None
        self.log: DispatchLog | None = None
        self.lock = asyncio.Lock()
        # looked up per command: a config reload replaces self.stations
        self.control = ControlDesk(control, self._allowed_points)
        self.paging = PagingStage(site_id, self.engine, self._playbooks, self._stations)
        self._pipeline: Pipeline | None = None
        self._delivery: DeliveryStage | None = None
        self._log_stage: LogStage | None = None
        self._mqtt_stage: MqttStage | None = None

    @classmethod
    def from_config(
        cls,
        config: SiteConfig,
        state_dir: Path | None = None,
        mqtt: MqttSettings | None = None,
    ) -> AlarmService:
        """Build from the daemon's config (stationd.config.Config fits `SiteConfig`): the
        site, its stations (Chinese names), and the `alarms:` and `mqtt:` sections, already
        validated with the whole file (an absent `mqtt:` means no MQTT)."""
        section = config.alarms
        if mqtt is None:
            mqtt = config.mqtt
        state_dir = state_dir or config.state_dir
        if state_dir is None:
            where = str(config.path or "config")
            raise ValueError(f"{where}: state_dir is needed for alarm state and the dispatch log")
        return cls(
            config.site.id,
            Path(state_dir),
            site_name=config.site.name,
            stations=[StationInfo.of(s) for s in config.stations],
            playbooks=load_playbooks(section.playbook_dir) if section.playbook_dir else None,
            mqtt=mqtt,
            operators=section.operators,
            tuning=dict(section.tuning),
            control=section.control,
        )

    def set_control_writer(
        self,
        writer: ControlWriter,
        frame: FrameView | Callable[[], FrameView] | None = None,
    ) -> None:
        """Give select-before-operate its write path (`Poller.write`) and the frame it reads
        the result back from (or a function returning the current frame). Without a writer
        every select is refused."""
        self.control.attach(writer, frame)

    def update_fleet(
        self, stations: Iterable[StationInfo], playbooks: PlaybookLibrary | None = None
    ) -> None:
        """A config reload: the new fleet's stations, and new playbooks when they changed."""
        self.stations = {s.id: s for s in stations}
        if playbooks is not None:
            self.playbooks = playbooks
            self.engine.severity_floor = playbooks.severity_floor()

    def _allowed_points(self, station: str) -> frozenset[str]:
        info = self.stations.get(station)
        return frozenset(info.control_allow) if info is not None else frozenset()

    def _stations(self) -> Mapping[str, StationInfo]:
        return self.stations

    def _playbooks(self) -> PlaybookLibrary:
        return self.playbooks

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = StateStore(self.state_dir / STATE_FILE)
        self.log = DispatchLog(self.state_dir / LOG_FILE)
        alarms, instances = await asyncio.to_thread(self.store.load)
        self.engine.restore(alarms)
        for d in instances:
            inst = PlaybookInstance.from_dict(d)
            self.instances[inst.incident_id] = inst
        if self.mqtt_settings is not None:
            self.bridge = MqttBridge(
                self.mqtt_settings,
                self.site,
                self.state_dir / OUTBOX_FILE,
                on_command=self.command,
            )
            await self.bridge.start()
        self._build_pipeline()
        if self._mqtt_stage is not None:
            await self._mqtt_stage.publish_status()
        n = len(self.engine.active())
        await self._append_log(
            [entries.daemon(self.clock(), f"报警服务启动，恢复 {n} 个未关闭报警",
                            f"alarm service started, {n} alarm(s) restored")]
        )  # fmt: skip
        # a crash between recording a page and handing it over: hand it over now, once
        assert self._delivery is not None
        await self._delivery.deliver()

    def _build_pipeline(self) -> None:
        assert self.store is not None and self.log is not None
        self._log_stage = LogStage(self.log, self.log_hooks, self._stations)
        self._delivery = DeliveryStage(self.store, self.pager_hooks)
        if self.bridge is not None:
            self._mqtt_stage = MqttStage(
                self.bridge, self.site, self.site_name, self.engine, self.instances,
                self._playbooks, self._stations,
            )  # fmt: skip
        stages = [
            PlaybookStage(self.engine, self.instances, self._playbooks),
            self.paging,
            StoreStage(self.store, self.engine, self.instances),
            self._log_stage,
            *([self._mqtt_stage] if self._mqtt_stage is not None else []),
            RetireStage(self.instances),
            self._delivery,
            HookStage(self.transition_hooks, self.field_reading_hooks),
        ]
        self._pipeline = Pipeline(stages)

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop; MQTT messages not acknowledged within `drain_timeout` stay on disk."""
        if self.bridge is not None:
            await self.bridge.stop(drain_timeout)
            self.bridge = None
        if self.log is not None:
            stopped = entries.daemon(self.clock(), "报警服务停止", "alarm service stopped")
            await asyncio.to_thread(self.log.append, [stopped])
            self.log.close()
            self.log = None
        if self.store is not None:
            self.store.close()
            self.store = None
        self._pipeline = None

    # -- the tick ----------------------------------------------------------------------
    async def on_tick(self, tick_time: float, findings: Iterable[Any]) -> list[Transition]:
        """The findings active at this tick through the engine and every stage; returns
        the transitions (raise and clear are decided here, once)."""
        async with self.lock:
            batch = Batch(tick_time, self.engine.step(tick_time, list(findings)))
            return (await self.run_batch(batch)).transitions

    async def run_batch(self, batch: Batch) -> Batch:
        """One batch through the stages (the caller holds the lock)."""
        if self._pipeline is None:
            raise RuntimeError("the alarm service is not started")
        return await self._pipeline.run(batch)

    async def _append_log(self, rows: list[LogEntry]) -> None:
        assert self._log_stage is not None
        await self._log_stage.append(rows)

    # -- commands ----------------------------------------------------------------------
    async def command(
        self, raw: bytes | str | dict[str, Any], caller: cmds.Caller | None = None
    ) -> dict[str, Any]:
        """Run one operator command; always returns a stationd.cmd_result/1 document.
        `caller`: who sent it when the transport knows; else the operator it names."""
        now = self.clock()
        try:
            c = cmds.parse_command(raw)
        except cmds.CommandRejected as e:
            log.warning("command refused: %s", e)
            return cmds.result(e.request_id, e.command, e.operator, False, now, str(e))
        caller = caller or cmds.Caller(c.operator)
        spec = HANDLERS[type(c)]
        refusal = self._refusal(caller, spec)
        if refusal:
            async with self.lock:
                await self._log_command(c, caller, now, ok=False, error=refusal)
            return cmds.result(c.request_id, c.command, caller.operator, False, now, refusal)
        if spec.control is not None:
            return await spec.control(self, c, caller, now)
        assert spec.handle is not None
        async with self.lock:
            incident = self._command_incident(c)  # before it runs: an ack may close it
            batch = Batch(now)
            try:
                detail = spec.handle(self, c, caller, batch)
            except (CommandError, StepError) as e:
                await self._log_command(c, caller, now, ok=False, error=str(e))
                return cmds.result(c.request_id, c.command, caller.operator, False, now, str(e))
            batch.lead.append(self._command_entry(c, caller, now, True, "", incident))
            out = (await self.run_batch(batch)).transitions
        if out and not detail:
            last = out[-1]
            detail = {
                "alarm_id": last.alarm_id,
                "incident_id": last.incident_id,
                "state": str(last.to_state),
            }
        return cmds.result(c.request_id, c.command, caller.operator, True, now, None, detail)

    def _refusal(self, caller: cmds.Caller, spec: CommandSpec) -> str:
        """Why `caller` may not do what `spec` does ("" when allowed). Today one list of
        operators may do everything; roles per permission would decide here."""
        if self.operators is not None and caller.operator not in self.operators:
            return f"operator {caller.operator!r} is not allowed to command this site (无操作权限)"
        return ""

    def _command_incident(self, c: Any) -> str:
        direct = getattr(c, "incident", "") or getattr(c, "incident_id", "") or ""
        if direct:
            return direct
        rec = self.engine.records.get(getattr(c, "alarm_id", "") or "")
        return rec.incident_id if rec is not None else ""

    def _command_entry(
        self, c: Any, caller: cmds.Caller, now: float, ok: bool, error: str, incident: str
    ) -> LogEntry:
        args = c.model_dump(exclude={"schema_", "request_id", "operator", "command"})
        return entries.command(
            now, c.command, caller.operator, c.request_id, args, ok, error,
            alarm_id=getattr(c, "alarm_id", "") or "", incident_id=incident,
            station=getattr(c, "station", "") or "",
        )  # fmt: skip

    async def _log_command(
        self, c: Any, caller: cmds.Caller, now: float, ok: bool, error: str
    ) -> None:
        await self._append_log(
            [self._command_entry(c, caller, now, ok, error, self._command_incident(c))]
        )

    # -- queries -----------------------------------------------------------------------
    def active_count(self) -> int:
        """Alarms not normal."""
        return len(self.engine.active())

    def active_records(self) -> list[AlarmRecord]:
        """Alarm records not normal, most urgent first (the historian writes their states
        every tick; the derived `alarm_level` is the worst per station)."""
        return self.engine.active()

    def active_alarms(self) -> list[dict[str, Any]]:
        """Every alarm not normal, most urgent first, as the MQTT alarm document."""
        return [self.alarm_payload(r) for r in self.engine.active()]

    def alarm_payload(self, rec: AlarmRecord) -> dict[str, Any]:
        pb = self.playbooks.for_kind(rec.kind)
        name = station_name(self.stations, rec.station, "")
        return payloads.alarm(self.site, rec, name, pb.id if pb else "")

    def active_pages(self) -> list[PagerEvent]:
        """The trigger event of every incident still raised, for the pagers after a
        restart (Alertmanager forgets alerts that are not re-sent); pages nothing."""
        return self.paging.active_pages()

    @property
    def pages_sent(self) -> int:
        """Pages handed to the pager hooks since start."""
        return self._delivery.delivered if self._delivery is not None else 0

    async def stats(self) -> dict[str, float]:
        """Counters for /metrics: alarm states, pages handed over, the MQTT queue."""
        by_state: dict[str, int] = {str(st): 0 for st in AlarmState if st is not S.NORMAL}
        for r in self.engine.active():
            by_state[str(r.state)] += 1
        out: dict[str, float] = {f"alarms_{k}": v for k, v in by_state.items()}
        out["playbooks_open"] = len(self.instances)
        out["pages_sent"] = self.pages_sent
        if self.bridge is not None:
            b = self.bridge
            out["mqtt_connected"] = float(b.connected.is_set())
            out["mqtt_sent"] = b.sent
            out["mqtt_outbox_depth"] = await asyncio.to_thread(len, b.outbox)
            out["mqtt_outbox_dropped"] = b.outbox.dropped
            out["mqtt_commands_dropped"] = b.commands_dropped
        return out
