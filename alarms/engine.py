"""The alarm state machine: findings per tick and operator commands in, transitions out.

One `AlarmRecord` per alarm id ("<subject>/<kind>") moves through the ISA-18.2 states
(alarms/model.py): normal → unack → acked → normal, or unack → rtn_unack → normal when
the condition clears before anyone acknowledges; plus shelved (operator, timed) and
suppressed (by design, alarms/suppression.py). On/off delays and the re-arm deadband come
from alarms/tuning.py. Each activation opens an incident whose id is a hash of
(site, alarm id, onset tick) so replica daemons agree on it.

The engine is the one place that decides when an alarm raises and clears: the daemon's
finding log and its tick listeners follow its transitions, and the offline finding stream
(stationd/finding_stream.py, for replay and evaluation) runs this same engine with its
own delays. The engine does no I/O and reads no clock: time is passed in. Persistence is
`snapshot()` / `restore()`; the alarm service's stages (alarms/stages.py) do the disk and
the fan-out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from alarms.model import PRIORITY, AlarmState, Cause, Transition
from alarms.suppression import Suppression, explained_by
from alarms.tuning import AlarmTuning, merge_tuning
from stationd.findings import FINDING_KINDS, SEVERITY_RANK, Finding

S = AlarmState

#: longest an operator may shelve an alarm (a shift and a day): shelving is not disabling
MAX_SHELVE_MIN = 36 * 60


class CommandError(ValueError):
    """An operator command the engine refuses; the message goes back to the operator."""


def make_incident_id(site: str, alarm_id: str, onset: float, n: int = 0) -> str:
    """Deterministic incident id: replicas seeing the same onset tick produce the same id.

    `n` separates a later incident that reports the very same onset (e.g. after a shelve).
    """
    key = f"{site}\x1f{alarm_id}\x1f{onset:.3f}\x1f{n}".encode()
    return f"{site}-{hashlib.sha256(key).hexdigest()[:20]}"


@dataclass(slots=True)
class AlarmRecord:
    alarm_id: str
    kind: str
    subject: str
    station: str
    state: AlarmState = S.NORMAL
    severity: str = "notice"
    value: float = 0.0
    message_zh: str = ""
    message_en: str = ""
    stations: tuple[str, ...] = ()
    incident_id: str = ""
    incident_onset: float = 0.0
    last_incident_id: str = ""
    pending_since: float | None = None  # condition seen, on-delay running
    absent_since: float | None = None  # condition gone, off-delay running
    rearm_until: float = 0.0
    shelved_until: float = 0.0
    shelved_by: str = ""
    suppressed_by: str = ""
    acked_by: str = ""
    since: float = 0.0  # time of the last state change

    @property
    def priority(self) -> int:
        return PRIORITY.get(self.severity, 4)

    def to_dict(self) -> dict[str, Any]:
        d = {name: getattr(self, name) for name in _RECORD_FIELDS}
        d["state"] = str(self.state)
        d["stations"] = list(self.stations)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlarmRecord:
        d = dict(d)
        d["state"] = AlarmState(d["state"])
        d["stations"] = tuple(d.get("stations", ()))
        return cls(**d)


_RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(AlarmRecord))


def split_alarm_id(alarm_id: str) -> tuple[str, str]:
    subject, sep, kind = alarm_id.rpartition("/")
    if not sep or not subject or kind not in FINDING_KINDS:
        raise CommandError(
            f"bad alarm id {alarm_id!r}: expected '<station-or-subject>/<finding kind>'"
        )
    return subject, kind


class AlarmEngine:
    """All alarm records of one site; `step()` once per tick, commands in between."""

    def __init__(
        self,
        site: str,
        tuning: Mapping[str, AlarmTuning | Mapping[str, float]] | None = None,
        severity_floor: Mapping[str, str] | None = None,
        suppression: Suppression | None = explained_by,
    ) -> None:
        self.site = site
        self.tuning = merge_tuning(tuning)
        # the suppression-by-design rules (alarms/suppression.py); None: nothing is
        # suppressed (an offline stream of detector edges, stationd/finding_stream.py)
        self.suppression = suppression
        # a playbook's severity is the least an alarm of its kind is raised with
        self.severity_floor = dict(severity_floor or {})
        self.records: dict[str, AlarmRecord] = {}
        self._dirty: set[str] = set()

    # -- persistence -------------------------------------------------------------------
    def snapshot(self, only_dirty: bool = True) -> list[dict[str, Any]]:
        """Records changed since the last snapshot (all with only_dirty=False)."""
        ids = self._dirty if only_dirty else set(self.records)
        out = [self.records[a].to_dict() for a in sorted(ids) if a in self.records]
        self._dirty.clear()
        return out

    def restore(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            rec = AlarmRecord.from_dict(row)
            self.records[rec.alarm_id] = rec

    # -- queries -----------------------------------------------------------------------
    def active(self) -> list[AlarmRecord]:
        """Alarms an operator must see (not normal), most urgent first."""
        recs = [r for r in self.records.values() if r.state is not S.NORMAL]
        return sorted(recs, key=lambda r: (r.priority, r.since, r.alarm_id))

    def by_incident(self, incident_id: str) -> AlarmRecord | None:
        for r in self.records.values():
            if r.incident_id == incident_id:
                return r
        return None

    # -- the tick ----------------------------------------------------------------------
    def step(self, now: float, findings: Iterable[Finding]) -> list[Transition]:
        """Advance every alarm to tick time `now` given the findings active at it."""
        out: list[Transition] = []
        current: dict[str, Finding] = {}
        for f in findings:
            prev = current.get(f.alarm_id)
            if prev is None or SEVERITY_RANK[f.severity] > SEVERITY_RANK[prev.severity]:
                current[f.alarm_id] = f

        for rec in list(self.records.values()):
            if rec.state is S.SHELVED and rec.shelved_until <= now:
                out.append(self._move(rec, S.NORMAL, "unshelve", now, reason="shelve expired"))

        # only alarms with something going on need a look: present now, not normal, or
        # with an on-delay running (a fleet of quiet records costs nothing per tick)
        known = set(current) | {
            a
            for a, r in self.records.items()
            if r.state is not S.NORMAL or r.pending_since is not None
        }
        suppress: dict[str, str] = {}
        if self.suppression is not None:
            for f in current.values():
                suppress.update(self.suppression(f, known))

        for alarm_id in sorted(known):
            f = current.get(alarm_id)
            rec = self.records.get(alarm_id)
            if rec is None:
                assert f is not None
                rec = self._new_record(f)
            out.extend(self._evaluate(rec, f, suppress.get(alarm_id, ""), now))
        return out

    def _new_record(self, f: Finding) -> AlarmRecord:
        rec = AlarmRecord(
            alarm_id=f.alarm_id,
            kind=f.kind,
            subject=f.subject,
            station=f.subject if f.scope == "station" else "",
        )
        self.records[rec.alarm_id] = rec
        self._dirty.add(rec.alarm_id)
        return rec

    def _describe(self, rec: AlarmRecord, f: Finding) -> None:
        floor = self.severity_floor.get(f.kind, "notice")
        sev = f.severity if SEVERITY_RANK[f.severity] >= SEVERITY_RANK[floor] else floor
        # an escalated incident keeps its raised severity until it closes
        if not rec.incident_id or SEVERITY_RANK[sev] > SEVERITY_RANK[rec.severity]:
            rec.severity = sev
        # the value moves every tick; it is saved with the next state change, not each tick
        if (sev, f.message_zh, f.stations) != (rec.severity, rec.message_zh, rec.stations):
            self._dirty.add(rec.alarm_id)
        rec.value = f.value
        rec.message_zh = f.message_zh
        rec.message_en = f.message_en
        rec.stations = f.stations
        rec.station = f.subject if f.scope == "station" else ""

    def _evaluate(
        self, rec: AlarmRecord, f: Finding | None, suppressor: str, now: float
    ) -> list[Transition]:
        tune = self.tuning[rec.kind]
        present = f is not None
        out: list[Transition] = []
        if f is not None:
            self._describe(rec, f)

        if rec.state is S.SHELVED:
            return out
        if rec.state is S.SUPPRESSED:
            if not present:
                rec.pending_since = None
                out.append(self._move(rec, S.NORMAL, "clear", now))
                return out
            if suppressor:
                return out
            out.append(self._move(rec, S.NORMAL, "unsuppress", now))

        if rec.state in (S.UNACK, S.ACKED):
            if suppressor:
                rec.suppressed_by = suppressor
                out.append(self._move(rec, S.SUPPRESSED, "suppress", now, reason=suppressor))
                self._close_incident(rec, now, tune)
                return out
            if present:
                rec.absent_since = None
                return out
            if rec.absent_since is None:
                rec.absent_since = now
                self._dirty.add(rec.alarm_id)
            if now - rec.absent_since >= tune.off_delay_s:
                rec.absent_since = None
                if rec.state is S.UNACK:
                    out.append(self._move(rec, S.RTN_UNACK, "clear", now))
                else:
                    out.append(self._move(rec, S.NORMAL, "clear", now))
                    self._close_incident(rec, now, tune)
            return out

        if not present:
            if rec.pending_since is not None:
                rec.pending_since = None
                self._dirty.add(rec.alarm_id)
            return out

        assert f is not None
        if rec.state is S.NORMAL and suppressor:
            rec.suppressed_by = suppressor
            rec.pending_since = None
            out.append(self._move(rec, S.SUPPRESSED, "suppress", now, reason=suppressor))
            return out
        if rec.pending_since is None:
            rec.pending_since = now
            self._dirty.add(rec.alarm_id)
        if now - rec.pending_since < tune.on_delay_s:
            return out
        if rec.state is S.RTN_UNACK:
            # back before anyone acknowledged: the same incident, raised again
            rec.pending_since = None
            out.append(self._move(rec, S.UNACK, "activate", now))
            return out
        if now < rec.rearm_until:
            return out
        rec.pending_since = None
        self._open_incident(rec, f.onset)
        out.append(self._move(rec, S.UNACK, "activate", now))
        return out

    def _open_incident(self, rec: AlarmRecord, onset: float) -> None:
        n = 0
        iid = make_incident_id(self.site, rec.alarm_id, onset, n)
        while iid == rec.last_incident_id:
            n += 1
            iid = make_incident_id(self.site, rec.alarm_id, onset, n)
        rec.incident_id = iid
        rec.incident_onset = onset
        rec.acked_by = ""

    def _close_incident(self, rec: AlarmRecord, now: float, tune: AlarmTuning) -> None:
        if rec.incident_id:
            rec.last_incident_id = rec.incident_id
        rec.incident_id = ""
        rec.rearm_until = now + tune.rearm_s
        self._dirty.add(rec.alarm_id)

    def _move(
        self,
        rec: AlarmRecord,
        to: AlarmState,
        cause: Cause,
        now: float,
        operator: str = "",
        reason: str = "",
    ) -> Transition:
        t = Transition(
            time=now,
            alarm_id=rec.alarm_id,
            incident_id=rec.incident_id,
            from_state=rec.state,
            to_state=to,
            cause=cause,
            kind=rec.kind,
            subject=rec.subject,
            station=rec.station,
            severity=rec.severity,
            priority=rec.priority,
            value=rec.value,
            message_zh=rec.message_zh,
            message_en=rec.message_en,
            operator=operator,
            reason=reason,
            stations=rec.stations,
        )
        rec.state = to
        rec.since = now
        if to is not S.SUPPRESSED:
            rec.suppressed_by = ""
        self._dirty.add(rec.alarm_id)
        return t

    # -- operator commands -------------------------------------------------------------
    def _get(self, alarm_id: str) -> AlarmRecord:
        rec = self.records.get(alarm_id)
        if rec is None:
            split_alarm_id(alarm_id)
            raise CommandError(f"alarm {alarm_id!r} is not known (告警不存在)")
        return rec

    def ack(self, alarm_id: str, operator: str, now: float, reason: str = "") -> Transition:
        rec = self._get(alarm_id)
        if rec.state is S.UNACK:
            rec.acked_by = operator
            return self._move(rec, S.ACKED, "ack", now, operator, reason)
        if rec.state is S.RTN_UNACK:
            rec.acked_by = operator
            t = self._move(rec, S.NORMAL, "ack", now, operator, reason)
            self._close_incident(rec, now, self.tuning[rec.kind])
            return t
        raise CommandError(f"alarm {alarm_id!r} is {rec.state}, nothing to acknowledge (无需确认)")

    def shelve(
        self, alarm_id: str, minutes: float, operator: str, now: float, reason: str = ""
    ) -> list[Transition]:
        if not 0 < minutes <= MAX_SHELVE_MIN:
            raise CommandError(f"shelve minutes must be in (0, {MAX_SHELVE_MIN}], got {minutes}")
        rec = self.records.get(alarm_id)
        if rec is None:
            # shelving ahead of planned work on a station that has not alarmed yet
            subject, kind = split_alarm_id(alarm_id)
            rec = AlarmRecord(alarm_id=alarm_id, kind=kind, subject=subject, station="")
            self.records[alarm_id] = rec
        if rec.state is S.SHELVED:
            raise CommandError(f"alarm {alarm_id!r} is already shelved (已搁置)")
        had_incident = rec.state in (S.UNACK, S.ACKED)
        t = self._move(rec, S.SHELVED, "shelve", now, operator, reason)
        rec.shelved_until = now + minutes * 60.0
        rec.shelved_by = operator
        rec.pending_since = None
        rec.absent_since = None
        if had_incident or rec.incident_id:
            self._close_incident(rec, now, AlarmTuning())
        return [t]

    def unshelve(self, alarm_id: str, operator: str, now: float, reason: str = "") -> Transition:
        rec = self._get(alarm_id)
        if rec.state is not S.SHELVED:
            raise CommandError(f"alarm {alarm_id!r} is {rec.state}, not shelved (未搁置)")
        rec.shelved_until = 0.0
        return self._move(rec, S.NORMAL, "unshelve", now, operator, reason)

    def escalate(
        self, incident_id: str, new_severity: str, now: float, reason: str
    ) -> Transition | None:
        """Raise an open incident's severity after a missed playbook deadline."""
        rec = self.by_incident(incident_id)
        if rec is None:
            return None
        rec.severity = new_severity
        return self._move(rec, rec.state, "escalate", now, reason=reason)
