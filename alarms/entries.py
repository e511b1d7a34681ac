"""The dispatch log's rows (调度日志): one builder per kind of entry, in Chinese and English.

Kinds: `transition`, `command`, `step`, `escalation`, `note`, `field_reading`, `control`,
`daemon` (alarms/dispatch_log.py EntryKind). The stages and the command handlers build
their rows here, so each kind is worded and shaped in one place.
"""

from __future__ import annotations

from typing import Any

from alarms.control_desk import Selection
from alarms.dispatch_log import LogEntry
from alarms.instances import PlaybookInstance, StepState
from alarms.model import Transition, state_zh
from stationd.signals import SignalSpec

#: how each stage of a control reads in Chinese
_CONTROL_ZH = {
    "selected": "已选择",
    "operated": "已下发",
    "confirmed": "已确认",
    "unconfirmed": "未确认",
    "failed": "失败",
}


def _tail_zh(detail: str) -> str:
    return f"（{detail}）" if detail else ""


def _tail_en(detail: str) -> str:
    return f" ({detail})" if detail else ""


def transition(t: Transition, name: str) -> LogEntry:
    """An alarm's state change; `name` is the station's name (or the subject)."""
    return LogEntry(
        time=t.time,
        kind="transition",
        station=t.station,
        stations=t.stations,
        subject=t.subject,
        alarm_id=t.alarm_id,
        incident_id=t.incident_id,
        operator=t.operator,
        text_zh=f"{name} {t.kind}：{state_zh(t.from_state)} → {state_zh(t.to_state)}"
        f"（{t.cause}）{t.message_zh}",
        text_en=f"{t.subject} {t.kind}: {t.from_state} -> {t.to_state} ({t.cause}) {t.message_en}",
        data=t.to_dict(),
    )


def step(
    now: float, inst: PlaybookInstance, st: StepState, status: str, operator: str, reason: str
) -> LogEntry:
    """A playbook step reported done or skipped (by an operator or a confirmed control)."""
    verb_zh = "完成" if status == "done" else "跳过"
    return LogEntry(
        time=now,
        kind="step",
        station=inst.station,
        subject=inst.subject,
        alarm_id=inst.alarm_id,
        incident_id=inst.incident_id,
        operator=operator,
        text_zh=f"步骤{verb_zh}：{st.action_zh}{_tail_zh(reason)}",
        text_en=f"step {status}: {st.action_en}{_tail_en(reason)}",
        data={"step": st.id, "status": status, "reason": reason},
    )


def step_expired(now: float, inst: PlaybookInstance, st: StepState) -> LogEntry:
    """A step never reported, closed by the daemon a day after its incident closed."""
    return LogEntry(
        time=now,
        kind="step",
        station=inst.station,
        subject=inst.subject,
        alarm_id=inst.alarm_id,
        incident_id=inst.incident_id,
        operator=st.by,
        text_zh=f"步骤未回报，自动关闭：{st.action_zh}",
        text_en=f"step never reported, closed automatically: {st.action_en}",
        data={"step": st.id, "status": "skipped", "reason": st.reason},
    )


def escalation(now: float, inst: PlaybookInstance, st: StepState) -> LogEntry:
    """A step past its deadline: the incident's severity one step up."""
    return LogEntry(
        time=now,
        kind="escalation",
        station=inst.station,
        subject=inst.subject,
        alarm_id=inst.alarm_id,
        incident_id=inst.incident_id,
        text_zh=f"步骤超时未完成：{st.action_zh}（{st.deadline_min} 分钟），升级为 {inst.severity}",
        text_en=f"step overdue: {st.action_en} ({st.deadline_min} min); "
        f"escalated to {inst.severity}",
        data={"step": st.id, "severity": inst.severity},
    )


