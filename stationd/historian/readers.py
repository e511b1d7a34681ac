"""Open the history reader a config asks for: embedded, InfluxQL or VictoriaMetrics.

The readers implement stationd/historian/reader.py's interface; this module is the one
that knows all three (so the interface imports none of them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import urllib3

from stationd.historian.config import HistorianConfig
from stationd.historian.influx_check import safe_url, server_info
from stationd.historian.read_embedded import EmbeddedReader
from stationd.historian.read_influxql import InfluxQLReader
from stationd.historian.read_vm import VictoriaMetricsReader
from stationd.historian.reader import READER_KINDS, HistoryReader
from stationd.historian.sink import SinkError

log = logging.getLogger(__name__)


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
