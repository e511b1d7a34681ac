"""The dispatch log (调度日志): an append-only SQLite record of everything dispatch did.

The plan (000 方案2 二.2) asks dispatch to log every instruction and its feedback. Here
every alarm transition, operator command (with the operator), playbook step, escalation,
note and manual field reading becomes one row. SQLite triggers refuse UPDATE and DELETE,
so the log is append-only by construction. `query()` backs `stationd log`.

The class is synchronous (sqlite3); async callers run it in a worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from alarms.files import LOG_FILE
from alarms.sqlite_wal import WalDb

EntryKind = Literal[
    "transition", "command", "step", "escalation", "note", "field_reading", "daemon", "control"
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    station TEXT NOT NULL DEFAULT '',
    stations TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    alarm_id TEXT NOT NULL DEFAULT '',
    incident_id TEXT NOT NULL DEFAULT '',
    operator TEXT NOT NULL DEFAULT '',
    text_zh TEXT NOT NULL DEFAULT '',
    text_en TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS log_time ON log(time);
CREATE INDEX IF NOT EXISTS log_station ON log(station, time);
CREATE INDEX IF NOT EXISTS log_incident ON log(incident_id, time);
CREATE TRIGGER IF NOT EXISTS log_no_update BEFORE UPDATE ON log
BEGIN SELECT RAISE(ABORT, 'dispatch log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS log_no_delete BEFORE DELETE ON log
BEGIN SELECT RAISE(ABORT, 'dispatch log is append-only'); END;
"""


@dataclass(frozen=True, slots=True)
class LogEntry:
    time: float
    kind: EntryKind
    text_zh: str
    text_en: str
    station: str = ""
    stations: tuple[str, ...] = ()
    subject: str = ""
    alarm_id: str = ""
    incident_id: str = ""
    operator: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    seq: int = 0  # assigned by the log

    def line(self) -> str:
        """One human line, for `stationd log`."""
        ts = datetime.fromtimestamp(self.time, UTC).strftime("%Y-%m-%d %H:%M:%S")
        who = f" [{self.operator}]" if self.operator else ""
        where = self.station or self.subject
        inc = f" {self.incident_id}" if self.incident_id else ""
        return f"{ts}Z {self.kind:<13} {where:<12}{inc}{who} {self.text_zh} | {self.text_en}"


class DispatchLog(WalDb):
    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA)

    def append(self, entries: Iterable[LogEntry]) -> int:
        rows = [
            (
                e.time,
                e.kind,
                e.station,
                "," + ",".join(e.stations) + "," if e.stations else "",
                e.subject,
                e.alarm_id,
                e.incident_id,
                e.operator,
                e.text_zh,
                e.text_en,
                json.dumps(e.data, ensure_ascii=False, default=str),
            )
            for e in entries
        ]
        if not rows:
            return 0
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO log(time, kind, station, stations, subject, alarm_id, incident_id,"
                " operator, text_zh, text_en, data) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            self._db.execute("COMMIT")
        return len(rows)

    def query(
        self,
        since: float | None = None,
        until: float | None = None,
        station: str | None = None,
        incident: str | None = None,
        kinds: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> list[LogEntry]:
        """Entries in time order; `station` also matches fleet entries naming it."""
        where: list[str] = []
        args: list[Any] = []
        if since is not None:
            where.append("time >= ?")
            args.append(since)
        if until is not None:
            where.append("time < ?")
            args.append(until)
        if station:
            where.append("(station = ? OR stations LIKE ?)")
            args += [station, f"%,{station},%"]
        if incident:
            where.append("incident_id = ?")
            args.append(incident)
        if kinds:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args += list(kinds)
        sql = "SELECT seq, time, kind, station, stations, subject, alarm_id, incident_id, operator,"
        sql += " text_zh, text_en, data FROM log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time, seq LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [
            LogEntry(
                seq=r[0],
                time=r[1],
                kind=r[2],
                station=r[3],
                stations=tuple(x for x in r[4].split(",") if x),
                subject=r[5],
                alarm_id=r[6],
                incident_id=r[7],
                operator=r[8],
                text_zh=r[9],
                text_en=r[10],
                data=json.loads(r[11]),
            )
            for r in rows
        ]


def query_log(
    alarm_dir: Path,
    since: float | None = None,
    until: float | None = None,
    station: str | None = None,
    incident: str | None = None,
    kinds: Sequence[str] | None = None,
    limit: int = 1000,
) -> list[LogEntry]:
    """For `stationd log`, `kpi` and the report: read the dispatch log in `alarm_dir`
    (alarms/files.py `alarm_dir()` finds it for a state dir). Safe while the daemon runs:
    WAL lets a reader in beside the writer."""
    path = Path(alarm_dir) / LOG_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"no dispatch log at {path} (has the daemon run with this state dir?)"
        )
    dlog = DispatchLog(path)
    try:
        return dlog.query(since, until, station, incident, kinds, limit)
    finally:
        dlog.close()