def command(
    now: float,
    command: str,
    operator: str,
    request_id: str,
    args: dict[str, Any],
    ok: bool,
    error: str,
    *,
    alarm_id: str = "",
    incident_id: str = "",
    station: str = "",
) -> LogEntry:
    """An operator command and whether it was done or refused (and why)."""
    return LogEntry(
        time=now,
        kind="command",
        operator=operator,
        alarm_id=alarm_id,
        incident_id=incident_id,
        station=station,
        text_zh=f"命令 {command} {'执行' if ok else '拒绝'}：{args}{_tail_zh(error)}",
        text_en=f"command {command} {'done' if ok else 'refused'}: {args}{_tail_en(error)}",
        data={
            "request_id": request_id,
            "command": command,
            "args": args,
            "ok": ok,
            "error": error,
        },
    )


def note(now: float, operator: str, text: str, station: str, incident: str) -> LogEntry:
    return LogEntry(
        time=now,
        kind="note",
        station=station,
        incident_id=incident,
        operator=operator,
        text_zh=text,
        text_en=text,
    )


def field_reading(
    now: float, operator: str, station: str, spec: SignalSpec, value: float, note: str
) -> LogEntry:
    """A manual reading taken on site (plan 6.3)."""
    return LogEntry(
        time=now,
        kind="field_reading",
        station=station,
        operator=operator,
        text_zh=f"人工抄表 {spec.zh} = {value:g} {spec.unit}{_tail_zh(note)}",
        text_en=f"field reading {spec.name} = {value:g} {spec.unit}{_tail_en(note)}",
        data={"signal": spec.name, "value": value, "note": note},
    )


def control(
    now: float,
    sel: Selection,
    action: str,
    request_id: str,
    inst: PlaybookInstance | None,
    detail: str = "",
    readback: float | None = None,
) -> LogEntry:
    """One stage of a select-before-operate control: selected, operated, confirmed,
    unconfirmed or failed."""
    what = f"{sel.point} = {sel.value:g}"
    now_zh = now_en = ""
    if action == "selected" and sel.current is not None:
        now_zh, now_en = f"，当前值 {sel.current:g}", f", reads {sel.current:g} now"
    back_zh = f"，回读 {readback:g}" if readback is not None else ""
    back_en = f", read back {readback:g}" if readback is not None else ""
    return LogEntry(
        time=now,
        kind="control",
        station=sel.station,
        subject=inst.subject if inst else sel.station,
        alarm_id=inst.alarm_id if inst else "",
        incident_id=sel.incident_id,
        operator=sel.operator,
        text_zh=f"遥控{_CONTROL_ZH[action]}：{sel.station_name or sel.station} {what}，"
        f"步骤 {sel.step}{now_zh}{back_zh}{_tail_zh(detail)}",
        text_en=f"control {action}: {sel.station} {what}, step {sel.step}"
        f"{now_en}{back_en}{_tail_en(detail)}",
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


def control_refused(
    now: float,
    command: str,
    operator: str,
    request_id: str,
    incident: str,
    step_id: str,
    inst: PlaybookInstance | None,
    point: str,
    value: float | None,
    select_id: str,
    error: str,
) -> LogEntry:
    """A select or operate that wrote nothing, and why."""
    return LogEntry(
        time=now,
        kind="control",
        station=inst.station if inst else "",
        subject=inst.subject if inst else "",
        alarm_id=inst.alarm_id if inst else "",
        incident_id=incident,
        operator=operator,
        text_zh=f"遥控拒绝（{command}）：步骤 {step_id} {point}；{error}",
        text_en=f"control refused ({command}): step {step_id} {point}; {error}",
        data={
            "action": "refused",
            "command": command,
            "request_id": request_id,
            "select_id": select_id,
            "step": step_id,
            "point": point,
            "value": value,
            "detail": error,
        },
    )


def daemon(now: float, text_zh: str, text_en: str) -> LogEntry:
    """The alarm service starting or stopping."""
    return LogEntry(time=now, kind="daemon", text_zh=text_zh, text_en=text_en)
