"""AlarmService: the alarm side of the daemon, wired together for the composition root.

Per tick: findings → engine transitions → playbook instances and escalations → state on
disk → dispatch log → MQTT → pager hooks. Operator commands (MQTT or CLI) go through the
same lock and the same path. The daemon calls `start()`, `on_tick()` each tick, `stop()`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alarms import commands as cmds
from alarms.control import (
    ControlDesk,
    ControlSettings,
    ControlWriter,
    FrameView,
    Selection,
)
from alarms.dispatch_log import LOG_FILE, DispatchLog, LogEntry
from alarms.engine import AlarmEngine, AlarmRecord, CommandError
from alarms.instances import PlaybookInstance, StepError
from alarms.model import (
    ESCALATED,
    AlarmState,
    FieldReading,
    FieldReadingHook,
    PagerEvent,
    PagerHook,
    Transition,
    TransitionHook,
)
from alarms.mqtt import MqttBridge, MqttSettings
from alarms.playbooks import PlaybookLibrary, load_playbooks
from alarms.routing import page_summary, routing_labels
from alarms.settings import alarms_section, mqtt_section
from alarms.store import STATE_FILE, StateStore
from alarms.tuning import AlarmTuning
from stationd.findings import Finding
from stationd.signals import BY_NAME

log = logging.getLogger(__name__)
S = AlarmState
ALARM_SCHEMA = "stationd.alarm/1"
EVENT_SCHEMA = "stationd.event/1"

_STATE_ZH = {
    "normal": "正常",
    "unack": "报警未确认",
    "acked": "报警已确认",
    "rtn_unack": "已恢复未确认",
    "shelved": "已搁置",
    "suppressed": "已抑制",
}


@dataclass(frozen=True, slots=True)
class StationInfo:
    id: str
    name: str = ""
    branch: str = ""
    power_feeder: str = ""
    heat_source: str = ""
    estates: tuple[str, ...] = ()
    service_centre: str = ""  # the crews serving the station (a pager routing label)
    # points a playbook step may write here (stations.yaml `control: {allow: [...]}`)
    control_allow: tuple[str, ...] = ()


async def _call_hook(hook: Callable[[Any], Any], arg: Any) -> None:
    try:
        r = hook(arg)
        if inspect.isawaitable(r):
            await r
    except Exception:
        log.exception("alarm hook %r failed", hook)


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
        self.stations = {s.id: s for s in stations}
        self.playbooks = playbooks or load_playbooks()
        self.engine = AlarmEngine(site_id, tuning, self.playbooks.severity_floor())
        self.operators = frozenset(operators) if operators is not None else None
        self.clock = clock
        self.instances: dict[str, PlaybookInstance] = {}
        self.pager_hooks: list[PagerHook] = []
        self.transition_hooks: list[TransitionHook] = []
        self.field_reading_hooks: list[FieldReadingHook] = []
        # every dispatch-log entry (transitions, commands, steps, escalations, notes,
        # field readings) after it is on disk: the daemon may copy them to the historian
        self.log_hooks: list[Callable[[LogEntry], Any]] = []
        self.pages_sent = 0
        self.mqtt_settings = mqtt
        self.bridge: MqttBridge | None = None
        self.store: StateStore | None = None
        self.log: DispatchLog | None = None
        self._lock = asyncio.Lock()
        self._last_active = -1
        # looked up per command: a config reload replaces self.stations
        self.control = ControlDesk(control, self._allowed_points)

    @classmethod
    def from_config(
        cls,
        config: Any,
        state_dir: Path | None = None,
        mqtt: MqttSettings | None = None,
    ) -> AlarmService:
        """Build from stationd.config.Config: site, stations (Chinese names), and its
        `alarms:` and `mqtt:` sections (validated here; an absent `mqtt:` means no MQTT)."""
        where = str(getattr(config, "path", None) or "config")
        section = alarms_section(getattr(config, "alarms", None), where)
        if mqtt is None:
            mqtt = mqtt_section(getattr(config, "mqtt", None), where)
        state_dir = state_dir or getattr(config, "state_dir", None)
        if state_dir is None:
            raise ValueError(f"{where}: state_dir is needed for alarm state and the dispatch log")
        stations = [
            StationInfo(
                id=s.id,
                name=getattr(s, "name", "") or "",
                branch=getattr(s, "branch", "") or "",
                power_feeder=getattr(s, "power_feeder", "") or "",
                heat_source=getattr(s, "heat_source", "") or "",
                estates=tuple(getattr(s, "estates", ()) or ()),
                service_centre=getattr(s, "service_centre", "") or "",
                control_allow=tuple(getattr(getattr(s, "control", None), "allow", ()) or ()),
            )
            for s in config.stations
        ]
        return cls(
            config.site.id,
            Path(state_dir),
            site_name=getattr(config.site, "name", "") or "",
            stations=stations,
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

    def _allowed_points(self, station: str) -> frozenset[str]:
        info = self.stations.get(station)
        return frozenset(info.control_allow) if info is not None else frozenset()

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
                self.state_dir / "mqtt_outbox.sqlite",
                on_command=self.command,
            )
            await self.bridge.start()
            await self._publish_status()
        n = len(self.engine.active())
        await self._append_log(
            [
                LogEntry(
                    time=self.clock(),
                    kind="daemon",
                    text_zh=f"报警服务启动，恢复 {n} 个未关闭报警",
                    text_en=f"alarm service started, {n} alarm(s) restored",
                )
            ]
        )
        # a crash between recording a page and handing it over: hand it over now, once
        await self._deliver_pages()

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop; MQTT messages not acknowledged within `drain_timeout` stay on disk."""
        if self.bridge is not None:
            await self.bridge.stop(drain_timeout)
            self.bridge = None
        if self.log is not None:
            await asyncio.to_thread(
                self.log.append,
                [
                    LogEntry(
                        time=self.clock(),
                        kind="daemon",
                        text_zh="报警服务停止",
                        text_en="alarm service stopped",
                    )
                ],
            )
            self.log.close()
            self.log = None
        if self.store is not None:
            self.store.close()
            self.store = None

    # -- queries for the CLI -----------------------------------------------------------
    def active_alarms(self) -> list[dict[str, Any]]:
        """Every alarm not normal, most urgent first, as the MQTT alarm document."""
        return [self.alarm_payload(r) for r in self.engine.active()]

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

    def alarm_payload(self, rec: AlarmRecord) -> dict[str, Any]:
        pb = self.playbooks.for_kind(rec.kind)
        info = self.stations.get(rec.station)
        return {
            "schema": ALARM_SCHEMA,
            "site": self.site,
            "alarm_id": rec.alarm_id,
            "incident_id": rec.incident_id,
            "state": str(rec.state),
            "state_zh": _STATE_ZH[str(rec.state)],
            "kind": rec.kind,
            "subject": rec.subject,
            "station": rec.station,
            "station_name": info.name if info else "",
            "stations": list(rec.stations),
            "severity": rec.severity,
            "priority": rec.priority,
            "value": rec.value if math.isfinite(rec.value) else None,
            "message_zh": rec.message_zh,
            "message_en": rec.message_en,
            "since": rec.since,
            "onset": rec.incident_onset,
            "acked_by": rec.acked_by,
            "shelved_until": rec.shelved_until if rec.state is S.SHELVED else None,
            "suppressed_by": rec.suppressed_by,
            "playbook_id": pb.id if pb else "",
        }

    # -- the tick ----------------------------------------------------------------------
    async def on_tick(self, tick_time: float, findings: Iterable[Finding]) -> list[Transition]:
        async with self._lock:
            ts = self.engine.step(tick_time, list(findings))
            return await self._process(ts, tick_time, entries=[])

    async def _process(
        self,
        ts: list[Transition],
        now: float,
        entries: list[LogEntry],
        changed: set[str] | None = None,
        events: list[dict[str, Any]] | None = None,
    ) -> list[Transition]:
        """Playbooks, escalations, persistence, log, MQTT and pages for a batch of transitions."""
        changed = set(changed or ())
        events = list(events or [])
        pages: list[tuple[str, PagerEvent]] = []
        out: list[Transition] = []
        for t in ts:
            pb = self.playbooks.for_kind(t.kind)
            t = dataclasses.replace(t, playbook_id=pb.id if pb else "")
            out.append(t)
            opened = t.cause == "activate" and t.from_state is not S.RTN_UNACK
            if opened and pb is not None and t.incident_id not in self.instances:
                self.instances[t.incident_id] = PlaybookInstance.start(
                    pb, t.incident_id, t.alarm_id, t.kind, t.subject, t.station, t.severity, now
                )
                changed.add(t.incident_id)
            rec = self.engine.records[t.alarm_id]
            inst = self.instances.get(t.incident_id)
            if inst is not None and rec.incident_id != t.incident_id and inst.incident_open:
                inst.close_incident(now)
                changed.add(t.incident_id)
            action = self._pager_action(t)
            if action:
                pages.append(self._page(t, action))

        # missed deadlines: raise severity one step and tell the pager (once per step)
        for inst in list(self.instances.values()):
            for step in inst.expire(now):
                changed.add(inst.incident_id)
                entries.append(
                    LogEntry(
                        time=now,
                        kind="step",
                        station=inst.station,
                        subject=inst.subject,
                        alarm_id=inst.alarm_id,
                        incident_id=inst.incident_id,
                        operator=step.by,
                        text_zh=f"步骤未回报，自动关闭：{step.action_zh}",
                        text_en=f"step never reported, closed automatically: {step.action_en}",
                        data={"step": step.id, "status": "skipped", "reason": step.reason},
                    )
                )
            for step in inst.overdue(now):
                inst.severity = ESCALATED[inst.severity]
                changed.add(inst.incident_id)
                reason = f"step {step.id} overdue (deadline {step.deadline_min} min)"
                et = self.engine.escalate(inst.incident_id, inst.severity, now, reason)
                if et is not None:
                    et = dataclasses.replace(et, playbook_id=inst.playbook_id)
                    out.append(et)
                    pages.append(self._page(et, "escalate", step.id))
                entries.append(
                    LogEntry(
                        time=now,
                        kind="escalation",
                        station=inst.station,
                        subject=inst.subject,
                        alarm_id=inst.alarm_id,
                        incident_id=inst.incident_id,
                        text_zh=f"步骤超时未完成：{step.action_zh}（{step.deadline_min} 分钟），升级为 {inst.severity}",
                        text_en=f"step overdue: {step.action_en} ({step.deadline_min} min); escalated to {inst.severity}",
                        data={"step": step.id, "severity": inst.severity},
                    )
                )
                events.append(
                    {
                        "type": "escalation",
                        "time": now,
                        "incident_id": inst.incident_id,
                        "alarm_id": inst.alarm_id,
                        "step": step.id,
                        "severity": inst.severity,
                    }
                )

        entries = [self._transition_entry(t) for t in out if t.cause != "escalate"] + entries
        closed = {
            i for i in changed if i in self.instances and self.instances[i].status == "closed"
        }
        assert self.store is not None and self.log is not None
        new_keys = await asyncio.to_thread(
            self.store.save,
            self.engine.snapshot(),
            [
                (self.instances[i].to_dict(), i in closed)
                for i in sorted(changed)
                if i in self.instances
            ],
            [(k, p.to_dict()) for k, p in pages],
        )
        await self._append_log(entries)
        await self._publish(out, changed, events)
        for i in closed:
            self.instances.pop(i, None)
        if new_keys:
            await self._deliver_pages()
        for t in out:
            for hook in self.transition_hooks:
                await _call_hook(hook, t)
        return out

    async def _append_log(self, entries: list[LogEntry]) -> None:
        assert self.log is not None
        await asyncio.to_thread(self.log.append, entries)
        for e in entries:
            for hook in self.log_hooks:
                await _call_hook(hook, e)

    @staticmethod
    def _pager_action(t: Transition) -> str:
        was_active = t.from_state in (S.UNACK, S.ACKED)
        if t.cause == "activate":
            return "trigger"
        if t.cause == "ack" and t.from_state is S.UNACK:
            return "acknowledge"
        if t.cause in ("clear", "suppress", "shelve") and was_active and t.incident_id:
            return "resolve"
        return ""

    def active_pages(self) -> list[PagerEvent]:
        """The trigger event of every incident still raised (unack or acked), for handing
        to the pager after a restart: Alertmanager forgets alerts that are not re-sent, so
        the adapters must know what is still active. Nothing is re-paged by this."""
        out = []
        for rec in self.engine.active():
            if rec.state not in (S.UNACK, S.ACKED) or not rec.incident_id:
                continue
            t = Transition(
                time=rec.incident_onset,
                alarm_id=rec.alarm_id,
                incident_id=rec.incident_id,
                from_state=S.NORMAL,
                to_state=rec.state,
                cause="activate",
                kind=rec.kind,
                subject=rec.subject,
                station=rec.station,
                severity=rec.severity,
                priority=rec.priority,
                value=rec.value,
                message_zh=rec.message_zh,
                message_en=rec.message_en,
                stations=rec.stations,
                operator=rec.acked_by,  # an acked incident keeps its pager silence
            )
            out.append(self._page(t, "trigger")[1])
        return out

    def _page(self, t: Transition, action: str, step_id: str = "") -> tuple[str, PagerEvent]:
        rec = self.engine.records[t.alarm_id]
        pb = self.playbooks.for_kind(t.kind)
        info = self.stations.get(t.station)
        name = info.name if info else ""
        where_zh = (name or t.subject) or self.site
        title_zh = pb.title.zh if pb else t.kind
        title_en = pb.title.en if pb else t.kind
        subject = t.station or t.subject
        ev = PagerEvent(
            incident_id=t.incident_id,
            alarm_id=t.alarm_id,
            kind=t.kind,
            site=self.site,
            station=t.station,
            subject=t.subject,
            severity=t.severity,
            action=action,  # type: ignore[arg-type]
            # the station named once: the messages begin with its id and name
            summary_zh=page_summary(where_zh, title_zh, t.message_zh, subject, name),
            summary_en=page_summary(
                t.subject or self.site, title_en, t.message_en, subject, name, ": "
            ),
            first_steps=pb.first_steps() if pb else [],
            starts_at=rec.incident_onset,
            ends_at=t.time if action == "resolve" else None,
            playbook_id=pb.id if pb else "",
            station_name=info.name if info else "",
            stations=t.stations,
            value=t.value if math.isfinite(t.value) else 0.0,
            step_id=step_id,
            operator=t.operator,
            details={"cause": t.cause, "reason": t.reason, "state": str(t.to_state)},
            routing=routing_labels(
                t.station, t.stations, self.stations, pb.plan_section if pb else ""
            ),
        )
        key = f"{t.incident_id}/{action}/{t.time:.3f}/{step_id}"
        return key, ev

    async def _deliver_pages(self) -> None:
        assert self.store is not None
        pending = await asyncio.to_thread(self.store.undelivered_pages)
        if not pending:
            return
        for _key, data in pending:
            data["stations"] = tuple(data.get("stations", ()))
            ev = PagerEvent(**data)
            for hook in self.pager_hooks:
                await _call_hook(hook, ev)
            self.pages_sent += 1
        # the pager adapters own retries; handing over is what "paged" means here
        await asyncio.to_thread(self.store.mark_delivered, [k for k, _ in pending])

    def _transition_entry(self, t: Transition) -> LogEntry:
        info = self.stations.get(t.station)
        name = info.name if info and info.name else t.subject
        return LogEntry(
            time=t.time,
            kind="transition",
            station=t.station,
            stations=t.stations,
            subject=t.subject,
            alarm_id=t.alarm_id,
            incident_id=t.incident_id,
            operator=t.operator,
            text_zh=f"{name} {t.kind}：{_STATE_ZH[str(t.from_state)]} → {_STATE_ZH[str(t.to_state)]}（{t.cause}）{t.message_zh}",
            text_en=f"{t.subject} {t.kind}: {t.from_state} -> {t.to_state} ({t.cause}) {t.message_en}",
            data=t.to_dict(),
        )

    # -- MQTT --------------------------------------------------------------------------
    async def _publish(
        self, ts: list[Transition], changed: set[str], events: list[dict[str, Any]]
    ) -> None:
        if self.bridge is None:
            return
        b = self.bridge
        msgs: list[tuple[str, dict[str, Any] | None, bool]] = []
        for t in ts:
            rec = self.engine.records[t.alarm_id]
            topic = b.alarm_topic(rec.subject, rec.kind)
            msgs.append((topic, None if rec.state is S.NORMAL else self.alarm_payload(rec), True))
            msgs.append((b.events_topic, self._event({"type": "transition", **t.to_dict()}), False))
        for e in events:
            msgs.append((b.events_topic, self._event(e), False))
        for iid in sorted(changed):
            inst = self.instances.get(iid)
            if inst is not None:
                closed = inst.status == "closed"
                msgs.append(
                    (b.playbook_topic(iid), None if closed else inst.payload(self.site), True)
                )
        await b.publish(msgs)
        await self._publish_status()

    def _event(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"schema": EVENT_SCHEMA, "site": self.site, **body}

    async def _publish_status(self) -> None:
        if self.bridge is None:
            return
        active = self.engine.active()
        if len(active) == self._last_active:
            return
        self._last_active = len(active)
        unacked = sum(1 for r in active if r.state in (S.UNACK, S.RTN_UNACK))
        payload = self.bridge.status_payload(
            "online", site_name=self.site_name, active_alarms=len(active), unacked_alarms=unacked
        )
        await self.bridge.publish([(self.bridge.status_topic, payload, True)])

    # -- commands ----------------------------------------------------------------------
    async def command(self, raw: bytes | str | dict[str, Any]) -> dict[str, Any]:
        """Run one operator command; always returns a stationd.cmd_result/1 document."""
        now = self.clock()
        try:
            c = cmds.parse_command(raw)
        except cmds.CommandRejected as e:
            log.warning("command refused: %s", e)
            return cmds.result(e.request_id, e.command, e.operator, False, now, str(e))
        if self.operators is not None and c.operator not in self.operators:
            msg = f"operator {c.operator!r} is not allowed to command this site (无操作权限)"
            await self._log_command(c, now, ok=False, error=msg)
            return cmds.result(c.request_id, c.command, c.operator, False, now, msg)
        if isinstance(c, cmds.Select | cmds.Operate):
            return await self._control_command(c, now)
        async with self._lock:
            try:
                detail = await self._execute(c, now)
            except (CommandError, StepError) as e:
                await self._log_command(c, now, ok=False, error=str(e))
                return cmds.result(c.request_id, c.command, c.operator, False, now, str(e))
        return cmds.result(c.request_id, c.command, c.operator, True, now, None, detail)

    def _command_incident(self, c: Any) -> str:
        """The incident a command concerns, looked up before it runs (ack may close it)."""
        direct = getattr(c, "incident", "") or getattr(c, "incident_id", "") or ""
        if direct:
            return direct
        rec = self.engine.records.get(getattr(c, "alarm_id", "") or "")
        return rec.incident_id if rec is not None else ""

    async def _log_command(
        self, c: Any, now: float, ok: bool, error: str = "", incident_id: str = ""
    ) -> None:
        assert self.log is not None
        args = c.model_dump(exclude={"schema_", "request_id", "operator", "command"})
        entry = LogEntry(
            time=now,
            kind="command",
            operator=c.operator,
            alarm_id=getattr(c, "alarm_id", "") or "",
            incident_id=incident_id or self._command_incident(c),
            station=getattr(c, "station", "") or "",
            text_zh=f"命令 {c.command} {'执行' if ok else '拒绝'}：{args}"
            + (f"（{error}）" if error else ""),
            text_en=f"command {c.command} {'done' if ok else 'refused'}: {args}"
            + (f" ({error})" if error else ""),
            data={
                "request_id": c.request_id,
                "command": c.command,
                "args": args,
                "ok": ok,
                "error": error,
            },
        )
        await self._append_log([entry])

    async def _execute(self, c: Any, now: float) -> dict[str, Any]:
        entries: list[LogEntry] = []
        events: list[dict[str, Any]] = []
        changed: set[str] = set()
        ts: list[Transition] = []
        detail: dict[str, Any] = {}
        incident_id = self._command_incident(c)
        if isinstance(c, cmds.Ack):
            alarm_id = c.alarm_id
            if not alarm_id:
                rec = self.engine.by_incident(c.incident_id or "")
                if rec is None:
                    raise CommandError(f"incident {c.incident_id!r} is not open (事件不存在)")
                alarm_id = rec.alarm_id
            ts.append(self.engine.ack(alarm_id, c.operator, now, c.reason))
        elif isinstance(c, cmds.Shelve):
            ts += self.engine.shelve(c.alarm_id, c.minutes, c.operator, now, c.reason)
        elif isinstance(c, cmds.Unshelve):
            ts.append(self.engine.unshelve(c.alarm_id, c.operator, now, c.reason))
        elif isinstance(c, cmds.StepDone | cmds.StepSkip):
            inst = self.instances.get(c.incident)
            if inst is None:
                raise StepError(f"incident {c.incident!r} has no open playbook (无此预案实例)")
            status = "done" if isinstance(c, cmds.StepDone) else "skipped"
            reason = c.reason if isinstance(c, cmds.StepSkip) else c.note
            step = inst.mark(c.step, status, c.operator, now, reason)
            changed.add(inst.incident_id)
            verb_zh = "完成" if status == "done" else "跳过"
            entries.append(
                LogEntry(
                    time=now,
                    kind="step",
                    station=inst.station,
                    subject=inst.subject,
                    alarm_id=inst.alarm_id,
                    incident_id=inst.incident_id,
                    operator=c.operator,
                    text_zh=f"步骤{verb_zh}：{step.action_zh}"
                    + (f"（{reason}）" if reason else ""),
                    text_en=f"step {status}: {step.action_en}" + (f" ({reason})" if reason else ""),
                    data={"step": step.id, "status": status, "reason": reason},
                )
            )
            events.append(
                {
                    "type": "step",
                    "time": now,
                    "incident_id": inst.incident_id,
                    "alarm_id": inst.alarm_id,
                    "step": step.id,
                    "status": status,
                    "operator": c.operator,
                    "reason": reason,
                }
            )
            detail = {"incident_id": inst.incident_id, "step": step.id, "status": status}
        elif isinstance(c, cmds.Note):
            entries.append(
                LogEntry(
                    time=now,
                    kind="note",
                    station=c.station,
                    incident_id=c.incident,
                    operator=c.operator,
                    text_zh=c.text,
                    text_en=c.text,
                )
            )
            events.append(
                {
                    "type": "note",
                    "time": now,
                    "operator": c.operator,
                    "text": c.text,
                    "incident_id": c.incident,
                    "station": c.station,
                }
            )
        elif isinstance(c, cmds.FieldReadingCmd):
            reading = self._field_reading(c, now)
            spec = BY_NAME[c.signal]
            entries.append(
                LogEntry(
                    time=now,
                    kind="field_reading",
                    station=c.station,
                    operator=c.operator,
                    text_zh=f"人工抄表 {spec.zh} = {c.value:g} {spec.unit}"
                    + (f"（{c.note}）" if c.note else ""),
                    text_en=f"field reading {c.signal} = {c.value:g} {spec.unit}"
                    + (f" ({c.note})" if c.note else ""),
                    data={"signal": c.signal, "value": c.value, "note": c.note},
                )
            )
            events.append(
                {
                    "type": "field_reading",
                    "time": now,
                    "operator": c.operator,
                    "station": c.station,
                    "signal": c.signal,
                    "value": c.value,
                }
            )
            for hook in self.field_reading_hooks:
                await _call_hook(hook, reading)
        await self._log_command(c, now, ok=True, incident_id=incident_id)
        out = await self._process(ts, now, entries, changed, events)
        if out and not detail:
            last = out[-1]
            detail = {
                "alarm_id": last.alarm_id,
                "incident_id": last.incident_id,
                "state": str(last.to_state),
            }
        return detail

    def _field_reading(self, c: cmds.FieldReadingCmd, now: float) -> FieldReading:
        if self.stations and c.station not in self.stations:
            raise CommandError(f"unknown station {c.station!r} (站点不存在)")
        spec = BY_NAME.get(c.signal)
        if spec is None:
            raise CommandError(f"unknown signal {c.signal!r}; use a canonical signal name")
        if not (math.isfinite(c.value) and spec.lo <= c.value <= spec.hi):
            raise CommandError(
                f"{c.signal} = {c.value} is outside its physical range [{spec.lo}, {spec.hi}] {spec.unit}"
            )
        return FieldReading(now, c.station, c.signal, c.value, c.operator, c.note)

    # -- control: select-before-operate (alarms/control.py) ----------------------------
    async def _control_command(self, c: cmds.Select | cmds.Operate, now: float) -> dict[str, Any]:
        """select answers what would be written; operate writes it, reads it back and, once
        confirmed, marks the step done. The write and the read-back run outside the lock:
        the ticks that carry the read-back value must keep flowing meanwhile."""

        def answer(ok: bool, error: str | None, detail: dict[str, Any]) -> dict[str, Any]:
            return cmds.result(c.request_id, c.command, c.operator, ok, now, error, detail)

        async with self._lock:
            try:
                inst = self.instances.get(c.incident)
                if inst is None:
                    raise StepError(f"incident {c.incident!r} has no open playbook (无此预案实例)")
                if isinstance(c, cmds.Select):
                    info = self.stations.get(inst.station)
                    sel = self.control.select(
                        inst, c.step, c.operator, now, info.name if info else ""
                    )
                else:
                    sel = self.control.take(c.select_id, c.incident, c.step, c.operator, now)
            except (CommandError, StepError) as e:
                await self._control_refused(c, now, str(e))
                return answer(False, str(e), {})
            action = "selected" if isinstance(c, cmds.Select) else "operated"
            await self._control_record(sel, action, c.request_id, now, inst)
        if isinstance(c, cmds.Select):
            return answer(
                True, None, {**sel.describe(), "window_s": self.control.settings.window_s}
            )

        outcome = await self.control.execute(sel)
        done_at = self.clock()
        async with self._lock:
            inst = self.instances.get(sel.incident_id)
            await self._control_record(
                sel,
                outcome.status,
                c.request_id,
                done_at,
                inst,
                detail=outcome.error,
                readback=outcome.readback,
            )
            if outcome.confirmed and inst is not None:
                await self._control_step_done(inst, sel, done_at)
        detail = {
            **sel.describe(),
            "status": outcome.status,
            "written": outcome.written,
            "confirmed": outcome.confirmed,
            "readback": outcome.readback,
        }
        if not outcome.confirmed:
            return answer(False, f"{outcome.status}: {outcome.error} (遥控未确认)", detail)
        return answer(True, None, detail)

    async def _control_record(
        self,
        sel: Selection,
        action: str,
        request_id: str,
        now: float,
        inst: PlaybookInstance | None,
        detail: str = "",
        readback: float | None = None,
    ) -> None:
        """One dispatch-log row and one `control` event per stage of a control."""
        name = sel.station_name or sel.station
        verb_zh = {
            "selected": "已选择",
            "operated": "已下发",
            "confirmed": "已确认",
            "unconfirmed": "未确认",
            "failed": "失败",
        }[action]
        what = f"{sel.point} = {sel.value:g}"
        tail = f"（{detail}）" if detail else ""
        entry = LogEntry(
            time=now,
            kind="control",
            station=sel.station,
            subject=inst.subject if inst else sel.station,
            alarm_id=inst.alarm_id if inst else "",
            incident_id=sel.incident_id,
            operator=sel.operator,
            text_zh=f"遥控{verb_zh}：{name} {what}，步骤 {sel.step}"
            + (
                f"，当前值 {sel.current:g}"
                if action == "selected" and sel.current is not None
                else ""
            )
            + (f"，回读 {readback:g}" if readback is not None else "")
            + tail,
            text_en=f"control {action}: {sel.station} {what}, step {sel.step}"
            + (
                f", reads {sel.current:g} now"
                if action == "selected" and sel.current is not None
                else ""
            )
            + (f", read back {readback:g}" if readback is not None else "")
            + (f" ({detail})" if detail else ""),
            data={
                "action": action,
                "request_id": request_id,
                "select_id": sel.select_id,
                "step": sel.step,
                "point": sel.point,
                "value": sel.value,
                "current": sel.current,
                "readback": readback,
                "expires_at": sel.expires_at,
                "detail": detail,
            },
        )
        event = self._control_event(
            action, now, sel.incident_id, entry.alarm_id, sel.step, sel.station, sel.point,
            sel.value, sel.operator, sel.select_id, detail,
        )  # fmt: skip
        await self._process([], now, [entry], set(), [event])

    async def _control_refused(self, c: cmds.Select | cmds.Operate, now: float, error: str) -> None:
        inst = self.instances.get(c.incident)
        station = inst.station if inst else ""
        point, value = "", None
        if inst is not None:
            try:
                ctl = inst.step(c.step).control
            except StepError:
                ctl = None
            if ctl is not None:
                point, value = str(ctl["point"]), float(ctl["value"])
        select_id = c.select_id if isinstance(c, cmds.Operate) else ""
        entry = LogEntry(
            time=now,
            kind="control",
            station=station,
            subject=inst.subject if inst else "",
            alarm_id=inst.alarm_id if inst else "",
            incident_id=c.incident,
            operator=c.operator,
            text_zh=f"遥控拒绝（{c.command}）：步骤 {c.step} {point}；{error}",
            text_en=f"control refused ({c.command}): step {c.step} {point}; {error}",
            data={
                "action": "refused",
                "command": c.command,
                "request_id": c.request_id,
                "select_id": select_id,
                "step": c.step,
                "point": point,
                "value": value,
                "detail": error,
            },
        )
        event = self._control_event(
            "refused", now, c.incident, entry.alarm_id, c.step, station, point, value,
            c.operator, select_id, error,
        )  # fmt: skip
        await self._process([], now, [entry], set(), [event])

    @staticmethod
    def _control_event(
        action: str,
        now: float,
        incident_id: str,
        alarm_id: str,
        step: str,
        station: str,
        point: str,
        value: float | None,
        operator: str,
        select_id: str,
        detail: str,
    ) -> dict[str, Any]:
        return {
            "type": "control",
            "action": action,
            "time": now,
            "incident_id": incident_id,
            "alarm_id": alarm_id,
            "step": step,
            "station": station,
            "point": point,
            "value": value,
            "operator": operator,
            "select_id": select_id,
            "detail": detail,
        }

    async def _control_step_done(self, inst: PlaybookInstance, sel: Selection, now: float) -> None:
        """A confirmed control is the step done, by the operator who operated it."""
        step = inst.step(sel.step)
        if step.status != "pending":
            return
        note = f"遥控确认 / control confirmed: {sel.point} = {sel.value:g}"
        inst.mark(sel.step, "done", sel.operator, now, note)
        entry = LogEntry(
            time=now,
            kind="step",
            station=inst.station,
            subject=inst.subject,
            alarm_id=inst.alarm_id,
            incident_id=inst.incident_id,
            operator=sel.operator,
            text_zh=f"步骤完成：{step.action_zh}（{note}）",
            text_en=f"step done: {step.action_en} ({note})",
            data={"step": step.id, "status": "done", "reason": note},
        )
        event = {
            "type": "step",
            "time": now,
            "incident_id": inst.incident_id,
            "alarm_id": inst.alarm_id,
            "step": step.id,
            "status": "done",
            "operator": sel.operator,
            "reason": note,
        }
        await self._process([], now, [entry], {inst.incident_id}, [event])
