"""The alarms and incidents of a report period, with their playbook progress.

Read through the alarm side's reading API (`alarms/files.py` finds its files under the
daemon's state dir): the dispatch log (`query_log`, every transition, step and
escalation) and the playbook instances with their step status
(`read_playbook_instances`). An incident is in the report when the log has an entry for it in the
period, or its playbook was activated in the period, or it was still open at the end.
Both are read beside the running daemon (WAL); when neither file exists the report says
so instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from alarms.dispatch_log import query_log
from alarms.files import LOG_FILE, STATE_FILE, alarm_dir
from alarms.store import read_playbook_instances

#: how many log entries a period may bring in (an alarm storm day is far below this)
MAX_LOG_ENTRIES = 200_000


@dataclass
class Incident:
    incident_id: str
    alarm_id: str
    kind: str
    station: str
    severity: str = ""
    first_time: float | None = None
    last_time: float | None = None
    state: str = ""  # the last state the log shows
    message_zh: str = ""
    message_en: str = ""
    transitions: int = 0
    escalations: int = 0
    playbook_zh: str = ""
    playbook_en: str = ""
    plan_section: str = ""
    steps_total: int = 0
    steps_done: int = 0
    steps_skipped: int = 0
    steps_pending: int = 0
    open: bool = False
    pending_steps_zh: list[str] = field(default_factory=list)

    @property
    def progress(self) -> str:
        if not self.steps_total:
            return ""
        return f"{self.steps_done + self.steps_skipped}/{self.steps_total}"


@dataclass
class Incidents:
    items: list[Incident]
    found: bool  # the alarm side's files exist
    where: str = ""


def load_incidents(state_dir: str | Path | None, t0: float, t1: float) -> Incidents:
    """Incidents touching [t0, t1) (unix s), sorted by first appearance."""
    if state_dir is None:
        return Incidents([], False)
    d = alarm_dir(state_dir)
    have_log = (d / LOG_FILE).exists()
    have_state = (d / STATE_FILE).exists()
    if not (have_log or have_state):
        return Incidents([], False, str(d))
    by_id: dict[str, Incident] = {}
    if have_log:
        entries = query_log(
            d,
            since=t0,
            until=t1,
            kinds=("transition", "escalation", "step"),
            limit=MAX_LOG_ENTRIES,
        )
        for e in entries:
            if not e.incident_id:
                continue
            inc = by_id.get(e.incident_id)
            if inc is None:
                kind = e.alarm_id.rsplit("/", 1)[-1] if e.alarm_id else ""
                inc = by_id[e.incident_id] = Incident(
                    incident_id=e.incident_id,
                    alarm_id=e.alarm_id,
                    kind=str(e.data.get("kind", kind)),
                    station=e.station or e.subject,
                )
            inc.first_time = e.time if inc.first_time is None else min(inc.first_time, e.time)
            inc.last_time = e.time if inc.last_time is None else max(inc.last_time, e.time)
            if e.kind == "transition":
                inc.transitions += 1
                inc.state = str(e.data.get("to_state", inc.state))
                inc.severity = str(e.data.get("severity", inc.severity))
                inc.message_zh = str(e.data.get("message_zh", "") or inc.message_zh)
                inc.message_en = str(e.data.get("message_en", "") or inc.message_en)
            elif e.kind == "escalation":
                inc.escalations += 1
                inc.severity = str(e.data.get("severity", inc.severity))
    for pb in read_playbook_instances(d):
        iid = str(pb.get("incident_id", ""))
        activated = float(pb.get("activated_at") or 0.0)
        still_open = bool(pb.get("incident_open")) and activated < t1
        inc = by_id.get(iid)
        if inc is None:
            if not (t0 <= activated < t1 or still_open):
                continue
            inc = by_id[iid] = Incident(
                incident_id=iid,
                alarm_id=str(pb.get("alarm_id", "")),
                kind=str(pb.get("kind", "")),
                station=str(pb.get("station", "") or pb.get("subject", "")),
                severity=str(pb.get("severity", "")),
                first_time=activated,
                last_time=activated,
            )
        steps = pb.get("steps") or []
        inc.playbook_zh = str(pb.get("title_zh", ""))
        inc.playbook_en = str(pb.get("title_en", ""))
        inc.plan_section = str(pb.get("plan_section", ""))
        inc.steps_total = len(steps)
        inc.steps_done = sum(s.get("status") == "done" for s in steps)
        inc.steps_skipped = sum(s.get("status") == "skipped" for s in steps)
        inc.steps_pending = sum(s.get("status") == "pending" for s in steps)
        inc.pending_steps_zh = [
            str(s.get("action_zh", "")) for s in steps if s.get("status") == "pending"
        ]
        inc.open = bool(pb.get("incident_open"))
        if not inc.severity:
            inc.severity = str(pb.get("severity", ""))
    items = sorted(by_id.values(), key=lambda i: (i.first_time or 0.0, i.incident_id))
    return Incidents(items, True, str(d))
