"""The `historian:` section of stations.yaml, validated (unknown keys refused).

    historian:
      influxdb:                 # omit: history goes to the embedded SQLite store
        url: http://127.0.0.1:8086
        org: heating
        bucket: stations
        token_file: /etc/stationd/influx.token   # or token_env: INFLUX_TOKEN
        batch_size: 5000        # lines per request
        flush_interval_s: 1.0
        gzip: true
      queue: {path: historian-queue.db, max_bytes: 1073741824, drain_rate: 5}
      embedded: {path: history.db, retention_days: 30}

Relative paths are under the daemon's state directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InfluxSection(_Model):
    url: str = Field(pattern=r"^https?://")
    org: str = "heating"
    bucket: str = "stations"
    token_env: str | None = "INFLUX_TOKEN"
    token_file: Path | None = None  # read first when given (not visible in /proc/*/environ)
    batch_size: int = Field(5000, ge=1, le=1_000_000)  # lines per request
    flush_interval_s: float = Field(1.0, gt=0, le=60)
    gzip: bool = True
    gzip_level: int = Field(1, ge=1, le=9)  # 1: ~5x smaller LP for a fraction of level 9's CPU
    timeout_s: float = Field(5.0, gt=0, le=120)


class QueueSection(_Model):
    path: Path = Path("historian-queue.db")
    max_bytes: int | None = Field(1 << 30, ge=1 << 16)  # 1 GiB: days of a 1,000-station fleet
    max_rows: int | None = Field(None, ge=1)
    drain_rate: float = Field(5.0, gt=0, le=10_000)  # backlog batches per second
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    live_window_s: float | None = Field(None, gt=0)  # default max(10 s, 3 flush intervals)
    retry_max_s: float = Field(30.0, gt=0, le=600)  # cap of the backoff between failed sends


class EmbeddedSection(_Model):
    path: Path = Path("history.db")
    retention_days: float = Field(30.0, gt=0, le=3650)
    batch_size: int = Field(5000, ge=1)
    flush_interval_s: float = Field(1.0, gt=0, le=60)


class HistorianConfig(_Model):
    influxdb: InfluxSection | None = None
    queue: QueueSection = QueueSection()
    embedded: EmbeddedSection = EmbeddedSection()
