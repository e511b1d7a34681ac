"""Every JSON document the alarm side sends, in one place: what goes on the wire.

MQTT: the retained alarm state, the event stream (transitions, steps, escalations, notes,
field readings, controls), the retained playbook instance and the retained daemon status;
each carries a `schema` (alarms/schemas/*.json; the tests validate against them).
Command results are built by alarms/commands.py with the command models.
"""

from __future__ import annotations

import math
import time
from typing import Any

from alarms.engine import AlarmRecord
from alarms.instances import PlaybookInstance
from alarms.model import AlarmState, Transition, state_zh

ALARM_SCHEMA = "stationd.alarm/1"
EVENT_SCHEMA = "stationd.event/1"
PLAYBOOK_SCHEMA = "stationd.playbook/1"
STATUS_SCHEMA = "stationd.status/1"


def alarm(site: str, rec: AlarmRecord, station_name: str, playbook_id: str) -> dict[str, Any]:
    """The retained alarm document `<prefix>/alarm/<subject>/<kind>` (schema alarm.json)."""
    return {
        "schema": ALARM_SCHEMA,
        "site": site,
        "alarm_id": rec.alarm_id,
        "incident_id": rec.incident_id,
        "state": str(rec.state),
        "state_zh": state_zh(rec.state),
        "kind": rec.kind,
        "subject": rec.subject,
        "station": rec.station,
        "station_name": station_name,
        "stations": list(rec.stations),
        "severity": rec.severity,
        "priority": rec.priority,
        "value": rec.value if math.isfinite(rec.value) else None,
        "message_zh": rec.message_zh,
        "message_en": rec.message_en,
        "since": rec.since,
        "onset": rec.incident_onset,
        "acked_by": rec.acked_by,
        "shelved_until": rec.shelved_until if rec.state is AlarmState.SHELVED else None,
        "suppressed_by": rec.suppressed_by,
        "playbook_id": playbook_id,
    }


def event(site: str, body: dict[str, Any]) -> dict[str, Any]:
    """One message on `<prefix>/events` (schema event.json)."""
    return {"schema": EVENT_SCHEMA, "site": site, **body}


def transition_event(t: Transition) -> dict[str, Any]:
    return {"type": "transition", **t.to_dict()}


def step_event(
    now: float, inst: PlaybookInstance, step: str, status: str, operator: str, reason: str
) -> dict[str, Any]:
    return {
        "type": "step",
        "time": now,
        "incident_id": inst.incident_id,
        "alarm_id": inst.alarm_id,
        "step": step,
        "status": status,
        "operator": operator,
        "reason": reason,
    }


def escalation_event(now: float, inst: PlaybookInstance, step: str) -> dict[str, Any]:
    return {
        "type": "escalation",
        "time": now,
        "incident_id": inst.incident_id,
        "alarm_id": inst.alarm_id,
        "step": step,
        "severity": inst.severity,
    }


def note_event(now: float, operator: str, text: str, incident: str, station: str) -> dict[str, Any]:
    return {
        "type": "note",
        "time": now,
        "operator": operator,
        "text": text,
        "incident_id": incident,
        "station": station,
    }


def field_reading_event(
    now: float, operator: str, station: str, signal: str, value: float
) -> dict[str, Any]:
    return {
        "type": "field_reading",
        "time": now,
        "operator": operator,
        "station": station,
        "signal": signal,
        "value": value,
    }


def control_event(
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


def playbook(site: str, inst: PlaybookInstance) -> dict[str, Any]:
    """The retained `<prefix>/playbook/<incident>` document (schema playbook.json)."""
    return {
        "schema": PLAYBOOK_SCHEMA,
        "site": site,
        "incident_id": inst.incident_id,
        "playbook_id": inst.playbook_id,
        "plan_section": inst.plan_section,
        "title_zh": inst.title_zh,
        "title_en": inst.title_en,
        "alarm_id": inst.alarm_id,
        "kind": inst.kind,
        "subject": inst.subject,
        "station": inst.station,
        "severity": inst.severity,
        "activated_at": inst.activated_at,
        "status": inst.status,
        "incident_open": inst.incident_open,
        "steps": [
            {
                "id": s.id,
                "role": s.role,
                "action_zh": s.action_zh,
                "action_en": s.action_en,
                "deadline_min": s.deadline_min,
                "due": s.due,
                "control": s.control,
                "status": s.status,
                "by": s.by,
                "at": s.at,
                "reason": s.reason,
                "escalated": s.escalated,
            }
            for s in inst.steps
        ],
    }


def status(site: str, state: str, since: float, **extra: Any) -> dict[str, Any]:
    """The retained `<prefix>/status` document (schema status.json); also the last will."""
    return {
        "schema": STATUS_SCHEMA,
        "site": site,
        "state": state,
        "time": time.time(),
        "since": since,
        **extra,
    }
