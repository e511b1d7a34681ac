"""The historian's disk-backed store-and-forward queue (SQLite in WAL mode).

Every batch of line protocol is committed here before anyone tries to send it, and is
deleted only after the database acknowledged it, so a database outage or a daemon
restart (even kill -9) loses nothing the queue acknowledged. Delivery is therefore
at-least-once: a batch sent just before a crash may be sent again, which InfluxDB and
VictoriaMetrics absorb because a point with the same series and timestamp overwrites.

Durability: `synchronous=FULL` by default. WAL with NORMAL already survives a process
crash (kill -9: the committed frames are in the WAL file), but can lose the last commits
when the box itself loses power, and the historian exists precisely to bridge outages; at
one commit per flush (about one a second) an fsync each costs nothing. NORMAL stays
available for slow flash storage.

Bounded: past `max_rows` or `max_bytes` the OLDEST batches are dropped (the newest data
is the most useful to the dispatch room), counted and logged (`dropped_batches`,
`dropped_lines`, one warning per overflow event, rate-limited).

The class is synchronous and not thread-safe; the forwarder calls it from its single
dedicated thread so the event loop never waits on disk.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

log = logging.getLogger(__name__)

Synchronous = Literal["FULL", "NORMAL"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL    NOT NULL,
    lines   INTEGER NOT NULL,
    nbytes  INTEGER NOT NULL,
    payload BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS batch_created ON batch(created);
"""


@dataclass(frozen=True, slots=True)
class Batch:
    id: int
    created: float  # wall time it was committed to the queue
    lines: int
    payload: bytes


class QueueMetrics:
    """Prometheus series for one queue (label `queue`), in the registry given."""

    # one set per registry (metric names register once); weak so test registries go away
    _by_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, QueueMetrics]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        self.depth = Gauge(
            "stationd_historian_queue_depth",
            "Batches waiting in the historian's store-and-forward queue",
            ["queue"],
            registry=registry,
        )
        self.bytes = Gauge(
            "stationd_historian_queue_bytes",
            "Payload bytes waiting in the historian's queue",
            ["queue"],
            registry=registry,
        )
        self.oldest_age = Gauge(
            "stationd_historian_queue_oldest_age_seconds",
            "Age of the oldest batch waiting in the historian's queue (0 when empty)",
            ["queue"],
            registry=registry,
        )
        self.dropped_batches = Counter(
            "stationd_historian_queue_dropped_batches",
            "Batches dropped (oldest first) because the queue was full",
            ["queue"],
            registry=registry,
        )
        self.dropped_lines = Counter(
            "stationd_historian_queue_dropped_lines",
            "Line-protocol lines dropped because the queue was full",
            ["queue"],
            registry=registry,
        )

    @classmethod
    def for_registry(cls, registry: CollectorRegistry) -> QueueMetrics:
        # Metric names may be registered only once per registry; a daemon with two
        # queues (or a test with many) shares one set with a `queue` label per queue.
        m = cls._by_registry.get(registry)
        if m is None:
            m = cls._by_registry[registry] = cls(registry)
        return m


