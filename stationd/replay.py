"""`stationd replay`: run the detectors over recorded samples at full speed, write transitions.

Input is what the historian exports (or any recorder produces): wide CSV
`time,station,<signal>...` (RFC 3339 or unix seconds; empty cell = missing) or InfluxDB
line protocol (measurement `station`, tag `station`, one field per signal; other
measurements are skipped). Samples are snapped to the tick grid and fed through a fleet
frame tick by tick — a tick with no sample from a station is a missed poll, exactly as
live — and the active findings are diffed per alarm id into `raise` / `clear` lines of
JSONL. Time comes from the data, so a week replays in seconds.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from stationd import signals
from stationd.detect.engine import Detector
from stationd.detect.static import FleetStatic
from stationd.finding_stream import FindingStream
from stationd.findings import Finding
from stationd.frame import FleetFrame

log = logging.getLogger(__name__)

Sample = tuple[float, str, dict[str, float]]  # (unix seconds, station id, signal -> value)


class InputError(ValueError):
    """Unreadable input, with the file and line named."""


# -- readers -------------------------------------------------------------------------------
def parse_time(text: str) -> float:
    """RFC 3339 (`2026-11-23T08:00:00Z`, offsets allowed) or unix seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    return dt.timestamp()


def _number(text: str) -> float:
    t = text.strip()
    if t == "":
        return math.nan
    low = t.lower()
    if low in ("true", "t"):
        return 1.0
    if low in ("false", "f"):
        return 0.0
    return float(t)


def read_csv(path: str | Path) -> Iterator[Sample]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or header[:2] != ["time", "station"]:
            raise InputError(f"{path}:1: CSV header must start with time,station (got {header!r})")
        cols = header[2:]
        for n, row in enumerate(reader, start=2):
            if not row or all(c == "" for c in row):
                continue
            if len(row) != len(header):
                raise InputError(f"{path}:{n}: {len(row)} cells, header has {len(header)}")
            try:
                t = parse_time(row[0])
                values = {c: _number(v) for c, v in zip(cols, row[2:], strict=True)}
            except ValueError as e:
                raise InputError(f"{path}:{n}: {e}") from None
            yield t, row[1], values


def _split_unescaped(s: str, sep: str) -> list[str]:
    """Split on `sep` outside double quotes and not escaped by a backslash."""
    out, cur, quoted, i = [], [], False, 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            cur.append(s[i : i + 2])
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        if c == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def _unescape(s: str) -> str:
    return (
        s.replace("\\,", ",")
        .replace("\\=", "=")
        .replace("\\ ", " ")
        .replace('\\"', '"')
        .replace("\\\\", "\\")
    )


def _lp_time(ts: str) -> float:
    """Line-protocol timestamps are ns; shorter ones (s/ms/µs exports) are told by size."""
    v = int(ts)
    for scale, limit in ((10**9, 10**17), (10**6, 10**14), (10**3, 10**11)):
        if abs(v) >= limit:
            whole, frac = divmod(v, scale)  # exact seconds first: no float rounding of ns
            return whole + frac / scale
    return float(v)


def _lp_field(v: str) -> float:
    if v.startswith('"'):
        return math.nan  # string fields carry no signal value
    if v[-1:] in ("i", "u"):
        return float(v[:-1])
    return _number(v)


def read_lineprotocol(path: str | Path) -> Iterator[Sample]:
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = _split_unescaped(line, " ")
            if len(parts) != 3:
                raise InputError(f"{path}:{n}: expected `measurement,tags fields timestamp`")
            head = _split_unescaped(parts[0], ",")
            if _unescape(head[0]) != "station":
                continue
            tags = dict(_unescape_pair(kv) for kv in head[1:])
            station = tags.get("station")
            if not station:
                raise InputError(f"{path}:{n}: no `station` tag")
            try:
                fields = {
                    _unescape(k): _lp_field(v)
                    for k, v in (_kv(f) for f in _split_unescaped(parts[1], ","))
                }
                t = _lp_time(parts[2])
            except ValueError as e:
                raise InputError(f"{path}:{n}: {e}") from None
            yield t, station, fields


def _kv(pair: str) -> tuple[str, str]:
    k, sep, v = pair.partition("=")
    while k.endswith("\\") and sep:  # an escaped '=' inside the key
        k2, sep, v = v.partition("=")
        k = f"{k}={k2}"
    if not sep:
        raise ValueError(f"bad key=value {pair!r}")
    return k, v


def _unescape_pair(pair: str) -> tuple[str, str]:
    k, v = _kv(pair)
    return _unescape(k), _unescape(v)


