"""The embedded history store: SQLite in place of InfluxDB.

With no InfluxDB configured the daemon still keeps history, through the same machinery
(encoder -> disk queue -> forwarder) with this store as the sink, so the demo works with
no server. A line is stored as written, keyed like InfluxDB keys a point (series +
timestamp: a re-sent batch overwrites instead of duplicating), and kept `retention_days`.

It is read back through `read_embedded.EmbeddedReader`, like any other history store.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from stationd.historian.lineproto import iter_lines, parse_series, split_line
from stationd.historian.sink import RejectedError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS point (
    series      TEXT    NOT NULL,  -- escaped `measurement,tags` as written
    ts          INTEGER NOT NULL,  -- unix ms
    measurement TEXT    NOT NULL,
    station     TEXT    NOT NULL,  -- the station tag ('' when the line has none)
    fields      TEXT    NOT NULL,  -- escaped field set as written
    PRIMARY KEY (series, ts)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS point_ts ON point(ts);
"""


class EmbeddedStore:
    """A Sink that keeps points in SQLite; also what EmbeddedReader reads."""

    def __init__(self, path: str | Path, retention_days: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.name = f"embedded {self.path}"
        self.retention_days = retention_days
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is enough here: the disk queue in front holds every batch until this
        # commit returns, so a power cut can only cost a re-send, never data.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def write(self, payload: bytes) -> None:
        rows = []
        try:
            for line in iter_lines(payload):
                series, field_text, ts = split_line(line)
                measurement, tags = parse_series(series)
                rows.append((series, ts, measurement, tags.get("station", ""), field_text))
        except ValueError as e:
            raise RejectedError(f"{self.name}: {e}") from e
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO point (series, ts, measurement, station, fields) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def prune(self, now: float | None = None) -> int:
        """Delete points older than the retention; returns how many went."""
        cutoff = round(
            ((now if now is not None else time.time()) - self.retention_days * 86400) * 1000
        )
        n = self._db.execute("DELETE FROM point WHERE ts < ?", (cutoff,)).rowcount
        if n:
            log.info(
                "embedded history: removed %d points older than %g days / 清理过期历史数据 %d 条",
                n,
                self.retention_days,
                n,
            )
        return n

    def count(self, measurement: str | None = None) -> int:
        if measurement is None:
            return self._db.execute("SELECT count(*) FROM point").fetchone()[0]
        return self._db.execute(
            "SELECT count(*) FROM point WHERE measurement = ?", (measurement,)
        ).fetchone()[0]

    def rows(
        self, t_from_ms: int, t_to_ms: int, measurement: str | None = None
    ) -> Iterator[tuple[str, int, str, str]]:
        """(series, ts ms, station, fields) in time order, then series."""
        sql = "SELECT series, ts, station, fields FROM point WHERE ts >= ? AND ts < ?"
        args: list[object] = [t_from_ms, t_to_ms]
        if measurement is not None:
            sql += " AND measurement = ?"
            args.append(measurement)
        sql += " ORDER BY ts, series"
        yield from self._db.execute(sql, args)

    def close(self) -> None:
        self._db.close()
