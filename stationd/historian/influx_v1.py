"""The InfluxDB 1.x sink: one batch of line protocol per `POST /write?db=&rp=&precision=`.

InfluxDB 1.x before 1.8 (Debian's 1.6.7) speaks only this API; 1.8+, 2.x (with a DBRP
mapping) and 3.x accept it too. Credentials: `username` + password as HTTP basic auth,
or a token as `Authorization: Token <token>` (1.8+: "user:password"; 2.x's v1 API: an
API token). influxdb-client has no v1 write, so this is urllib3 (its own dependency)
on the forwarder's sink thread, with a pool of one connection kept alive; the client's
retries are off because the store-and-forward queue is the one retry policy.

Our line protocol carries millisecond timestamps; with `precision` s/u/ns they are
rescaled here (s truncates: only whole-second ticks keep their identity).
"""

from __future__ import annotations

import gzip as gzip_lib
import logging
import urllib.parse

import urllib3

from stationd.historian.influx_check import (
    ServerInfo,
    api_mismatch,
    auth_headers,
    safe_url,
    server_info,
    write_error,
)
from stationd.historian.sink import ConfigurationError, RejectedError, SinkError

log = logging.getLogger(__name__)

#: our timestamps are ms; what to multiply (or divide, for s) them by for each precision
_SCALE = {"ms": 1, "u": 1000, "ns": 1_000_000}


def rescale(payload: bytes, precision: str) -> bytes:
    """Line protocol with ms timestamps -> the same lines in `precision`."""
    if precision == "ms":
        return payload
    out = []
    for line in payload.split(b"\n"):
        if not line:
            continue
        head, _, ts = line.rpartition(b" ")
        t = int(ts)
        t = t // 1000 if precision == "s" else t * _SCALE[precision]
        out.append(head + b" " + str(t).encode())
    return b"\n".join(out) + b"\n"


class InfluxV1Sink:
    """`/write` with db, rp, precision and basic or token auth."""

    api = "v1"

    def __init__(
        self,
        url: str,
        *,
        db: str,
        rp: str | None = None,
        precision: str = "ms",
        username: str | None = None,
        password: str = "",
        token: str = "",
        gzip: bool = True,
        gzip_level: int = 1,
        timeout_s: float = 10.0,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        self.url = safe_url(url).rstrip("/")
        if username is None and parts.username:  # http://user:pw@host: basic auth too
            username = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
        self.db, self.rp, self.precision = db, rp, precision
        rp_txt = f" rp={rp}" if rp else ""
        self.name = f"influxdb {self.url} db={db}{rp_txt}"
        self.target = f'database "{db}"' + (f' retention policy "{rp}"' if rp else "")
        self.gzip_level = gzip_level if gzip else 0
        self.timeout_s = timeout_s
        auth, self.auth = auth_headers(username, password, token)
        self.headers: dict[str, str | bytes] = {"Content-Type": "text/plain; charset=utf-8", **auth}
        q = {"db": db, "precision": precision}
        if rp:
            q["rp"] = rp
        self.write_url = f"{self.url}/write?{urllib.parse.urlencode(q)}"
        self.http = urllib3.PoolManager(num_pools=1, maxsize=1, retries=False)
        self.info: ServerInfo | None = None

    def _post(self, body: bytes, extra: dict[str, str | bytes] | None = None) -> None:
        headers = {**self.headers, **(extra or {})}
        try:
            r = self.http.request(
                "POST", self.write_url, body=body, headers=headers, timeout=self.timeout_s
            )
        except urllib3.exceptions.HTTPError as e:
            raise write_error(
                None, f"{type(e).__name__}: {e}", api="v1", where=self.name, target=self.target
            ) from e
        if r.status // 100 != 2:
            raise write_error(
                r.status, r.data, api="v1", where=self.name, target=self.target, info=self.info
            )

    def write(self, payload: bytes) -> None:
        body = rescale(payload, self.precision)
        if self.gzip_level:
            self._post(
                gzip_lib.compress(body, compresslevel=self.gzip_level),
                {"Content-Encoding": "gzip"},
            )
        else:
            self._post(body)

    def check(self) -> str:
        """Ask the server whether this config works: /ping, then an empty write (InfluxDB
        checks credentials, database and retention policy and answers 204 or why not)."""
        self.info = server_info(self.http, self.url, self.timeout_s)
        problem = api_mismatch(self.info, "v1")
        if problem:
            raise ConfigurationError(f"{self.name}: configuration error: {problem}")
        try:
            self._post(b"")
        except RejectedError:
            pass  # "no points": it looked at the body, so credentials and target passed
        return f"{self.info.label}, api v1 /write, {self.target}, auth {self.auth}"

    def ping(self) -> bool:
        """True only when the server is up AND accepts this config (not just /ping)."""
        try:
            self.check()
        except SinkError:
            return False
        return True

    def close(self) -> None:
        self.http.clear()
