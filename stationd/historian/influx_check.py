"""What an InfluxDB-compatible server is, and what its answers mean for our config.

Shared by the v1 (`/write`) and v2 (`/api/v2/write`) sinks:
- `server_info()`: `GET /ping`; InfluxDB names its version in `X-Influxdb-Version`
  (1.x: "1.6.7", 2.x: "v2.7.1" or "2.7.1", 3.x: "3.0.1"); VictoriaMetrics and other
  compatible stores answer 204 without it.
- `api_mismatch()`: a configured API the server cannot speak, said before any write.
- `write_error()`: an HTTP answer to a write, turned into the sink error it means. Only
  network errors, 5xx and 429 are "unreachable"; any other 4xx (wrong API, credentials,
  database, bucket) and InfluxDB 1.x's 500 "retention policy not found" are
  configuration errors, with the server's answer and what to change; 400 (malformed
  line protocol), 422 (outside retention) are a bad batch.
- `resolve_secret()`: a password or token from a credential file or the environment.
- `safe_url()`: a URL without `user:password@`, for names and log lines.
"""

from __future__ import annotations

import base64
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import urllib3

from stationd.historian.sink import ConfigurationError, RejectedError, RetryableError, SinkError

Api = Literal["v1", "v2"]

#: a batch the server will never accept: malformed line protocol, outside retention
_BAD_BATCH = {400, 422}
#: 4xx answers that are load, not config: retry like an outage
_TRANSIENT_4XX = {408, 429}


