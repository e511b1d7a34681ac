"""The fleet frame: a numpy ring buffer [stations x signals x window] of tick-aligned samples.

NaN means missing or bad quality; detectors must never alarm on NaN. The frame also keeps
each station's comm status (last good tick, consecutive missed ticks), the one place where
"did we hear from this station" is decided.
"""

from __future__ import annotations

import numpy as np

from stationd import signals


class FleetFrame:
    """Ring buffer of the last `window` ticks for `n_stations` stations.

    Writes go to a staging row set (`stage`) during a tick and are committed with
    `commit(tick_time)`: committing is a single column copy, so the tick path never
    reallocates. float32 halves the memory of a 1-hour window (10k stations: 3 GB vs 6 GB);
    its 7 significant digits are ample for process values and meter deltas.
    """

    def __init__(self, station_ids: list[str], window: int, dtype: type = np.float32) -> None:
        if window < 2:
            raise ValueError("window must hold at least 2 ticks")
        self.station_ids = list(station_ids)
        self.index = {sid: i for i, sid in enumerate(self.station_ids)}
        self.n = len(self.station_ids)
        self.k = signals.K
        self.window = window
        self.values = np.full((self.n, self.k, window), np.nan, dtype=dtype)
        self.times = np.full(window, np.nan, dtype=np.float64)
        self.head = -1  # column of the newest committed tick
        self.count = 0  # committed ticks so far (saturates at window for views)
        self.stage = np.full((self.n, self.k), np.nan, dtype=np.float64)
        self.staged = np.zeros(self.n, dtype=bool)  # station delivered a sample this tick
        self.last_good_tick = np.full(self.n, np.nan, dtype=np.float64)
        self.consecutive_misses = np.zeros(self.n, dtype=np.int64)

    # -- writing -------------------------------------------------------------------------
    def put(self, station: int, values: np.ndarray) -> None:
        """Stage one station's canonical values (NaN where bad) for the current tick."""
        self.stage[station] = values
        self.staged[station] = True

    def commit(self, tick_time: float) -> None:
        """Close the tick: copy the staged column into the ring, update comm status."""
        self.head = (self.head + 1) % self.window
        self.values[:, :, self.head] = self.stage
        self.times[self.head] = tick_time
        self.count += 1
        # A station is "heard" if it delivered a sample with at least one good value.
        heard = self.staged & ~np.all(np.isnan(self.stage), axis=1)
        self.last_good_tick[heard] = tick_time
        self.consecutive_misses[heard] = 0
        self.consecutive_misses[~heard] += 1
        self.stage.fill(np.nan)
        self.staged.fill(False)

    def reshaped(self, station_ids: list[str], keep: set[str] | frozenset[str]) -> FleetFrame:
        """A frame for a reloaded fleet: same window and tick times, with the history and
        comm status of the stations in `keep` carried over; every other row starts empty."""
        out = FleetFrame(station_ids, self.window, dtype=self.values.dtype.type)
        out.times[:] = self.times
        out.head, out.count = self.head, self.count
        pairs = [(i, self.index[sid]) for i, sid in enumerate(out.station_ids) if sid in keep]
        if pairs:
            new_rows, old_rows = (np.array(x, dtype=np.intp) for x in zip(*pairs, strict=True))
            out.values[new_rows] = self.values[old_rows]
            out.last_good_tick[new_rows] = self.last_good_tick[old_rows]
            out.consecutive_misses[new_rows] = self.consecutive_misses[old_rows]
        return out

    # -- reading -------------------------------------------------------------------------
    @property
    def filled(self) -> int:
        return min(self.count, self.window)

    def _order(self, n: int) -> np.ndarray:
        n = min(n, self.filled)
        return (self.head - np.arange(n - 1, -1, -1)) % self.window

    def last(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The newest n ticks, oldest first: (values [S, K, n] copy, times [n])."""
        cols = self._order(n)
        return self.values[:, :, cols], self.times[cols]

    def latest(self) -> np.ndarray:
        """The newest tick's values [S, K] (a view)."""
        if self.head < 0:
            return np.full((self.n, self.k), np.nan, dtype=self.values.dtype)
        return self.values[:, :, self.head]

    def column_ago(self, ticks: int) -> np.ndarray:
        """Values [S, K] of the tick `ticks` before the newest (NaN if not held)."""
        if ticks >= self.filled:
            return np.full((self.n, self.k), np.nan, dtype=self.values.dtype)
        return self.values[:, :, (self.head - ticks) % self.window]

    @property
    def now(self) -> float:
        return float(self.times[self.head]) if self.head >= 0 else float("nan")
