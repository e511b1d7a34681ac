"""Hourly aggregation for the daily report: pure numpy over the chunks data.py reads.

What each figure means (the report prints these definitions too):

- **hourly mean** of a signal: the mean of the hour's good samples (NaN: none that hour).
  Hours are [start + h x 3600 s, start + (h + 1) x 3600 s) from the period's start.
- **supplied (供热)** for a station-hour: among the hour's samples that have both values,
  at least half have the circulation pump running (`circ_pump_running` >= 0.5) AND the
  secondary supply temperature at or above the station's floor (its heating curve's
  minimum - 5 K, 25 °C by default: water below it cannot hold rooms at the standard).
  1 supplied, 0 not supplied, -1 unknown (no such sample that hour: comm or power loss).
- **meter volumes** (`heat_energy` GJ, `makeup_total` m³) come from the cumulative meters,
  never from integrating flows: each step between two consecutive good readings of a
  station is an increment, spread over the hours it spans in proportion to time (so a
  data gap's consumption is shared by the hours of the gap, not piled on the hour the
  data came back). A drop (a meter reset or replacement) restarts the count from the new
  reading: the one step across the drop counts nothing. Steps reaching back before the
  period (the reader supplies a short lead-in) count only for their part inside it.
- **circulated volume** of an hour: the hour's mean `secondary_flow` (m³/h) x 1 h.
- **loss rate (补水率)**: make-up volume / circulated volume, compared with the station's
  allowance (`makeup_allowance_ratio`, 0.5 % by the plan, 000 方案2 三.1).
- **heat per area**: GJ / heated area (m²); the plan's season figure is 0.5 GJ/m².
- **indoor at standard (室温达标)** per estate: each station's hourly mean `indoor_temp` is
  one representative room of its `indoor_estate` (as the indoor detector sees it); the
  estate's hour is the median of its rooms. An hour is at standard when that value is at
  or above the standard in force at the hour's local start (20 °C, less the site's night
  set-back outside its day hours), below the floor when under 18 °C (counted separately,
  and also not at standard); hours without a reading are left out of the share.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stationd import signals
from stationd.detect.comfort import indoor_standard_at
from stationd.detect.thresholds import Thresholds
from stationd.report.data import Chunk

HOUR_MS = 3_600_000

#: signals whose hourly means the report shows, in column order
MEAN_SIGNALS: tuple[str, ...] = (
    "primary_supply_temp",
    "primary_return_temp",
    "primary_supply_pressure",
    "primary_return_pressure",
    "primary_flow",
    "secondary_supply_temp",
    "secondary_return_temp",
    "secondary_supply_pressure",
    "secondary_return_pressure",
    "secondary_flow",
    "makeup_flow",
    "outdoor_temp",
    "indoor_temp",
)
METERS: tuple[str, ...] = ("heat_energy", "makeup_total")
#: a supplied hour needs at least this share of its samples supplying
SUPPLIED_SHARE = 0.5
#: the supply-temperature floor sits this far below the station's curve minimum
FLOOR_BELOW_CURVE_MIN_K = 5.0

_MEAN_COLS = np.array([signals.INDEX[n] for n in MEAN_SIGNALS])
_PUMP = signals.INDEX["circ_pump_running"]
_TSUP = signals.INDEX["secondary_supply_temp"]
_FLOW = MEAN_SIGNALS.index("secondary_flow")


@dataclass(frozen=True, slots=True)
class StationInfo:
    """What the report needs to know about a station (from the config)."""

    id: str
    name: str
    estates: tuple[str, ...]
    heated_area_m2: float
    branch: str = ""
    allowance: float = 0.005  # make-up allowance, share of circulated volume
    supply_floor_c: float = 25.0
    indoor_estate: str = ""  # the estate this station's room sensor stands for ("": none)

    @classmethod
    def from_station(cls, st: object) -> StationInfo:
        thr = getattr(st, "thresholds", None)
        curve = getattr(st, "curve", None)
        estates = tuple(getattr(st, "estates", ()) or ())
        indoor = getattr(st, "indoor_estate", None) or (estates[0] if len(estates) == 1 else "")
        polled = getattr(st, "signals", None)
        if polled is not None and "indoor_temp" not in polled:
            indoor = ""  # no room sensor at this station: it stands for no estate's rooms
        return cls(
            id=str(st.id),
            name=str(st.name),
            estates=tuple(getattr(st, "estates", ()) or ()),
            heated_area_m2=float(st.heated_area_m2),
            branch=str(getattr(st, "branch", "") or ""),
            allowance=float(getattr(thr, "makeup_allowance_ratio", 0.005)),
            supply_floor_c=(
                float(curve.min_c) - FLOOR_BELOW_CURVE_MIN_K if curve is not None else 25.0
            ),
            indoor_estate=str(indoor),
        )


@dataclass(frozen=True)
class Hourly:
    """Per station [S] and hour [H] figures of one reporting period."""

    t0_ms: int
    n_hours: int
    means: np.ndarray  # [S, H, len(MEAN_SIGNALS)]
    samples: np.ndarray  # [S, H] rows with any good value
    counts: np.ndarray  # [S, H, len(MEAN_SIGNALS)] good samples behind each mean
    supplied: np.ndarray  # [S, H] int8: 1 / 0 / -1 unknown
    supplied_share: np.ndarray  # [S, H] share of supplying samples (NaN: none)
    heat_gj: np.ndarray  # [S, H] NaN: no meter step overlaps the hour
    makeup_m3: np.ndarray  # [S, H]
    meter_resets: np.ndarray  # [S, len(METERS)] drops seen
    allowance: np.ndarray  # [S]
    area_m2: np.ndarray  # [S]

    def mean(self, name: str) -> np.ndarray:
        return self.means[:, :, MEAN_SIGNALS.index(name)]

    @property
    def circulated_m3(self) -> np.ndarray:
        """[S, H] hourly mean circulating flow x 1 h."""
        return self.means[:, :, _FLOW]

    @property
    def loss_rate(self) -> np.ndarray:
        return _ratio(self.makeup_m3, self.circulated_m3)

    # -- period totals per station ---------------------------------------------------------
    @property
    def heat_total_gj(self) -> np.ndarray:
        return _total(self.heat_gj)

    @property
    def heat_per_m2(self) -> np.ndarray:
        return self.heat_total_gj / self.area_m2

    @property
    def makeup_total_m3(self) -> np.ndarray:
        return _total(self.makeup_m3)

    @property
    def circulated_total_m3(self) -> np.ndarray:
        return _total(self.circulated_m3)

    @property
    def loss_rate_total(self) -> np.ndarray:
        return _ratio(self.makeup_total_m3, self.circulated_total_m3)

    @property
    def over_allowance(self) -> np.ndarray:
        """[S] bool: the period's loss rate is above the station's allowance."""
        lr = self.loss_rate_total
        return np.isfinite(lr) & (lr > self.allowance)

    @property
    def hours_supplied(self) -> np.ndarray:
        return (self.supplied == 1).sum(axis=1)

    @property
    def hours_unsupplied(self) -> np.ndarray:
        return (self.supplied == 0).sum(axis=1)

    @property
    def hours_unknown(self) -> np.ndarray:
        return (self.supplied == -1).sum(axis=1)

    def period_mean(self, name: str) -> np.ndarray:
        """[S] sample-weighted mean over the period."""
        j = MEAN_SIGNALS.index(name)
        m, w = self.means[:, :, j], self.counts[:, :, j]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(w.sum(1) > 0, np.nansum(m * w, axis=1) / w.sum(1), np.nan)


def _total(a: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(a).any(axis=1), np.nansum(a, axis=1), np.nan)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isfinite(a) & np.isfinite(b) & (b > 0), a / b, np.nan)


class Accumulator:
    """Folds time-ordered chunks into hourly sums; `result()` gives the `Hourly`."""

    def __init__(self, stations: Sequence[StationInfo], t0: float, t1: float) -> None:
        self.stations = list(stations)
        self.t0_ms = round(t0 * 1000)
        self.t1_ms = round(t1 * 1000)
        self.H = max(1, math.ceil((self.t1_ms - self.t0_ms) / HOUR_MS))
        S, H, M = len(self.stations), self.H, len(MEAN_SIGNALS)
        self.sums = np.zeros((S, H, M))
        self.counts = np.zeros((S, H, M), dtype=np.int64)
        self.rows = np.zeros((S, H), dtype=np.int64)
        self.sup_ok = np.zeros((S, H), dtype=np.int64)
        self.sup_valid = np.zeros((S, H), dtype=np.int64)
        self.meter = np.zeros((len(METERS), S, H))
        self.meter_cov = np.zeros((len(METERS), S, H))  # ms of meter steps in the hour
        self.resets = np.zeros((S, len(METERS)), dtype=np.int64)
        # the last good reading of each meter and station: (ts ms, value)
        self.last_ts = np.full((len(METERS), S), -1, dtype=np.int64)
        self.last_val = np.full((len(METERS), S), np.nan)
        self.floor = np.array([s.supply_floor_c for s in self.stations])

    def add(self, chunk: Chunk) -> None:
        if len(chunk.ts_ms) == 0:
            return
        self._add_means(chunk)
        for m, name in enumerate(METERS):
            self._add_meter(m, chunk, signals.INDEX[name])

    def _add_means(self, c: Chunk) -> None:
        inside = (c.ts_ms >= self.t0_ms) & (c.ts_ms < self.t1_ms)
        if not inside.any():
            return
        st = c.station[inside]
        b = (c.ts_ms[inside] - self.t0_ms) // HOUR_MS
        v = c.values[inside]
        mv = v[:, _MEAN_COLS]
        good = np.isfinite(mv)
        np.add.at(self.sums, (st, b), np.where(good, mv, 0.0))
        np.add.at(self.counts, (st, b), good)
        np.add.at(self.rows, (st, b), np.isfinite(v).any(axis=1))
        pump, tsup = v[:, _PUMP], v[:, _TSUP]
        valid = np.isfinite(pump) & np.isfinite(tsup)
        ok = valid & (pump >= 0.5) & (tsup >= self.floor[st])
        np.add.at(self.sup_valid, (st, b), valid)
        np.add.at(self.sup_ok, (st, b), ok)

    def _add_meter(self, m: int, c: Chunk, col: int) -> None:
        v = c.values[:, col]
        good = np.isfinite(v)
        if not good.any():
            return
        st, ts, v = c.station[good], c.ts_ms[good], v[good]
        order = np.lexsort((ts, st))
        st, ts, v = st[order], ts[order], v[order]
        # previous reading: the row before within the station, else the carried one
        first = np.ones(len(st), dtype=bool)
        first[1:] = st[1:] != st[:-1]
        prev_ts = np.empty_like(ts)
        prev_v = np.empty_like(v)
        prev_ts[1:], prev_v[1:] = ts[:-1], v[:-1]
        prev_ts[first] = self.last_ts[m, st[first]]
        prev_v[first] = self.last_val[m, st[first]]
        last = np.ones(len(st), dtype=bool)
        last[:-1] = st[:-1] != st[1:]
        self.last_ts[m, st[last]] = ts[last]
        self.last_val[m, st[last]] = v[last]
        have = (prev_ts >= 0) & (ts > prev_ts)
        st, ts, v, prev_ts, prev_v = st[have], ts[have], v[have], prev_ts[have], prev_v[have]
        d = v - prev_v
        # a meter never runs backwards: a drop beyond rounding is a reset or a new meter
        drop = d < -(1e-9 + 1e-9 * np.abs(prev_v))
        np.add.at(self.resets[:, m], st[drop], 1)
        d = np.where(drop, 0.0, d)
        # the step (prev_ts, ts] belongs to the hours it overlaps
        bp = (prev_ts - self.t0_ms) // HOUR_MS
        bc = -((self.t0_ms - ts) // HOUR_MS) - 1  # ceil((ts - t0) / H) - 1
        same = (bp == bc) & (bc >= 0) & (bc < self.H)
        np.add.at(self.meter[m], (st[same], bc[same]), d[same])
        np.add.at(self.meter_cov[m], (st[same], bc[same]), ts[same] - prev_ts[same])
        for i in np.flatnonzero(bp != bc):
            self._spread(m, int(st[i]), int(prev_ts[i]), int(ts[i]), float(d[i]))

    def _spread(self, m: int, s: int, a: int, b: int, d: float) -> None:
        span = b - a
        lo = max(a, self.t0_ms)
        hi = min(b, self.t1_ms)
        while lo < hi:
            h = (lo - self.t0_ms) // HOUR_MS
            end = min(hi, self.t0_ms + (h + 1) * HOUR_MS)
            self.meter[m, s, h] += d * (end - lo) / span
            self.meter_cov[m, s, h] += end - lo
            lo = end

    def result(self) -> Hourly:
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(self.counts > 0, self.sums / self.counts, np.nan)
            share = np.where(self.sup_valid > 0, self.sup_ok / self.sup_valid, np.nan)
        supplied = np.where(
            self.sup_valid == 0, -1, np.where(share >= SUPPLIED_SHARE, 1, 0)
        ).astype(np.int8)
        meters = np.where(self.meter_cov > 0, self.meter, np.nan)
        return Hourly(
            t0_ms=self.t0_ms,
            n_hours=self.H,
            means=means,
            samples=self.rows.copy(),
            counts=self.counts.copy(),
            supplied=supplied,
            supplied_share=share,
            heat_gj=meters[METERS.index("heat_energy")],
            makeup_m3=meters[METERS.index("makeup_total")],
            meter_resets=self.resets.copy(),
            allowance=np.array([s.allowance for s in self.stations]),
            area_m2=np.array([s.heated_area_m2 for s in self.stations]),
        )


def aggregate(stations: Sequence[StationInfo], chunks: object, t0: float, t1: float) -> Hourly:
    """Fold an iterable of time-ordered chunks (with a lead-in before t0) into `Hourly`."""
    acc = Accumulator(stations, t0, t1)
    for c in chunks:  # type: ignore[attr-defined]
        acc.add(c)
    return acc.result()


@dataclass(frozen=True)
class IndoorShare:
    """Per estate [E] with room sensors, per hour [H]: the indoor figures of the period."""

    estates: tuple[str, ...]
    rooms: np.ndarray  # [E] stations whose sensors stand for the estate
    hourly_c: np.ndarray  # [E, H] median of the rooms' hourly means (NaN: no reading)
    standard_c: np.ndarray  # [H] the standard in force at each hour's local start
    floor_c: float

    @property
    def hours_known(self) -> np.ndarray:
        return np.isfinite(self.hourly_c).sum(axis=1)

    @property
    def hours_at_standard(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return (self.hourly_c >= self.standard_c[None, :]).sum(axis=1)

    @property
    def hours_below_floor(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return (self.hourly_c < self.floor_c).sum(axis=1)

    @property
    def share_at_standard(self) -> np.ndarray:
        """[E] hours at standard / hours with a reading (NaN: none)."""
        known = self.hours_known
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(known > 0, self.hours_at_standard / known, np.nan)

    @property
    def mean_c(self) -> np.ndarray:
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an estate with no reading
            return np.nanmean(self.hourly_c, axis=1)


def indoor_share(
    hourly: Hourly,
    stations: Sequence[StationInfo],
    local_hours: Sequence[int],
    thresholds: Thresholds | None = None,
) -> IndoorShare:
    """Share of hours at the indoor standard per estate; `local_hours[h]` is hour h's
    local start hour (0-23), which decides day or night set-back."""
    th = thresholds or Thresholds()
    names: dict[str, int] = {}
    idx = np.array(
        [
            names.setdefault(s.indoor_estate, len(names)) if s.indoor_estate else -1
            for s in stations
        ],
        dtype=np.int64,
    )
    temp = hourly.mean("indoor_temp")  # [S, H]
    E, H = len(names), hourly.n_hours
    rep = np.full((E, H), np.nan)
    for j in range(E):  # per estate, not per tick: a report's few hundred estates
        rooms = temp[idx == j]
        has = np.isfinite(rooms).any(axis=0)
        if has.any():
            rep[j, has] = np.nanmedian(rooms[:, has], axis=0)
    return IndoorShare(
        estates=tuple(names),
        rooms=np.bincount(idx[idx >= 0], minlength=E),
        hourly_c=rep,
        standard_c=np.asarray(
            indoor_standard_at(th, np.asarray(local_hours, dtype=np.int64)), dtype=np.float64
        ).reshape(H),
        floor_c=float(th.indoor_floor_c),
    )
