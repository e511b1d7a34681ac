"""InfluxDB line protocol for the historian: escaping, fleet-tick encoding, parsing.

The tick path is hot (a 1,000-station fleet every second), so everything that does not
change between ticks is compiled once: each station's escaped `measurement,tags ` prefix
and a %-template of its field keys. Per tick only integers are formatted, for the whole
fleet in one C-level `%` call; there is no Point object per value (bench/bench_historian.py
measures ~16-20x faster than Point).

Escaping, tag and field order follow influxdb-client's own `Point` byte for byte (same
tables, keys sorted), so series written here and by a Point are the same series;
`encode_point` (alarms, daemon health) also formats floats as Point does.
tests/test_historian_lineproto.py checks both against Point with hypothesis.

Over 400 lines on purpose: the writer and the parser must agree on one escaping table,
and keeping them side by side is what lets the round-trip test hold them to it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from stationd import signals

# The same tables influxdb_client.client.write.point uses.
_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})


def escape_measurement(name: str) -> str:
    return name.translate(_ESCAPE_MEASUREMENT)


def escape_key(key: str) -> str:
    """Escape a tag key or field key."""
    return key.translate(_ESCAPE_KEY)


def escape_tag_value(value: str) -> str:
    ret = value.translate(_ESCAPE_KEY)
    # A trailing backslash would escape the separator after it; Point pads it the same way.
    if ret.endswith("\\"):
        ret += " "
    return ret


def tag_set(tags: Mapping[str, str | None]) -> str:
    """`,k=v,...` sorted by key; empty keys/values omitted (as Point does)."""
    parts = []
    for k, v in sorted(tags.items()):
        if v is None:
            continue
        ek, ev = escape_key(k), escape_tag_value(str(v))
        if ek and ev:
            parts.append(f"{ek}={ev}")
    return ("," + ",".join(parts)) if parts else ""


def format_float(x: float) -> str:
    s = str(float(x))
    return s[:-2] if s.endswith(".0") else s


def field_set(fields: Mapping[str, float | int | bool | str | None]) -> str:
    """Fields sorted by key. Numbers become floats (one type per field avoids InfluxDB
    field-type conflicts between a station that reports 1 and one that reports 1.0);
    non-finite and None values are omitted; strings are quoted (rarely used: VictoriaMetrics
    stores them as 0, so the writer keeps text in tags)."""
    parts = []
    for k, v in sorted(fields.items()):
        if v is None:
            continue
        if isinstance(v, str):
            parts.append(f'{escape_key(k)}="{v.translate(_ESCAPE_STRING)}"')
            continue
        fv = float(v)
        if not math.isfinite(fv):
            continue
        parts.append(f"{escape_key(k)}={format_float(fv)}")
    return ",".join(parts)


def encode_point(
    measurement: str, tags: Mapping[str, str | None], fields: Mapping[str, object], ts: int
) -> str:
    """One line (no newline), or "" when no field survives (as Point does)."""
    fs = field_set(fields)  # type: ignore[arg-type]
    if not fs:
        return ""
    return f"{escape_measurement(measurement)}{tag_set(tags)} {fs} {ts}"


def ms(t: float) -> int:
    """Unix seconds to the integer milliseconds the historian writes (VictoriaMetrics keeps ms)."""
    return round(t * 1000.0)


# --- the fleet encoder ---------------------------------------------------------------------
#: Decimal places written per canonical signal: finer than any PLC register here (0.01 °C,
#: 0.1 kPa, 0.1 L/h of make-up). A value x with d places is written as the integer
#: mantissa round(x * 10^d) with the exponent `e-d` (65.31 °C -> `6531e-2`): valid line
#: protocol floats that InfluxDB, VictoriaMetrics and Python all read exactly, and
#: formatting an integer costs a third of formatting a float, which is the whole cost of
#: encoding a tick.
DECIMALS: dict[str, int] = {
    "primary_supply_temp": 2,
    "primary_return_temp": 2,
    "primary_supply_pressure": 4,
    "primary_return_pressure": 4,
    "primary_flow": 3,
    "heat_energy": 3,
    "secondary_supply_temp": 2,
    "secondary_return_temp": 2,
    "secondary_supply_pressure": 4,
    "secondary_return_pressure": 4,
    "secondary_flow": 3,
    "makeup_flow": 4,
    "makeup_total": 3,
    "makeup_tank_level": 3,
    "circ_pump_running": 0,
    "makeup_pump_running": 0,
    "circ_pump_freq": 2,
    "primary_valve_position": 2,
    "mains_power": 0,
    "outdoor_temp": 2,
    "indoor_temp": 2,
}
#: Extras and derived ratios (a loss rate of 0.0049) get more places than process values.
DEFAULT_DECIMALS = 6
_EXACT = float(2**53)


@dataclass(frozen=True, slots=True)
class StationTags:
    """What a station's lines are tagged with (DESIGN.md: site, station, branch; plus the
    Chinese name so dashboards can show it without a join) and which signals it has."""

    id: str
    name: str = ""
    branch: str = ""
    # canonical signals and extras the station maps; None: every column may be present
    signals: tuple[str, ...] | None = None


def _pct(s: str) -> str:
    return s.replace("%", "%%")


class _Plan:
    """One measurement's compiled tick: per-station templates and a whole-fleet template.

    Stations differ in which signals they map (indoor_temp and the tank level are
    optional), so each station's template covers exactly its columns, sorted by name as
    Point sorts them. The fleet template is all of them concatenated: a tick in which every
    mapped value is good is formatted by ONE `%` call, entirely in C.
    """

    def __init__(
        self,
        names: Sequence[str],
        stations: Sequence[StationTags],
        decimals: Mapping[str, int],
    ) -> None:
        self.names = tuple(names)
        k = len(self.names)
        self.k = k
        self.prefixes: list[str] = []
        self.present = np.zeros((len(stations), k), dtype=bool)
        self.keys = [escape_key(n) + "=" for n in self.names]
        self.decimals = np.array([decimals.get(n, DEFAULT_DECIMALS) for n in self.names])
        self.scale = 10.0 ** self.decimals.astype(np.float64)
        self.cell_fmt = ["%d" + (f"e-{d}" if d else "") for d in self.decimals.tolist()]
        by_name = sorted(range(k), key=lambda j: self.names[j])
        flat: list[int] = []
        self.row_start: list[int] = []
        self.row_templates: list[str] = []
        for i, st in enumerate(stations):
            wanted = None if st.signals is None else set(st.signals)
            cols = [j for j in by_name if wanted is None or self.names[j] in wanted]
            self.present[i, cols] = True
            self.row_start.append(len(flat))
            flat.extend(i * (k + 1) + j for j in cols)
            flat.append(i * (k + 1) + k)  # the timestamp column
            fields = ",".join(_pct(self.keys[j]) + self.cell_fmt[j] for j in cols)
            self.row_templates.append(fields + " %d\n" if cols else "")
        self.row_start.append(len(flat))
        self.flat_idx = np.array(flat, dtype=np.intp)
        self.n_cells = len(flat) - len(stations)
        self.all_have_fields = all(self.row_templates)
        self.row_bytes: list[bytes] = []
        self.fleet_template = b""

    def bind(self, prefixes: Sequence[str]) -> None:
        """Prepend the stations' tag prefixes; templates are UTF-8 bytes, so the tick's
        output is the HTTP body as is (no str -> bytes pass over ~0.6 MB per tick)."""
        self.prefixes = list(prefixes)
        self.row_bytes = [
            (_pct(p) + t).encode() if t else b""
            for p, t in zip(prefixes, self.row_templates, strict=True)
        ]
        self.fleet_template = b"".join(self.row_bytes)


class FleetEncoder:
    """Line protocol for a whole fleet's tick, from a [stations, columns] float array.

    Values are written with fixed decimals per column (DECIMALS); extras and derived
    columns with DEFAULT_DECIMALS. NaN/inf (missing, bad quality) are omitted, and a
    station with no good value writes no line, as Point does.
    """

    def __init__(
        self,
        site: str,
        stations: Sequence[StationTags],
        decimals: Mapping[str, int] | None = None,
    ) -> None:
        self.site = site
        self.stations = tuple(stations)
        self.decimals = dict(DECIMALS if decimals is None else decimals)
        extras: set[str] = set()
        for st in self.stations:
            extras.update(n for n in (st.signals or ()) if n not in signals.INDEX)
        #: columns of the station measurement: canonical signals, then every extra by name
        self.station_columns = signals.NAMES + tuple(sorted(extras))
        self.extra_index = {n: i for i, n in enumerate(self.station_columns)}
        # per station: the columns of its extras, in its read order (StationTags.signals),
        # so a tick's extras arrive as one array per station and land without a name lookup
        self.extra_cols = [
            np.array(
                [self.extra_index[n] for n in (st.signals or ()) if n not in signals.INDEX],
                dtype=np.intp,
            )
            for st in self.stations
        ]
        self._plans: dict[tuple[str, tuple[str, ...]], _Plan] = {}
        self._prefixes: dict[str, list[str]] = {}

    def prefixes(self, measurement: str) -> list[str]:
        """Escaped `measurement,branch=..,name=..,site=..,station=.. ` per station, cached."""
        p = self._prefixes.get(measurement)
        if p is None:
            m = escape_measurement(measurement)
            p = [
                m
                + tag_set({"site": self.site, "station": s.id, "name": s.name, "branch": s.branch})
                + " "
                for s in self.stations
            ]
            self._prefixes[measurement] = p
        return p

    def plan(self, measurement: str, names: Sequence[str], per_station: bool) -> _Plan:
        key = (measurement, tuple(names))
        pl = self._plans.get(key)
        if pl is None:
            stations = (
                self.stations
                if per_station
                else [StationTags(s.id, s.name, s.branch, None) for s in self.stations]
            )
            pl = _Plan(names, stations, self.decimals)
            pl.bind(self.prefixes(measurement))
            self._plans[key] = pl
        return pl

    def encode(
        self,
        measurement: str,
        names: Sequence[str],
        values: np.ndarray,
        ts_ms: int,
        *,
        per_station: bool = False,
        loose: Mapping[int, Mapping[str, float]] | None = None,
    ) -> tuple[bytes, int, int]:
        """(UTF-8 lines, lines, field values) for one tick of `values` [stations, len(names)].

        per_station: only the columns each station maps (StationTags.signals) are written.
        loose: per-station fields outside `names` (written at full precision).
        """
        pl = self.plan(measurement, names, per_station)
        v = np.asarray(values, dtype=np.float64)
        s = len(self.stations)
        if v.shape != (s, pl.k):
            raise ValueError(
                f"{measurement}: values shape {v.shape} != ({s} stations, {pl.k} columns)"
            )
        scaled = v * pl.scale
        good = np.isfinite(scaled)
        # beyond 2^53 the mantissa is no longer exact (and int64 may overflow): slow path
        good &= np.abs(np.where(good, scaled, 0.0)) < _EXACT
        ext = np.empty((s, pl.k + 1), dtype=np.int64)
        ext[:, : pl.k] = np.rint(np.where(good, scaled, 0.0))
        ext[:, pl.k] = ts_ms
        args = ext.ravel()[pl.flat_idx]
        bad = ~good & pl.present
        if not loose and pl.all_have_fields and not bad.any():
            return pl.fleet_template % tuple(args.tolist()), s, pl.n_cells
        bad_rows = bad.any(axis=1)
        arg_list = args.tolist()
        suffix = f" {ts_ms}\n"
        out: list[bytes] = []
        n_fields = 0
        loose = loose or {}
        for i in range(s):
            extra = loose.get(i)
            if not bad_rows[i] and not extra:
                if pl.row_bytes[i]:
                    a, b = pl.row_start[i], pl.row_start[i + 1]
                    out.append(pl.row_bytes[i] % tuple(arg_list[a:b]))
                    n_fields += b - a - 1
                continue
            cells = {
                pl.names[j]: pl.keys[j] + pl.cell_fmt[j] % ext[i, j]
                for j in np.flatnonzero(pl.present[i] & good[i]).tolist()
            }
            for j in np.flatnonzero(pl.present[i] & ~good[i] & np.isfinite(v[i])).tolist():
                cells[pl.names[j]] = pl.keys[j] + format_float(float(v[i, j]))  # huge value
            for name, x in (extra or {}).items():
                fx = float(x)
                if math.isfinite(fx):
                    cells[name] = escape_key(name) + "=" + format_float(fx)
            if cells:
                line = pl.prefixes[i] + ",".join(cells[k] for k in sorted(cells)) + suffix
                out.append(line.encode())
                n_fields += len(cells)
        return b"".join(out), len(out), n_fields

    def station_tick(
        self,
        values: np.ndarray,
        ts_ms: int,
        extras: Mapping[int, Mapping[str, float] | np.ndarray] | None = None,
    ) -> tuple[bytes, int, int]:
        """The `station` measurement: canonical values [S, K] plus per-station extras.

        A station's extras are either an array in the order of its extras in
        StationTags.signals (what the poller reads: no names on the tick path) or a
        {name: value} mapping. Extras the station maps go through the compiled templates
        (DEFAULT_DECIMALS places); any other extra name is still written, at full
        precision, on the slower per-cell path.
        """
        cols = self.station_columns
        if len(cols) == signals.K and not extras:
            return self.encode("station", cols, values, ts_ms, per_station=True)
        full = np.full((len(self.stations), len(cols)), np.nan, dtype=np.float64)
        full[:, : signals.K] = values
        loose: dict[int, dict[str, float]] = {}
        for i, fields in (extras or {}).items():
            if isinstance(fields, np.ndarray):
                full[i, self.extra_cols[i]] = fields
                continue
            for name, x in fields.items():
                j = self.extra_index.get(name)
                if j is not None and j >= signals.K and self._maps(i, name):
                    full[i, j] = x
                else:
                    loose.setdefault(i, {})[name] = x
        return self.encode("station", cols, full, ts_ms, per_station=True, loose=loose)

    def _maps(self, i: int, name: str) -> bool:
        sig = self.stations[i].signals
        return sig is None or name in sig

    def derived(self, arrays: Mapping[str, np.ndarray], ts_ms: int) -> tuple[bytes, int, int]:
        """The `derived` measurement from named per-station arrays (each [S])."""
        names = tuple(arrays)
        if not names:
            return b"", 0, 0
        stacked = np.column_stack([np.asarray(arrays[n], dtype=np.float64) for n in names])
        return self.encode("derived", names, stacked, ts_ms)


# --- parsing -------------------------------------------------------------------------------
_UNESCAPE = re.compile(r"\\([,= \\\"ntr])")
_UNESCAPE_MAP = {
    ",": ",",
    "=": "=",
    " ": " ",
    "\\": "\\",
    '"': '"',
    "n": "\n",
    "t": "\t",
    "r": "\r",
}
_SPLIT_COMMA = re.compile(r"(?<!\\),")
_SPLIT_EQ = re.compile(r"(?<!\\)=")
_FIRST_SPACE = re.compile(r"(?<!\\) ")


def unescape(s: str) -> str:
    if "\\" not in s:
        return s
    return _UNESCAPE.sub(lambda m: _UNESCAPE_MAP[m.group(1)], s)


@dataclass(frozen=True, slots=True)
class ParsedLine:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | str | bool]
    ts: int
    series: str  # the escaped `measurement,tags` key as written
    field_text: str  # the escaped field set as written


def split_line(line: str) -> tuple[str, str, int]:
    """(series key, field text, timestamp) of one line written by this module."""
    m = _FIRST_SPACE.search(line)
    if m is None:
        raise ValueError(f"line protocol: no field set in {line[:80]!r}")
    series = line[: m.start()]
    rest = line[m.end() :]
    field_text, _, ts = rest.rpartition(" ")
    if not field_text:
        raise ValueError(f"line protocol: no timestamp in {line[:80]!r}")
    return series, field_text, int(ts)


def parse_series(series: str) -> tuple[str, dict[str, str]]:
    parts = _SPLIT_COMMA.split(series)
    tags: dict[str, str] = {}
    for kv in parts[1:]:
        pieces = _SPLIT_EQ.split(kv, maxsplit=1)
        if len(pieces) != 2:
            raise ValueError(f"line protocol: bad tag {kv!r}")
        tags[unescape(pieces[0])] = unescape(pieces[1])
    return unescape(parts[0]), tags


def parse_fields(text: str) -> dict[str, float | str | bool]:
    """Numeric and boolean fields (what this project writes); quoted strings are kept."""
    out: dict[str, float | str | bool] = {}
    for kv in _SPLIT_COMMA.split(text):
        pieces = _SPLIT_EQ.split(kv, maxsplit=1)
        if len(pieces) != 2:
            raise ValueError(f"line protocol: bad field {kv!r}")
        k, v = unescape(pieces[0]), pieces[1]
        if v.startswith('"'):
            out[k] = unescape(v[1:-1])
        elif v in ("t", "T", "true", "True", "TRUE"):
            out[k] = True
        elif v in ("f", "F", "false", "False", "FALSE"):
            out[k] = False
        else:
            out[k] = float(v[:-1] if v[-1] in "iu" else v)
    return out


def parse_line(line: str) -> ParsedLine:
    series, field_text, ts = split_line(line)
    measurement, tags = parse_series(series)
    return ParsedLine(measurement, tags, parse_fields(field_text), ts, series, field_text)


def iter_lines(text: str | bytes) -> Iterable[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    for line in text.split("\n"):
        if line and not line.startswith("#"):
            yield line
