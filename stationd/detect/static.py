"""Per-station metadata as numpy arrays, built once: the detectors' compiled view of the fleet.

Everything a detector needs to know about a station that does not change tick to tick —
heated area, which branch / feeder / heat source / estates it belongs to, its thresholds and
heating curves — is turned into flat arrays here at start-up, so the tick path compares
arrays instead of looking up objects (STYLE.md, "plan once, run cheap").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from stationd.detect.thresholds import HeatingCurve, Thresholds

_CURVE_FIELDS = ("slope", "shift", "room_c", "min_c", "max_c")


@dataclass(frozen=True, slots=True)
class CurveArrays:
    """A heating curve per station: T = room + slope*(room - outdoor) + shift, clipped."""

    slope: np.ndarray
    shift: np.ndarray
    room_c: np.ndarray
    min_c: np.ndarray
    max_c: np.ndarray

    @classmethod
    def of(cls, curves: Sequence[HeatingCurve]) -> CurveArrays:
        return cls(
            *(np.array([getattr(c, f) for c in curves], dtype=np.float64) for f in _CURVE_FIELDS)
        )

    def at(self, outdoor_c: np.ndarray) -> np.ndarray:
        """Target supply temperature per station for each station's outdoor temperature."""
        t = self.room_c + self.slope * (self.room_c - outdoor_c) + self.shift
        return np.clip(t, self.min_c, self.max_c)


class ThresholdArrays:
    """One float64 array per scalar `Thresholds` field, indexed by station.

    Attribute access mirrors `Thresholds` (`th.pressure_drop_mpa[i]`), so a station override
    in stations.yaml reaches the vectorised comparison without any per-station branch.
    """

    def __init__(self, per_station: Sequence[Thresholds]) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        for name, info in Thresholds.model_fields.items():
            if info.annotation in (int, float):
                self._arrays[name] = np.array(
                    [getattr(t, name) for t in per_station], dtype=np.float64
                )
        self.primary_curve = CurveArrays.of([t.primary_curve for t in per_station])

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self._arrays[name]
        except KeyError:
            raise AttributeError(name) from None


def _index(labels: Sequence[str | None]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Group labels -> (index per station, -1 where unlabelled; names in first-seen order)."""
    names: dict[str, int] = {}
    out = np.full(len(labels), -1, dtype=np.int64)
    for i, lab in enumerate(labels):
        if lab:
            out[i] = names.setdefault(lab, len(names))
    return out, tuple(names)


@dataclass(frozen=True, slots=True, eq=False)
class FleetStatic:
    """Immutable per-station metadata, in the fleet frame's station order."""

    site_id: str
    ids: tuple[str, ...]
    names: tuple[str, ...]  # display names (Chinese); the id where none was given
    heated_area_m2: np.ndarray
    branch_idx: np.ndarray
    branch_names: tuple[str, ...]
    feeder_idx: np.ndarray
    feeder_names: tuple[str, ...]
    source_idx: np.ndarray
    source_names: tuple[str, ...]
    # estates: a station serves several estates; pairs (station, estate) list them all
    estate_names: tuple[str, ...]
    estate_pair_station: np.ndarray
    estate_pair_estate: np.ndarray
    # the estate whose representative rooms this station's indoor_temp stands for (-1: none)
    indoor_estate_idx: np.ndarray
    th: ThresholdArrays
    site: Thresholds  # fleet-wide thresholds (monitoring loss share, design temperature, ...)
    secondary_curve: CurveArrays
    timezone: ZoneInfo

    @property
    def n(self) -> int:
        return len(self.ids)

    @classmethod
    def build(
        cls,
        ids: Sequence[str],
        heated_area_m2: Sequence[float],
        branches: Sequence[str | None],
        feeders: Sequence[str | None],
        sources: Sequence[str | None],
        estates: Sequence[Sequence[str]],
        thresholds: Sequence[Thresholds],
        site_id: str,
        *,
        names: Sequence[str] | None = None,
        curves: Sequence[HeatingCurve] | None = None,
        indoor_estates: Sequence[str | None] | None = None,
        site_thresholds: Thresholds | None = None,
        timezone: str = "Asia/Shanghai",
    ) -> FleetStatic:
        n = len(ids)
        columns = {
            "heated_area_m2": heated_area_m2,
            "branches": branches,
            "feeders": feeders,
            "sources": sources,
            "estates": estates,
            "thresholds": thresholds,
        }
        for what, col in columns.items():
            if len(col) != n:
                raise ValueError(
                    f"FleetStatic.build: {what} has {len(col)} entries for {n} stations"
                )
        if len(set(ids)) != n:
            raise ValueError("FleetStatic.build: station ids must be unique")
        branch_idx, branch_names = _index(branches)
        feeder_idx, feeder_names = _index(feeders)
        source_idx, source_names = _index(sources)
        estate_map: dict[str, int] = {}
        pair_s: list[int] = []
        pair_e: list[int] = []
        for i, served in enumerate(estates):
            for e in served:
                pair_s.append(i)
                pair_e.append(estate_map.setdefault(e, len(estate_map)))
        if indoor_estates is None:
            # A station serving one estate stands for that estate's rooms; with several, the
            # config must say which one its indoor sensor is in.
            indoor_estates = [served[0] if len(served) == 1 else None for served in estates]
        indoor_idx = np.array(
            [estate_map.get(e, -1) if e else -1 for e in indoor_estates], dtype=np.int64
        )
        return cls(
            site_id=site_id,
            ids=tuple(ids),
            names=tuple(names) if names is not None else tuple(ids),
            heated_area_m2=np.asarray(heated_area_m2, dtype=np.float64),
            branch_idx=branch_idx,
            branch_names=branch_names,
            feeder_idx=feeder_idx,
            feeder_names=feeder_names,
            source_idx=source_idx,
            source_names=source_names,
            estate_names=tuple(estate_map),
            estate_pair_station=np.array(pair_s, dtype=np.int64),
            estate_pair_estate=np.array(pair_e, dtype=np.int64),
            indoor_estate_idx=indoor_idx,
            th=ThresholdArrays(thresholds),
            site=site_thresholds or (thresholds[0] if n else Thresholds()),
            secondary_curve=CurveArrays.of(
                curves if curves is not None else [t.secondary_curve for t in thresholds]
            ),
            timezone=ZoneInfo(timezone),
        )

    @classmethod
    def from_config(cls, cfg: Any) -> FleetStatic:
        """From `stationd.config.load_config(...)`, stations in the config's order."""
        st = cfg.stations
        indoor = [s.indoor_estate or (s.estates[0] if len(s.estates) == 1 else None) for s in st]
        return cls.build(
            ids=[s.id for s in st],
            heated_area_m2=[s.heated_area_m2 for s in st],
            branches=[s.branch for s in st],
            feeders=[s.power_feeder for s in st],
            sources=[s.heat_source for s in st],
            estates=[list(s.estates) for s in st],
            thresholds=[s.thresholds for s in st],
            site_id=cfg.site.id,
            names=[s.name for s in st],
            curves=[s.curve for s in st],
            indoor_estates=indoor,
            site_thresholds=getattr(cfg, "thresholds", None),
            timezone=getattr(cfg.site, "timezone", "Asia/Shanghai"),
        )

    def label(self, i: int) -> str:
        """`hs001 一号站` for messages: the id operators type, the name they say."""
        name = self.names[i]
        return self.ids[i] if name == self.ids[i] else f"{self.ids[i]} {name}"
