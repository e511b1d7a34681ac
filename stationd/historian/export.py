"""`stationd export`: history out of whichever store holds it, as line protocol or CSV.

    export(reader, t_from, t_to, "lp")   # every measurement, ns timestamps: what
                                         # `stationd replay` and `influx write` read
    export(reader, t_from, t_to, "csv")  # the `station` measurement wide:
                                         # time,station,<canonical signals>,<extras>

The reader is any `HistoryReader` (embedded store, VictoriaMetrics, InfluxDB/InfluxQL),
so the same command moves history between them or into `replay`, and two stores holding
the same data export the same rows.
"""

from __future__ import annotations

import csv
import io
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TextIO

from stationd import signals
from stationd.historian.embedded import EmbeddedStore
from stationd.historian.lineproto import encode_point
from stationd.historian.reader import HistoryReader

log = logging.getLogger(__name__)

Format = Literal["lp", "csv"]


def to_ms(t: float | str | datetime | None, default: int) -> int:
    """Unix ms from unix seconds, RFC 3339 text or a datetime (naive = UTC)."""
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
    source: HistoryReader | EmbeddedStore,
    t_from: float | str | datetime | None,
    t_to: float | str | datetime | None,
    fmt: Format = "lp",
) -> Iterator[str]:
    """Yield the export text line by line (each ending in a newline).

    lp: every measurement, ns timestamps. csv: the `station` measurement wide, one row per
    station and tick: `time,station,<canonical signals>,<extras seen, by name>`, empty
    cells for values that were missing or bad.
    """
    if isinstance(source, EmbeddedStore):
        from stationd.historian.read_embedded import EmbeddedReader

        reader: HistoryReader = EmbeddedReader.over(source)
    else:
        reader = source
    lo = to_ms(t_from, 0)
    hi = to_ms(t_to, 2**62)
    if fmt == "lp":
        for p in reader.points(lo, hi):
            if p.line is not None:  # as stored: byte for byte what was written
                yield f"{p.line} {p.ts_ms * 1_000_000}\n"
            else:
                line = encode_point(p.measurement, p.tags, p.fields, p.ts_ms * 1_000_000)
                if line:
                    yield line + "\n"
        return
    if fmt != "csv":
        raise ValueError(f"export format {fmt!r}: use lp or csv")
    # First pass: which extras exist in the range, so the header is fixed up front.
    extras: set[str] = set()
    for p in reader.points(lo, hi, "station"):
        extras.update(k for k in p.fields if k not in signals.INDEX)
    columns = list(signals.NAMES) + sorted(extras)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["time", "station", *columns])
    yield buf.getvalue()
    for p in reader.points(lo, hi, "station"):
        buf.seek(0)
        buf.truncate()
        row = [rfc3339(p.ts_ms), p.tags.get("station", "")]
        w.writerow(row + [_cell(p.fields.get(c)) for c in columns])
        yield buf.getvalue()


def _cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def export_main(
    source: str | Path | HistoryReader,
    t_from: float | str | datetime | None,
    t_to: float | str | datetime | None,
    fmt: str,
    out: str | Path | TextIO | None,
) -> int:
    """`stationd export`: write history from `source` (a reader, or the path of an
    embedded store) to `out` ('-'/None: stdout).

    Returns the exit code: 0 done, 1 the store failed mid-way, 2 bad arguments or a
    missing store.
    """
    if fmt not in ("lp", "csv"):
        print(
            f"stationd export: format {fmt!r}: use lp or csv / 格式须为 lp 或 csv", file=sys.stderr
        )
        return 2
    try:
        to_ms(t_from, 0)
        to_ms(t_to, 0)
    except ValueError as e:
        print(f"stationd export: bad time ({e}); use RFC 3339 or unix seconds", file=sys.stderr)
        return 2
    if isinstance(source, str | Path):
        from stationd.historian.read_embedded import EmbeddedReader

        try:
            reader: HistoryReader = EmbeddedReader(source)
        except FileNotFoundError as e:
            print(f"stationd export: {e}", file=sys.stderr)
            return 2
    else:
        reader = source
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
            for chunk in export(reader, t_from, t_to, fmt):  # type: ignore[arg-type]
                stream.write(chunk)
                n += 1
        finally:
            if close:
                stream.close()
            else:
                stream.flush()
    except OSError as e:
        print(f"stationd export: {e}", file=sys.stderr)
        return 1
    finally:
        reader.close()
    log.info("exported %d lines (%s) from %s", n, fmt, reader.name)
    return 0