class DiskQueue:
    """FIFO of line-protocol batches in one SQLite file."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_rows: int | None = None,
        max_bytes: int | None = None,
        synchronous: Synchronous = "FULL",
        name: str = "influxdb",
        registry: CollectorRegistry | None = None,
        clock=time.time,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.name = name
        self._clock = clock
        # check_same_thread=False: opened on the caller's thread, then used only from the
        # forwarder's single worker thread.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(_SCHEMA)
        row = self._db.execute(
            "SELECT count(*), coalesce(sum(nbytes), 0), min(created) FROM batch"
        ).fetchone()
        self.depth: int = row[0]
        self.bytes: int = row[1]
        self.oldest_created: float | None = row[2]
        self.dropped_batches = 0
        self.dropped_lines = 0
        self._last_drop_log = 0.0
        self._drops_since_log = 0
        m = QueueMetrics.for_registry(registry if registry is not None else REGISTRY)
        m.depth.labels(name).set_function(lambda: self.depth)
        m.bytes.labels(name).set_function(lambda: self.bytes)
        m.oldest_age.labels(name).set_function(lambda: self.oldest_age)
        self._m_dropped_batches = m.dropped_batches.labels(name)
        self._m_dropped_lines = m.dropped_lines.labels(name)
        if self.depth:
            log.info(
                "historian queue %s: %d batches (%d bytes) waiting from before the restart "
                "/ 重启前未发送的历史数据 %d 批",
                name,
                self.depth,
                self.bytes,
                self.depth,
            )

    # -- properties ----------------------------------------------------------------------
    @property
    def oldest_age(self) -> float:
        """Seconds since the oldest waiting batch was queued (0 when empty)."""
        if self.oldest_created is None:
            return 0.0
        return max(0.0, self._clock() - self.oldest_created)

    # -- writing -------------------------------------------------------------------------
    def put(self, payload: bytes, lines: int) -> int:
        """Commit one batch; returns its id. Applies the size cap (drop oldest)."""
        now = self._clock()
        with self._tx():
            cur = self._db.execute(
                "INSERT INTO batch (created, lines, nbytes, payload) VALUES (?, ?, ?, ?)",
                (now, lines, len(payload), payload),
            )
            self.depth += 1
            self.bytes += len(payload)
            if self.oldest_created is None:
                self.oldest_created = now
            self._enforce_cap()
        return int(cur.lastrowid or 0)

    def _enforce_cap(self) -> None:
        over_rows = self.max_rows is not None and self.depth > self.max_rows
        over_bytes = self.max_bytes is not None and self.bytes > self.max_bytes
        if not (over_rows or over_bytes):
            return
        n_rows = self.depth - self.max_rows if over_rows and self.max_rows is not None else 0
        excess_bytes = self.bytes - self.max_bytes if over_bytes and self.max_bytes else 0
        victims: list[int] = []
        freed = 0
        lines = 0
        # Always keep the newest batch, even when it alone exceeds max_bytes.
        for bid, nbytes, nlines in self._db.execute(
            "SELECT id, nbytes, lines FROM batch ORDER BY id LIMIT ?", (self.depth - 1,)
        ):
            if len(victims) >= n_rows and freed >= excess_bytes:
                break
            victims.append(bid)
            freed += nbytes
            lines += nlines
        if not victims:
            return
        self._db.execute(f"DELETE FROM batch WHERE id IN ({','.join('?' * len(victims))})", victims)
        self.depth -= len(victims)
        self.bytes -= freed
        self.oldest_created = self._db.execute("SELECT min(created) FROM batch").fetchone()[0]
        self.dropped_batches += len(victims)
        self.dropped_lines += lines
        self._m_dropped_batches.inc(len(victims))
        self._m_dropped_lines.inc(lines)
        self._drops_since_log += len(victims)
        now = self._clock()
        if now - self._last_drop_log >= 10.0:
            log.warning(
                "historian queue %s full (max_rows=%s, max_bytes=%s): dropped the %d oldest "
                "batches (%d lines in total so far) to make room for new data "
                "/ 历史队列已满, 丢弃最旧的 %d 批数据",
                self.name,
                self.max_rows,
                self.max_bytes,
                self._drops_since_log,
                self.dropped_lines,
                self._drops_since_log,
            )
            self._last_drop_log = now
            self._drops_since_log = 0

    # -- reading -------------------------------------------------------------------------
    def first_since(self, created_after: float) -> Batch | None:
        """The oldest batch queued at or after `created_after` (the live lane)."""
        row = self._db.execute(
            "SELECT id, created, lines, payload FROM batch WHERE created >= ? ORDER BY id LIMIT 1",
            (created_after,),
        ).fetchone()
        return Batch(*row) if row else None

    def first_before(self, created_before: float) -> Batch | None:
        """The oldest batch queued before `created_before` (the backlog lane)."""
        row = self._db.execute(
            "SELECT id, created, lines, payload FROM batch WHERE created < ? ORDER BY id LIMIT 1",
            (created_before,),
        ).fetchone()
        return Batch(*row) if row else None

    def oldest(self) -> Batch | None:
        row = self._db.execute(
            "SELECT id, created, lines, payload FROM batch ORDER BY id LIMIT 1"
        ).fetchone()
        return Batch(*row) if row else None

    def ack(self, batch_id: int) -> None:
        """The database has it: forget the batch."""
        with self._tx():
            row = self._db.execute(
                "DELETE FROM batch WHERE id = ? RETURNING nbytes", (batch_id,)
            ).fetchone()
            if row is None:  # already dropped by the cap while it was in flight
                return
            self.depth -= 1
            self.bytes -= row[0]
            self.oldest_created = (
                self._db.execute("SELECT min(created) FROM batch").fetchone()[0]
                if self.depth
                else None
            )

    def close(self) -> None:
        self._db.close()

    def _tx(self):
        return _Tx(self._db)


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT / ROLLBACK (autocommit connection, explicit transactions)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
