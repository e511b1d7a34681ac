"""One way to read history back, whatever holds it: the embedded store, VictoriaMetrics
or InfluxDB (InfluxQL `/query`, which 1.x speaks and 2.x/3.x serve through their v1
compatibility API).

    reader = open_reader(cfg.historian, site, station_ids, state_dir)   # as configured
    for chunk in reader.chunks(t_from, t_to):     # the `station` measurement as numpy
        ...                                       # (the daily report)
    for point in reader.points(lo_ms, hi_ms):     # every measurement, point by point
        ...                                       # (stationd export)
    reader.close()

A `Chunk` holds one time slice of station samples: row r is station `station[r]` (an
index into the ids the reader was opened with) at `ts_ms[r]`, canonical signals in
`stationd.signals` order, NaN where a value was missing or bad. Readers work in slices
(an hour by default), so a report over a large fleet never holds the whole day.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from stationd import signals
from stationd.historian.config import HistorianConfig

log = logging.getLogger(__name__)

ReaderKind = Literal["auto", "embedded", "influxql", "vm"]
READER_KINDS: tuple[str, ...] = ("auto", "embedded", "influxql", "vm")


@dataclass(frozen=True, slots=True)
class Chunk:
    """Samples of one time slice: row r is station `station[r]` at `ts_ms[r]`."""

    station: np.ndarray  # int [N], index into the reader's station list
    ts_ms: np.ndarray  # int64 [N], tick time in unix ms
    values: np.ndarray  # float64 [N, K], NaN = missing / bad

    @classmethod
    def empty(cls) -> Chunk:
        return cls(
            np.zeros(0, dtype=np.intp),
            np.zeros(0, dtype=np.int64),
            np.zeros((0, signals.K), dtype=np.float64),
        )


@dataclass(frozen=True, slots=True)
class Point:
    """One point of any measurement, as written (numbers are floats)."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | bool | str]
    ts_ms: int
    #: the line as stored ("series fields", no timestamp) when the store keeps it
    line: str | None = field(default=None, compare=False)


class HistoryReader(Protocol):
    name: str

    def chunks(self, t_from: float, t_to: float, chunk_s: float = 3600.0) -> Iterator[Chunk]:
        """`station` samples covering [t_from, t_to) (unix s), in time order."""
        ...

    def points(
        self, t_from_ms: int, t_to_ms: int, measurement: str | None = None
    ) -> Iterator[Point]:
        """Points in [t_from_ms, t_to_ms), in time order, then by series."""
        ...

    def close(self) -> None: ...


def slices(t_from: float, t_to: float, chunk_s: float) -> Iterator[tuple[int, int]]:
    """[lo, hi) ms slices of at most chunk_s covering [t_from, t_to) s."""
    lo = round(t_from * 1000)
    hi = round(t_to * 1000)
    step = max(1, round(chunk_s * 1000))
    while lo < hi:
        yield lo, min(hi, lo + step)
        lo += step


def rows_to_chunk(
    st: np.ndarray, ts: np.ndarray, cols: np.ndarray, vals: np.ndarray
) -> Chunk | None:
    """Scattered (station, ts, column, value) samples -> one row per (station, tick), in
    time order then station (the report folds rows in this order)."""
    if len(st) == 0:
        return None
    key = st.astype(np.int64) * (1 << 42) + ts
    uniq, row = np.unique(key, return_inverse=True)
    values = np.full((len(uniq), signals.K), np.nan)
    values[row, cols] = vals
    order = np.argsort(uniq % (1 << 42), kind="stable")
    return Chunk((uniq >> 42).astype(np.intp)[order], (uniq % (1 << 42))[order], values[order])


def open_reader(
    section: HistorianConfig | dict | None,
    site: str,
    station_ids: Sequence[str],
    state_dir: str | Path,
    kind: str = "auto",
    url: str | None = None,
    timeout_s: float = 30.0,
) -> HistoryReader:
    """The history as configured: `embedded` (the SQLite store under the state dir),
    `influxql` (InfluxDB's /query: api v1 db/rp, or api v2's bucket through the v1
    compatibility API), `vm` (VictoriaMetrics' /api/v1/export), or `auto`: embedded when
    no InfluxDB is configured, influxql for api v1, and for api v2 whichever the server
    is (InfluxDB names its version on /ping, VictoriaMetrics does not).

    Raises ValueError for a kind that does not fit the config, OSError when `auto` cannot
    ask the server which it is.
    """
    from stationd.historian.read_embedded import EmbeddedReader
    from stationd.historian.read_influxql import InfluxQLReader
    from stationd.historian.read_vm import VictoriaMetricsReader

    hist = (
        section
        if isinstance(section, HistorianConfig)
        else HistorianConfig.model_validate(dict(section or {}))
    )
    ix = hist.influxdb
    if kind not in READER_KINDS:
        raise ValueError(f"history source {kind!r}: use {', '.join(READER_KINDS)}")
    if kind == "auto":
        if url is None and ix is None:
            kind = "embedded"
        elif ix is not None and ix.api == "v1" and url is None:
            kind = "influxql"
        else:
            kind = _which_server(url or (ix.url if ix else ""), timeout_s)
    if kind == "embedded":
        return EmbeddedReader(Path(state_dir) / hist.embedded.path, station_ids)
    target = url or (ix.url if ix is not None else None)
    if not target:
        raise ValueError(
            f"history source {kind} needs --url or historian.influxdb.url "
            "/ 须指定历史库地址 (--url 或 historian.influxdb.url)"
        )
    if kind == "vm":
        return VictoriaMetricsReader(target, site, station_ids, timeout_s=timeout_s)
    return InfluxQLReader.from_section(ix, site, station_ids, url=target, timeout_s=timeout_s)


def _which_server(url: str, timeout_s: float) -> Literal["influxql", "vm"]:
    import urllib3

    from stationd.historian.influx_check import safe_url, server_info
    from stationd.historian.sink import SinkError

    http = urllib3.PoolManager(num_pools=1, maxsize=1, retries=False)
    try:
        info = server_info(http, url.rstrip("/"), min(timeout_s, 10.0))
    except SinkError as e:
        raise OSError(
            f"cannot ask {safe_url(url)} which server it is ({e}); name it with --source "
            "influxql or --source vm / 无法识别历史库类型"
        ) from e
    finally:
        http.clear()
    kind: Literal["influxql", "vm"] = "influxql" if info.version else "vm"
    log.info("history source %s: %s -> %s", safe_url(url), info.label, kind)
    return kind