def safe_url(url: str) -> str:
    """`url` without credentials (`http://user:pw@host` -> `http://host`)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


def auth_headers(
    username: str | None, password: str, token: str
) -> tuple[dict[str, str | bytes], str]:
    """HTTP headers for InfluxDB's v1 API (`/write`, `/query`) and a label for logs:
    basic auth when a username is given, else `Token <token>` (1.8+, 2.x), else none."""
    if username is not None:
        # UTF-8, not urllib3's latin-1: a password may hold any character
        cred = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {cred}"}, f"basic ({username})"
    if token:
        # bytes: http.client would encode a str as latin-1 and fail on other characters
        return {"Authorization": f"Token {token}".encode()}, "token"
    return {}, "none"


def resolve_secret(env: str | None, file: str | Path | None, what: str) -> str:
    """The secret from a credential file (preferred: not visible in /proc/*/environ) or
    an environment variable; empty when neither is set (VictoriaMetrics needs none)."""
    if file:
        p = Path(file)
        try:
            return p.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ValueError(
                f"historian.influxdb.{what}_file {p}: cannot read it ({e.strerror}) "
                f"/ 无法读取凭据文件"
            ) from e
    if env:
        return os.environ.get(env, "")
    return ""


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What `/ping` told about the server."""

    product: str  # "InfluxDB" or "unknown (no X-Influxdb-Version: VictoriaMetrics?)"
    version: str  # as the server says it, "" when it does not
    major: int | None
    minor: int | None

    @property
    def label(self) -> str:
        return f"{self.product} {self.version}".strip()

    @property
    def speaks_v2(self) -> bool | None:
        """True/False when known: InfluxDB 1.x before 1.8 has no /api/v2/write."""
        if self.major is None:
            return None
        if self.major == 1:
            return (self.minor or 0) >= 8
        return True


_VERSION = re.compile(r"^v?(\d+)\.(\d+)")


def parse_ping(status: int, headers: dict[str, str]) -> ServerInfo:
    version = headers.get("x-influxdb-version", "")
    m = _VERSION.match(version)
    if version:
        return ServerInfo(
            "InfluxDB",
            version,
            int(m.group(1)) if m else None,
            int(m.group(2)) if m else None,
        )
    return ServerInfo("unknown server (no X-Influxdb-Version; VictoriaMetrics?)", "", None, None)


def server_info(http: urllib3.PoolManager, url: str, timeout_s: float) -> ServerInfo:
    """`GET /ping`; RetryableError when the server cannot be reached or is failing."""
    try:
        r = http.request("GET", f"{url}/ping", timeout=timeout_s, retries=False)
    except urllib3.exceptions.HTTPError as e:
        raise RetryableError(f"{safe_url(url)}: {type(e).__name__}: {e}") from e
    if r.status >= 500:
        raise RetryableError(f"{safe_url(url)}/ping: HTTP {r.status}: {_text(r.data)}")
    if r.status >= 400 and r.status not in (401, 403):
        # 1.x answers /ping without credentials; 2.x too. Anything else is not InfluxDB.
        raise ConfigurationError(
            f"{safe_url(url)}/ping answered HTTP {r.status} ({_text(r.data)}): "
            "this URL is not an InfluxDB-compatible server; check historian.influxdb.url "
            "/ 该地址不是 InfluxDB 兼容服务"
        )
    return parse_ping(r.status, {k.lower(): v for k, v in r.headers.items()})


def api_mismatch(info: ServerInfo, api: Api) -> str | None:
    """Why `api` cannot work with this server, when /ping already tells; else None."""
    if api == "v2" and info.speaks_v2 is False:
        return (
            f"the server is {info.label}, which speaks only the v1 write API (/write; "
            "/api/v2/write came with 1.8): set historian.influxdb.api: v1 and db: <database> "
            "/ 该服务器只支持 v1 接口, 请设置 api: v1 与 db"
        )
    return None


def _text(body: bytes | str | None, limit: int = 300) -> str:
    if body is None:
        return ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return body.strip()[:limit]


def write_error(
    status: int | None,
    body: bytes | str | None,
    *,
    api: Api,
    where: str,
    target: str,
    info: ServerInfo | None = None,
) -> SinkError:
    """The sink error an HTTP answer to a write means (status None: no answer at all).

    `where` names the sink (`influxdb http://host:8086 db=stations`), `target` the thing
    written into (`database "stations"`, `bucket "stations" in org "heating"`).
    """
    text = _text(body)
    answer = f"HTTP {status}: {text}" if text else f"HTTP {status}"
    if status is None or (status >= 500 and "retention policy not found" not in text):
        return RetryableError(f"{where}: unreachable ({answer})")
    if status in _TRANSIENT_4XX:
        return RetryableError(f"{where}: server busy ({answer})")
    if status in _BAD_BATCH:
        return RejectedError(f"{where}: batch refused ({answer})")
    hint: str
    low = text.lower()
    if status in (401, 403):
        hint = (
            "the server refused our credentials: check username and password_file (api v1) "
            "or token_file (api v2; api v1 sends it as `Token`, which needs InfluxDB 1.8+) "
            "/ 凭据被拒绝"
        )
    elif "database not found" in low:
        hint = (
            f"{target} does not exist: create it (influx -execute 'CREATE DATABASE ...') or "
            "fix historian.influxdb.db / 数据库不存在"
        )
    elif "retention policy not found" in low:
        hint = (
            "the retention policy does not exist: fix historian.influxdb.rp (omit it for the "
            "database's default) / 保留策略不存在"
        )
    elif "bucket" in low and "not found" in low:
        hint = f"{target} does not exist: create it or fix historian.influxdb.bucket / 桶不存在"
    elif "organization" in low and "not found" in low:
        hint = "the organization does not exist: fix historian.influxdb.org / 组织不存在"
    elif status == 404 and api == "v2":
        server = f"the server ({info.label}) " if info and info.version else "the server "
        hint = (
            f"{server}has no /api/v2/write: InfluxDB 1.x before 1.8 speaks only v1; set "
            "historian.influxdb.api: v1 and db: <database> / 服务器不支持 v2 接口"
        )
    elif status == 404:
        hint = (
            "the server has no /write (v1) endpoint here: for InfluxDB 2.x/3.x set "
            "historian.influxdb.api: v2 with org and bucket (or map a DBRP for v1) "
            "/ 服务器不支持 v1 接口"
        )
    elif status == 413:
        hint = (
            "the batch is larger than the server accepts: lower historian.influxdb.batch_size "
            "(or raise the server's max-body-size) / 批次过大"
        )
    else:
        hint = "the server refuses our settings; check historian.influxdb / 服务器拒绝当前配置"
    return ConfigurationError(f"{where}: configuration error ({answer}): {hint}")
