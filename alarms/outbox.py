"""A disk-backed FIFO of outgoing MQTT messages (SQLite, WAL).

Alarm transitions must survive a broker outage and a daemon restart: every message is
written here first, sent in order when the broker is reachable, and deleted only once
the broker has acknowledged it (QoS 1 PUBACK). Bounded: past `max_rows` the oldest
non-retained event messages are dropped first and counted — retained state is what a
dispatch screen needs to be right after an outage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from alarms.sqlite_wal import WalDb

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutMessage:
    seq: int
    topic: str
    payload: bytes
    retain: bool


class Outbox(WalDb):
    def __init__(self, path: Path, max_rows: int = 200_000) -> None:
        super().__init__(
            path,
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " topic TEXT NOT NULL, payload BLOB NOT NULL, retain INTEGER NOT NULL)",
        )
        self.max_rows = max_rows
        self.dropped = 0

    def add(self, messages: Iterable[tuple[str, bytes, bool]]) -> int:
        rows = [(t, p, int(r)) for t, p, r in messages]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO outbox(topic, payload, retain) VALUES (?,?,?)", rows)
            n = self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]
            if n > self.max_rows:
                over = n - self.max_rows
                cur = self._db.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE retain = 0"
                    " ORDER BY seq LIMIT ?)",
                    (over,),
                )
                self.dropped += cur.rowcount
                log.warning(
                    "mqtt outbox full (%d rows): dropped %d oldest events, %d in total",
                    self.max_rows,
                    cur.rowcount,
                    self.dropped,
                )
            self._db.execute("COMMIT")
        return len(rows)

    def after(self, seq: int, limit: int) -> list[OutMessage]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload, retain FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [OutMessage(r[0], r[1], bytes(r[2]), bool(r[3])) for r in rows]

    def remove(self, seqs: Iterable[int]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]
