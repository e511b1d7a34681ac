"""The InfluxDB v2 sink: one batch of line protocol per `/api/v2/write` request.

Sent through influxdb-client's synchronous `WriteService.post_write` (the binding under
its WriteApi) on the forwarder's sink thread, so compression and the HTTP round trip never
run on the event loop (the async client gzips on the loop). The body is gzipped here at a
chosen level: the client's own gzip is level 9, which costs ~0.2 s per 3 MB batch for
~10 % less output than level 1; ours defaults to 1. The client's own retries are off: the
forwarder's store-and-forward queue is the one retry policy, so a batch is never both
retried in memory and re-sent from disk.
"""

from __future__ import annotations

import gzip as gzip_lib
import logging
import os
from pathlib import Path

from influxdb_client import InfluxDBClient, WriteService
from influxdb_client.rest import ApiException

from stationd.historian.sink import RejectedError, RetryableError

log = logging.getLogger(__name__)

#: a batch the server will never accept: malformed line protocol, too large, type clash
_REJECTED = {400, 413, 422}


def resolve_token(token_env: str | None, token_file: str | Path | None) -> str:
    """The API token from a credential file (preferred: not visible in /proc/*/environ)
    or an environment variable; empty when neither is set (VictoriaMetrics needs none)."""
    if token_file:
        p = Path(token_file)
        try:
            return p.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ValueError(
                f"historian.influxdb.token_file {p}: cannot read the token ({e.strerror}) "
                f"/ 无法读取令牌文件"
            ) from e
    if token_env:
        return os.environ.get(token_env, "")
    return ""


class InfluxSink:
    """`/api/v2/write` through influxdb-client, precision ms (VictoriaMetrics keeps ms)."""

    def __init__(
        self,
        url: str,
        *,
        org: str,
        bucket: str,
        token: str = "",
        gzip: bool = True,
        gzip_level: int = 1,
        timeout_s: float = 10.0,
    ) -> None:
        self.name = f"influxdb {url} bucket={bucket}"
        self.url = url
        self.org = org
        self.bucket = bucket
        self.gzip_level = gzip_level if gzip else 0
        self._client = InfluxDBClient(
            url=url,
            token=token or "none",
            org=org,
            timeout=int(timeout_s * 1000),
            enable_gzip=False,  # we compress, at our level
            retries=False,
        )
        self._service = WriteService(self._client.api_client)

    def write(self, payload: bytes) -> None:
        extra = {}
        body = payload
        if self.gzip_level:
            body = gzip_lib.compress(payload, compresslevel=self.gzip_level)
            extra["content_encoding"] = "gzip"
        try:
            self._service.post_write(
                org=self.org,
                bucket=self.bucket,
                body=body,
                precision="ms",  # VictoriaMetrics keeps ms; ticks are whole ms anyway
                content_type="text/plain; charset=utf-8",
                **extra,
            )
        except ApiException as e:
            status = getattr(e, "status", None)
            body = (getattr(e, "body", b"") or b"")[:300]
            if status in _REJECTED:
                raise RejectedError(f"{self.name}: HTTP {status}: {body!r}") from e
            # 401/403/404 (token, org, bucket) are config faults a person can fix: the data
            # waits in the queue for them instead of being thrown away.
            raise RetryableError(f"{self.name}: HTTP {status}: {body!r}") from e
        except Exception as e:  # urllib3 connection/timeout errors and the like
            raise RetryableError(f"{self.name}: {type(e).__name__}: {e}") from e

    def ping(self) -> bool:
        return bool(self._client.ping())

    def close(self) -> None:
        self._client.close()
