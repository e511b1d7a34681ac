"""Reading history back from VictoriaMetrics (fed through its InfluxDB write API).

VictoriaMetrics stores a line `station,site=a,station=hs001 primary_flow=12 T` as the
series `station_primary_flow{site="a", station="hs001"}`; `/api/v1/export` gives every
sample of the matching series (JSON lines, one series per line), which is read slice by
slice and turned back into rows (`chunks`) or points (`points`). Our measurement names
(station, derived, alarm, daemon) hold no underscore, so the first `_` splits a metric
back into measurement and field.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence

import numpy as np

from stationd import signals
from stationd.historian.influx_check import safe_url
from stationd.historian.reader import Chunk, Point, rows_to_chunk, slices


def label_escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"')


class VictoriaMetricsReader:
    """`/api/v1/export` of one site's series."""

    def __init__(
        self, url: str, site: str, station_ids: Sequence[str] = (), timeout_s: float = 30.0
    ) -> None:
        self.url = url.rstrip("/")
        self.site = site
        self.name = f"victoria-metrics {safe_url(self.url)}"
        self.index = {sid: i for i, sid in enumerate(station_ids)}
        self.timeout_s = timeout_s
        names = "|".join(signals.NAMES)
        site_m = label_escape(site)
        self.station_match = f'{{__name__=~"station_({names})",site="{site_m}"}}'
        self.all_match = f'{{__name__=~"(station|derived|alarm|daemon)_.+",site="{site_m}"}}'

    def _export(self, match: str, lo_ms: int, hi_ms: int) -> Iterator[dict[str, object]]:
        # `end` is inclusive in VictoriaMetrics: ask up to the last ms before `hi`.
        q = urllib.parse.urlencode(
            {"match[]": match, "start": f"{lo_ms / 1000:.3f}", "end": f"{(hi_ms - 1) / 1000:.3f}"}
        )
        req = urllib.request.Request(f"{self.url}/api/v1/export?{q}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                for line in resp:
                    if line.strip():
                        yield json.loads(line)
        except OSError as e:
            raise OSError(
                f"{self.name}: export failed ({e}); is the server up? / 读取历史数据失败"
            ) from e

    def chunks(self, t_from: float, t_to: float, chunk_s: float = 3600.0) -> Iterator[Chunk]:
        prefix = len("station_")
        for lo, hi in slices(t_from, t_to, chunk_s):
            st: list[np.ndarray] = []
            ts: list[np.ndarray] = []
            cols: list[np.ndarray] = []
            vals: list[np.ndarray] = []
            for series in self._export(self.station_match, lo, hi):
                metric = series["metric"]
                assert isinstance(metric, dict)
                i = self.index.get(str(metric.get("station", "")))
                j = signals.INDEX.get(str(metric.get("__name__", ""))[prefix:])
                if i is None or j is None:
                    continue
                t = np.asarray(series["timestamps"], dtype=np.int64)
                v = np.asarray(series["values"], dtype=np.float64)
                keep = (t >= lo) & (t < hi)
                n = int(keep.sum())
                st.append(np.full(n, i, dtype=np.intp))
                ts.append(t[keep])
                cols.append(np.full(n, j, dtype=np.intp))
                vals.append(v[keep])
            if st:
                chunk = rows_to_chunk(
                    np.concatenate(st), np.concatenate(ts), np.concatenate(cols),
                    np.concatenate(vals),
                )  # fmt: skip
                if chunk is not None:
                    yield chunk

    def points(
        self, t_from_ms: int, t_to_ms: int, measurement: str | None = None
    ) -> Iterator[Point]:
        match = self.all_match
        if measurement is not None:
            match = f'{{__name__=~"{measurement}_.+",site="{label_escape(self.site)}"}}'
        # an hour at a time: one point gathers its fields from several series
        for lo, hi in slices(t_from_ms / 1000, t_to_ms / 1000, 3600.0):
            points: dict[tuple[int, str, tuple[tuple[str, str], ...]], dict[str, float]] = {}
            for series in self._export(match, lo, hi):
                metric = dict(series["metric"])  # type: ignore[arg-type]
                name, _, fld = str(metric.pop("__name__", "")).partition("_")
                if not fld:
                    continue
                tags = tuple(sorted((str(k), str(v)) for k, v in metric.items()))
                for t, v in zip(series["timestamps"], series["values"], strict=True):  # type: ignore[call-overload]
                    if lo <= t < hi:
                        points.setdefault((int(t), name, tags), {})[fld] = float(v)
            for (t, name, tags), fields in sorted(points.items()):
                yield Point(name, dict(tags), fields, t)  # type: ignore[arg-type]

    def close(self) -> None:
        pass
