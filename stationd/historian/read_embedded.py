"""Reading the embedded SQLite history store back (the `HistoryReader` of the default
set-up, with no InfluxDB configured)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from stationd import signals
from stationd.historian.embedded import EmbeddedStore
from stationd.historian.lineproto import parse_fields, parse_series
from stationd.historian.reader import Chunk, Point, slices


class EmbeddedReader:
    """The store under the state dir; refuses a path where no daemon has written."""

    def __init__(self, db_path: str | Path, station_ids: Sequence[str] = ()) -> None:
        p = Path(db_path)
        if not p.exists():
            raise FileNotFoundError(
                f"no embedded history at {p} (has the daemon run with this state dir?) "
                f"/ 找不到本地历史库 {p}"
            )
        self.store = EmbeddedStore(p)
        self.name = f"embedded {p}"
        self.index = {sid: i for i, sid in enumerate(station_ids)}
        self._owns = True

    @classmethod
    def over(cls, store: EmbeddedStore, station_ids: Sequence[str] = ()) -> EmbeddedReader:
        """A reader over a store that is already open (closing the reader leaves it open)."""
        self = cls.__new__(cls)
        self.store, self.name = store, store.name
        self.index = {sid: i for i, sid in enumerate(station_ids)}
        self._owns = False
        return self

    def chunks(self, t_from: float, t_to: float, chunk_s: float = 3600.0) -> Iterator[Chunk]:
        for lo, hi in slices(t_from, t_to, chunk_s):
            st: list[int] = []
            ts: list[int] = []
            texts: list[str] = []
            for _series, t, station, fields in self.store.rows(lo, hi, "station"):
                i = self.index.get(station)
                if i is None:  # a station no longer in the config
                    continue
                st.append(i)
                ts.append(t)
                texts.append(fields)
            if texts:
                yield Chunk(
                    np.array(st, dtype=np.intp), np.array(ts, dtype=np.int64), parse_rows(texts)
                )

    def points(
        self, t_from_ms: int, t_to_ms: int, measurement: str | None = None
    ) -> Iterator[Point]:
        for series, ts, _station, fields in self.store.rows(t_from_ms, t_to_ms, measurement):
            name, tags = parse_series(series)
            yield Point(name, tags, parse_fields(fields), ts, line=f"{series} {fields}")

    def close(self) -> None:
        if self._owns:
            self.store.close()


def parse_rows(texts: list[str]) -> np.ndarray:
    """Field sets as written by the fleet encoder -> [N, K] float64, NaN where absent.

    The encoder writes plain keys and numbers (`heat_energy=4484109e-3`), so a chunk is
    split with two C-level str calls and converted by numpy: ~10x faster than one
    parse_fields() call per line, which stays the path for anything else (escapes,
    quoted strings, booleans, integer suffixes).
    """
    out = np.full((len(texts), signals.K), np.nan)
    joined = ",".join(texts)
    if "\\" not in joined and '"' not in joined:
        parts = joined.replace("=", ",").split(",")
        per_row = np.fromiter((t.count("=") for t in texts), dtype=np.intp, count=len(texts))
        if len(parts) == 2 * int(per_row.sum()):
            try:
                numbers = np.array(parts[1::2], dtype=np.float64)
            except ValueError:
                numbers = None
            if numbers is not None:
                get = signals.INDEX.get
                cols = np.array([get(k, -1) for k in parts[0::2]], dtype=np.intp)
                rows = np.repeat(np.arange(len(texts)), per_row)
                known = cols >= 0
                out[rows[known], cols[known]] = numbers[known]
                return out
    for r, text in enumerate(texts):
        for k, v in parse_fields(text).items():
            j = signals.INDEX.get(k)
            if j is not None and isinstance(v, float | bool):
                out[r, j] = float(v)
    return out
