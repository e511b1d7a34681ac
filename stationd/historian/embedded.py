"""The embedded history store: SQLite in place of InfluxDB, and export from it.

With no InfluxDB configured the daemon still keeps history, through the same machinery
(encoder -> disk queue -> forwarder) with this store as the sink, so the demo works with
no server. A line is stored as written, keyed like InfluxDB keys a point (series +
timestamp: a re-sent batch overwrites instead of duplicating), and kept `retention_days`.

`export()` gives it back as line protocol (ns timestamps, what `stationd replay` and
`influx write` read) or as wide CSV `time,station,<signal>...` (RFC 3339 times).
"""

from __future__ import annotations

import csv
import io
import logging
import sqlite3
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TextIO

from stationd import signals
from stationd.historian.lineproto import iter_lines, parse_fields, parse_series, split_line
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

Format = Literal["lp", "csv"]


class EmbeddedStore:
    """A Sink that keeps points in SQLite; also the reader behind export()."""

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


# --- export ------------------------------------------------------------------------------
def _to_ms(t: float | str | datetime | None, default: int) -> int:
    if t is None:
        return default
    if isinstance(t, datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        return round(t.timestamp() * 1000)
    if isinstance(t, str):
        try:
            return round(float(t) * 1000)
        except ValueError:
            pass
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return round(dt.timestamp() * 1000)
    return round(float(t) * 1000)


def rfc3339(ts_ms: int) -> str:
    return (
        datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def export(
    store: EmbeddedStore,
    t_from: float | str | datetime | None,
    t_to: float | str | datetime | None,
    fmt: Format = "lp",
) -> Iterator[str]:
    """Yield the export text line by line (each ending in a newline).

    lp: every measurement, ns timestamps. csv: the `station` measurement wide, one row per
    station and tick: `time,station,<canonical signals>,<extras seen, by name>`, empty
    cells for values that were missing or bad.
    """
    lo = _to_ms(t_from, 0)
    hi = _to_ms(t_to, 2**62)
    if fmt == "lp":
        for series, ts, _station, fields in store.rows(lo, hi):
            yield f"{series} {fields} {ts * 1_000_000}\n"
        return
    if fmt != "csv":
        raise ValueError(f"export format {fmt!r}: use lp or csv")
    # First pass: which extras exist in the range, so the header is fixed up front.
    extras: set[str] = set()
    for _s, _ts, _st, fields in store.rows(lo, hi, "station"):
        extras.update(k for k in parse_fields(fields) if k not in signals.INDEX)
    columns = list(signals.NAMES) + sorted(extras)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["time", "station", *columns])
    yield buf.getvalue()
    for _series, ts, station, fields in store.rows(lo, hi, "station"):
        values = parse_fields(fields)
        buf.seek(0)
        buf.truncate()
        w.writerow([rfc3339(ts), station, *(_cell(values.get(c)) for c in columns)])
        yield buf.getvalue()


def _cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def export_main(
    db_path: str | Path,
    t_from: float | str | datetime | None,
    t_to: float | str | datetime | None,
    fmt: str,
    out: str | Path | TextIO | None,
) -> int:
    """`stationd export`: write history from the embedded store to `out` ('-'/None: stdout).

    Returns the exit code: 0 done, 2 bad arguments or a missing store.
    """
    p = Path(db_path)
    if not p.exists():
        print(
            f"stationd export: no embedded history at {p} / 找不到本地历史库 {p}",
            file=sys.stderr,
        )
        return 2
    if fmt not in ("lp", "csv"):
        print(
            f"stationd export: format {fmt!r}: use lp or csv / 格式须为 lp 或 csv", file=sys.stderr
        )
        return 2
    try:
        _to_ms(t_from, 0)
        _to_ms(t_to, 0)
    except ValueError as e:
        print(f"stationd export: bad time ({e}); use RFC 3339 or unix seconds", file=sys.stderr)
        return 2
    store = EmbeddedStore(p)
    n = 0
    try:
        if out is None or out == "-":
            stream: TextIO = sys.stdout
            close = False
        elif isinstance(out, str | Path):
            stream = open(out, "w", encoding="utf-8", newline="")
            close = True
        else:
            stream, close = out, False
        try:
            for chunk in export(store, t_from, t_to, fmt):  # type: ignore[arg-type]
                stream.write(chunk)
                n += 1
        finally:
            if close:
                stream.close()
            else:
                stream.flush()
    finally:
        store.close()
    log.info("exported %d lines (%s) from %s", n, fmt, p)
    return 0
