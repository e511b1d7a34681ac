"""Alarm state on disk (SQLite, WAL): alarm records, playbook instances, pager marks.

Written once per tick in one transaction so a crash leaves either the old or the new
state. The pager table is the "paged" mark: an event is stored undelivered in the same
transaction as the transition that caused it and marked delivered once handed to the
pager hooks, so a restart delivers what was missed and never re-pages what was sent.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alarms.files import STATE_FILE
from alarms.sqlite_wal import WalDb

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (alarm_id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
    incident_id TEXT PRIMARY KEY, closed INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT UNIQUE NOT NULL,
    data TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0);
"""


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class StateStore(WalDb):
    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA)

    def load(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(alarm records, open playbook instances)."""
        with self._lock:
            alarms = [json.loads(r[0]) for r in self._db.execute("SELECT data FROM alarms")]
            inst = [
                json.loads(r[0])
                for r in self._db.execute("SELECT data FROM instances WHERE closed = 0")
            ]
        return alarms, inst

    def save(
        self,
        alarms: Iterable[dict[str, Any]],
        instances: Iterable[tuple[dict[str, Any], bool]],
        pages: Iterable[tuple[str, dict[str, Any]]],
    ) -> list[str]:
        """Upsert records and instances, add undelivered pages; returns the new page keys."""
        new_keys: list[str] = []
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO alarms(alarm_id, data) VALUES (?, ?)",
                    [(a["alarm_id"], _dumps(a)) for a in alarms],
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO instances(incident_id, closed, data) VALUES (?,?,?)",
                    [(d["incident_id"], int(closed), _dumps(d)) for d, closed in instances],
                )
                for key, event in pages:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO pages(key, data) VALUES (?, ?)", (key, _dumps(event))
                    )
                    if cur.rowcount:
                        new_keys.append(key)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return new_keys

    def undelivered_pages(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, data FROM pages WHERE delivered = 0 ORDER BY seq"
            ).fetchall()
        return [(k, json.loads(d)) for k, d in rows]

    def mark_delivered(self, keys: Iterable[str]) -> None:
        with self._lock:
            self._db.executemany(
                "UPDATE pages SET delivered = 1 WHERE key = ?", [(k,) for k in keys]
            )

    def page_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM pages").fetchone()[0]


def read_alarms(alarm_dir: Path) -> list[dict[str, Any]]:
    """For the CLI: alarm records not normal, as last saved by the daemon."""
    path = Path(alarm_dir) / STATE_FILE
    if not path.exists():
        return []
    store = StateStore(path)
    try:
        alarms, _ = store.load()
    finally:
        store.close()
    return [a for a in alarms if a["state"] != "normal"]


def read_playbook_instances(alarm_dir: Path) -> list[dict[str, Any]]:
    """Every playbook instance, open and closed, as last saved (PlaybookInstance.to_dict
    documents); [] without a state file. Opened read-only: safe beside the daemon."""
    path = Path(alarm_dir) / STATE_FILE
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [json.loads(r[0]) for r in db.execute("SELECT data FROM instances")]
    finally:
        db.close()