def read_samples(path: str | Path) -> Iterator[Sample]:
    """CSV if the file starts with a `time,station` header, else line protocol."""
    with open(path, encoding="utf-8-sig") as fh:
        head = fh.readline()
    if head.startswith("time,station"):
        return read_csv(path)
    return read_lineprotocol(path)


# -- replay --------------------------------------------------------------------------------
def ticks_of(
    samples: Iterable[Sample], interval: float
) -> dict[float, list[tuple[str, dict[str, float]]]]:
    """Samples grouped by the tick they belong to (snapped to multiples of the interval)."""
    by_tick: dict[float, list[tuple[str, dict[str, float]]]] = defaultdict(list)
    for t, station, values in samples:
        by_tick[round(t / interval) * interval].append((station, values))
    return by_tick


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _clean(o: Any) -> Any:
    """JSON-safe evidence: NaN/inf become null (JSON has no NaN), numpy scalars plain."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    if isinstance(o, float | np.floating):
        return float(o) if math.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    return o


def transition(t: float, f: Finding, state: str) -> dict[str, Any]:
    return _clean(
        {
            "time": rfc3339(t),
            "station": f.subject,
            "finding": f.kind,
            "state": state,
            "severity": f.severity,
            "value": f.value,
            "scope": f.scope,
            "alarm_id": f.alarm_id,
            "onset": rfc3339(f.onset) if math.isfinite(f.onset) else None,
            "stations": list(f.stations),
            "message_zh": f.message_zh,
            "message_en": f.message_en,
            "evidence": f.evidence,
        }
    )


def replay(
    static: FleetStatic,
    samples: Iterable[Sample],
    interval: float,
    out: IO[str],
) -> dict[str, int]:
    """Feed samples tick by tick through a frame and the detectors; write JSONL transitions."""
    by_tick = ticks_of(samples, interval)
    stats = {"ticks": 0, "samples": 0, "unknown_station_samples": 0, "raise": 0, "clear": 0}
    if not by_tick:
        return stats
    frame = FleetFrame(list(static.ids), window=2)
    det = Detector(static)
    cols = {name: signals.INDEX[name] for name in signals.NAMES}
    unknown: set[str] = set()
    first_k, last_k = round(min(by_tick) / interval), round(max(by_tick) / interval)
    stream = FindingStream()
    row = np.empty(signals.K)
    for k in range(first_k, last_k + 1):
        t = k * interval
        for station, values in by_tick.get(t, ()):
            i = frame.index.get(station)
            if i is None:
                stats["unknown_station_samples"] += 1
                if station not in unknown:
                    unknown.add(station)
                    log.warning(
                        "replay: station %r is not in the config; its samples are skipped", station
                    )
                continue
            row.fill(np.nan)
            for name, v in values.items():
                c = cols.get(name)
                if c is not None:
                    row[c] = v
            frame.put(i, row)
            stats["samples"] += 1
        frame.commit(t)
        for change in stream.update(t, det.step(frame)):
            out.write(
                json.dumps(transition(t, change.finding, change.state), ensure_ascii=False) + "\n"
            )
            stats[change.state] += 1
        stats["ticks"] += 1
    return stats


def replay_main(
    config_path: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    interval: float | None = None,
) -> int:
    """CLI body of `stationd replay --config FILE --input DATA --output findings.jsonl`."""
    from stationd.config import ConfigError, load_config

    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        print(f"stationd replay: {e}", file=sys.stderr)
        return 2
    step = float(interval if interval is not None else cfg.defaults.interval)
    if step <= 0:
        print("stationd replay: --interval must be positive / 周期须为正数", file=sys.stderr)
        return 2
    static = FleetStatic.from_config(cfg)
    try:
        samples = list(read_samples(input_path))
    except (OSError, InputError) as e:
        print(f"stationd replay: {e}", file=sys.stderr)
        return 2
    to_stdout = str(output_path) == "-"
    fh: IO[str] = sys.stdout if to_stdout else open(output_path, "w", encoding="utf-8")
    try:
        stats = replay(static, samples, step, fh)
    finally:
        if not to_stdout:
            fh.close()
    print(
        f"stationd replay: {stats['ticks']} ticks, {stats['samples']} samples, "
        f"{stats['raise']} raised, {stats['clear']} cleared"
        + (
            f", {stats['unknown_station_samples']} samples of unknown stations skipped"
            if stats["unknown_station_samples"]
            else ""
        ),
        file=sys.stderr,
    )
    return 0
