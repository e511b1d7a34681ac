"""One way to read history back, whatever holds it: the embedded store, VictoriaMetrics
or InfluxDB (InfluxQL `/query`, which 1.x speaks and 2.x/3.x serve through their v1
compatibility API).

    reader = open_reader(cfg.historian, site, station_ids, state_dir)   # readers.py
    for chunk in reader.chunks(t_from, t_to):     # the `station` measurement as numpy
        ...                                       # (the daily report)
    for point in reader.points(lo_ms, hi_ms):     # every measurement, point by point
        ...                                       # (stationd export)
    reader.close()

A `Chunk` holds one time slice of station samples: row r is station `station[r]` (an
index into the ids the reader was opened with) at `ts_ms[r]`, canonical signals in
`stationd.signals` order, NaN where a value was missing or bad. Readers work in slices
(an hour by default), so a report over a large fleet never holds the whole day.
This module is the interface the readers implement; readers.py opens the one configured.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from stationd import signals

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
