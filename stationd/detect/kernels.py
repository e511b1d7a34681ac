"""Incremental, vectorised building blocks the detectors share: tick view, timers, EWMAs, peaks.

Each keeps O(stations) state and touches only the newest tick, so a detection pass costs the
same whether the frame holds a minute or an hour: a 1-hour window over 10,000 stations is
750 MB and cannot be rescanned every second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stationd import signals

NAN = np.nan


@dataclass(slots=True)
class Tick:
    """What one detection pass sees of the newest tick."""

    t: float  # tick time, unix seconds
    dt: float  # seconds since the previous pass (0.0 on the first)
    raw: np.ndarray  # [S, K] float64 as delivered (NaN = missing/bad quality)
    x: np.ndarray  # [S, K] the same with faulty sensors masked to NaN (filled by SensorFaults)
    heard: np.ndarray  # [S] bool: a good sample arrived this tick
    misses: np.ndarray  # [S] consecutive ticks without a good sample
    last_good: np.ndarray  # [S] tick time of the last good sample (NaN: never)

    def col(self, name: str) -> np.ndarray:
        """The masked values of one canonical signal, [S] (a view)."""
        return self.x[:, signals.INDEX[name]]

    def present(self, col: int) -> np.ndarray:
        """[S] a value arrived for this column — good, or masked as a sensor fault.

        Detectors hold their state through missing data (a gap must neither raise nor clear)
        but clear on a masked value: a finding must not outlive trust in its sensor.
        """
        return ~np.isnan(self.raw[:, col])


class Sustain:
    """Per-station "condition true since" timer: active once true for `delay` seconds.

    An unknown tick (NaN input) neither starts nor resets the timer: missing data must not
    raise an alarm, and must not quietly clear one either.
    """

    def __init__(self, n: int) -> None:
        self.onset = np.full(n, NAN)

    def update(
        self, t: float, cond: np.ndarray, known: np.ndarray, delay: np.ndarray | float
    ) -> np.ndarray:
        onset = self.onset
        onset[known & cond & np.isnan(onset)] = t
        onset[known & ~cond] = NAN
        return (t - onset) >= delay  # NaN onset compares False

    def reset(self, mask: np.ndarray) -> None:
        self.onset[mask] = NAN


class Ewma:
    """Time-constant EWMA per station (and column), bias-corrected, holding through NaN.

    `weight` is the share of the time constant covered by data so far (0 → 1): a detector
    can refuse to judge an average that is still mostly start-up.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.m = np.zeros(shape)
        self.weight = np.zeros(shape)

    def update(self, x: np.ndarray, dt: float, tau: np.ndarray) -> np.ndarray:
        a = -np.expm1(-dt / tau)
        if x.ndim == 2 and a.ndim == 1:
            a = a[:, None]
        ok = ~np.isnan(x)
        a = np.where(ok, a, 0.0)
        self.m += a * (np.where(ok, x, 0.0) - self.m)
        self.weight += a * (1.0 - self.weight)
        return self.value

    def reset(self, mask: np.ndarray) -> None:
        """Forget the history of these stations (the next sample starts afresh)."""
        self.m[mask] = 0.0
        self.weight[mask] = 0.0

    @property
    def value(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.weight > 0, self.m / self.weight, NAN)


class PeakRing:
    """The highest value of a few signals over each station's trailing window.

    Time is cut into ~`slots` equal slots spanning the longest window; each slot keeps the
    running max of what arrived in it. The peak over a window is the max over the slots
    overlapping it — exact to one slot width, O(slots) per read instead of O(window ticks),
    and it sees a spike between two read points, which a "value N seconds ago" lookup misses.
    """

    def __init__(self, n: int, k: int, span_s: np.ndarray, slots: int = 32) -> None:
        self.span = np.asarray(span_s, dtype=np.float64)
        self.step = float(self.span.max()) / (slots - 2) if n else 1.0
        self.slots = slots
        self.vals = np.full((slots, n, k), NAN)  # slot-major: writing a slot is contiguous
        self.start = np.full(slots, NAN)
        self.cur = -1
        # per-station windows come from threshold overrides; there are few distinct ones
        spans, inverse = np.unique(self.span, return_inverse=True)
        self._groups = [(float(s), np.flatnonzero(inverse == j)) for j, s in enumerate(spans)]

    def update(self, t: float, x: np.ndarray) -> None:
        if self.cur < 0 or t >= self.start[self.cur] + self.step or t < self.start[self.cur]:
            self.cur = (self.cur + 1) % self.slots
            self.start[self.cur] = t
            self.vals[self.cur] = x
        else:
            np.fmax(self.vals[self.cur], x, out=self.vals[self.cur])

    def peak(self, t: float) -> np.ndarray:
        """[S, k] max over each station's window ending at t (NaN where nothing was seen)."""
        out = np.full(self.vals.shape[1:], NAN)
        end = self.start + self.step
        with np.errstate(invalid="ignore"):
            for span, members in self._groups:
                sel = np.flatnonzero(end > t - span)
                if sel.size == 0:
                    continue
                if len(self._groups) == 1:
                    out[:] = np.fmax.reduce(self.vals[sel], axis=0)
                else:
                    out[members] = np.fmax.reduce(self.vals[sel][:, members], axis=0)
        return out


def group_count(idx: np.ndarray, mask: np.ndarray, n_groups: int) -> np.ndarray:
    """How many stations per group (branch, feeder, source) satisfy `mask`; idx -1 = none."""
    sel = mask & (idx >= 0)
    return np.bincount(idx[sel], minlength=n_groups)


def group_sum(idx: np.ndarray, values: np.ndarray, mask: np.ndarray, n_groups: int) -> np.ndarray:
    sel = mask & (idx >= 0)
    return np.bincount(idx[sel], weights=values[sel], minlength=n_groups)


def r3(x: float) -> float | None:
    """Evidence numbers rounded for people; None (JSON null) where unknown — JSON has no NaN
    and the MQTT and pager payloads must parse everywhere. Plain Python: it runs once per
    number per finding, where a numpy scalar call costs ten times more."""
    x = float(x)
    return round(x, 4) if math.isfinite(x) else None


def fin(x: float) -> float:
    """A finding's headline value: finite always (0.0 only if it was never known)."""
    x = float(x)
    return round(x, 4) if math.isfinite(x) else 0.0


class Held:
    """The last finite value per station: a finding held through a data gap keeps showing
    what was last measured instead of NaN."""

    def __init__(self, shape: int | tuple[int, ...]) -> None:
        self.v = np.full(shape, NAN)

    def update(self, x: np.ndarray) -> np.ndarray:
        self.v = np.where(np.isfinite(x), x, self.v)
        return self.v
