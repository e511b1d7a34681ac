"""The `historian:` section of stations.yaml, validated (unknown keys refused).

    historian:
      influxdb:                 # omit: history goes to the embedded SQLite store
        url: http://127.0.0.1:8086
        api: v1                 # v1: InfluxDB 1.x /write; v2 (default): /api/v2/write
        # api v1 (InfluxDB 1.x; also 1.8+ and 2.x's v1 compatibility API)
        db: stations
        rp: autogen             # omit: the database's default retention policy
        precision: ms           # s | ms | u | ns: timestamps as the server stores them
        username: stationd      # basic auth, with password_file (or password_env)
        password_file: /etc/stationd/influx.password
        # api v2 (InfluxDB 2.x/3.x, 1.8+, VictoriaMetrics)
        org: heating
        bucket: stations
        token_file: /etc/stationd/influx.token   # or token_env: INFLUX_TOKEN; with api v1
                                                 # sent as `Authorization: Token ...`
        batch_size: 5000        # lines per request
        flush_interval_s: 1.0
        gzip: true
      queue: {path: historian-queue.db, max_bytes: 1073741824, drain_rate: 5}
      embedded: {path: history.db, retention_days: 30}

Relative paths are under the daemon's state directory. A key that belongs to the other
API (`db` with api v2, `bucket` with api v1) is refused rather than silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: keys that only one write API understands
_V1_ONLY = ("db", "rp", "username", "password_env", "password_file")
_V2_ONLY = ("org", "bucket")


class InfluxSection(_Model):
    url: str = Field(pattern=r"^https?://")
    api: Literal["v1", "v2"] = "v2"
    # api v2
    org: str | None = None  # default "heating"
    bucket: str | None = None  # default "stations"
    # api v1
    db: str | None = Field(None, min_length=1)
    rp: str | None = Field(None, min_length=1)
    precision: Literal["s", "ms", "u", "ns"] = "ms"
    username: str | None = Field(None, min_length=1)
    password_env: str | None = None
    password_file: Path | None = None  # read first when given (not in /proc/*/environ)
    # both: a token (v2: the API token; v1: sent as `Authorization: Token <token>`)
    token_env: str | None = "INFLUX_TOKEN"
    token_file: Path | None = None  # read first when given (not visible in /proc/*/environ)
    batch_size: int = Field(5000, ge=1, le=1_000_000)  # lines per request
    flush_interval_s: float = Field(1.0, gt=0, le=60)
    gzip: bool = True
    gzip_level: int = Field(1, ge=1, le=9)  # 1: ~5x smaller LP for a fraction of level 9's CPU
    timeout_s: float = Field(5.0, gt=0, le=120)

    @model_validator(mode="after")
    def _keys_fit_the_api(self) -> InfluxSection:
        if self.api == "v1":
            if self.db is None:
                raise ValueError(
                    "api v1 (InfluxDB 1.x /write) needs `db:` (the database) "
                    "/ v1 接口须指定数据库 db"
                )
            wrong = [k for k in _V2_ONLY if getattr(self, k) is not None]
            other = "org and bucket belong to api v2 (/api/v2/write)"
        else:
            wrong = [k for k in _V1_ONLY if getattr(self, k) is not None]
            if self.precision != "ms":
                wrong.append("precision")
            other = "db, rp, precision, username and password belong to api v1 (/write)"
        if wrong:
            raise ValueError(
                f"{', '.join(wrong)} not used with api {self.api}: {other}; "
                f"set `api:` to match the server / 配置项与接口版本不符"
            )
        if self.username is not None and not (self.password_env or self.password_file):
            raise ValueError("username needs password_file or password_env / 用户名须配密码")
        return self

    @property
    def org_name(self) -> str:
        return self.org or "heating"

    @property
    def bucket_name(self) -> str:
        return self.bucket or "stations"


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
