"""Where the daily report reads its station samples: the configured history store.

The readers live with the historian (`stationd.historian.reader`): the embedded SQLite
store, VictoriaMetrics (`/api/v1/export`) and InfluxDB (InfluxQL `/query`, 1.x natively,
2.x/3.x through their v1 API) all give the same `Chunk`s, an hour at a time, which
compute.py folds into hourly figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stationd.historian.reader import Chunk, HistoryReader
from stationd.historian.readers import open_reader

Source = HistoryReader

__all__ = ["Chunk", "Source", "open_source"]


def open_source(
    cfg: Any,
    state_dir: str | Path,
    kind: str = "auto",
    url: str | None = None,
) -> Source:
    """The history a report reads: `auto` (as `historian:` is configured), `embedded`,
    `influxql` or `vm` (at `url`, default the config's historian.influxdb.url)."""
    ids = [st.id for st in cfg.stations]
    return open_reader(getattr(cfg, "historian", None), cfg.site.id, ids, state_dir, kind, url)
