"""Reading history back from InfluxDB with InfluxQL (`GET /query`).

InfluxDB 1.x speaks it natively; 2.x and 3.x serve it through their v1 compatibility API
(the database name is the bucket's DBRP mapping, by default the bucket's name; the
token goes in `Authorization: Token`). Responses are requested `chunked` (one JSON
object per line, a series split over several when long) with `epoch=ms`, so a large
slice streams instead of arriving as one document. Every number comes back as a float
(the historian writes floats only).
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import urllib3

from stationd import signals
from stationd.historian.config import InfluxSection
from stationd.historian.influx_check import auth_headers, resolve_secret, safe_url
from stationd.historian.reader import Chunk, Point, slices

log = logging.getLogger(__name__)

#: rows per chunk of a chunked /query answer
CHUNK_ROWS = 10_000


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """An InfluxQL string literal in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxQLReader:
    """`/query?db=&rp=` for one site's measurements."""

    def __init__(
        self,
        url: str,
        *,
        db: str,
        site: str,
        station_ids: Sequence[str] = (),
        rp: str | None = None,
        username: str | None = None,
        password: str = "",
        token: str = "",
        timeout_s: float = 30.0,
    ) -> None:
        self.url = safe_url(url).rstrip("/")
        self.db, self.rp, self.site = db, rp, site
        self.name = f"influxql {self.url} db={db}" + (f" rp={rp}" if rp else "")
        self.index = {sid: i for i, sid in enumerate(station_ids)}
        self.timeout_s = timeout_s
        self.headers, self.auth = auth_headers(username, password, token)
        self.http = urllib3.PoolManager(num_pools=1, maxsize=1, retries=False)
        self._signals = ",".join(quote_ident(n) for n in signals.NAMES)

    @classmethod
    def from_section(
        cls,
        ix: InfluxSection | None,
        site: str,
        station_ids: Sequence[str],
        *,
        url: str,
        timeout_s: float = 30.0,
    ) -> InfluxQLReader:
        """From `historian.influxdb`: api v1's db, rp and credentials, or api v2's bucket
        (its v1 mapping) and token."""
        if ix is None:
            return cls(url, db="stations", site=site, station_ids=station_ids, timeout_s=timeout_s)
        token = resolve_secret(ix.token_env, ix.token_file, "token")
        if ix.api == "v1":
            return cls(
                url,
                db=str(ix.db),
                rp=ix.rp,
                site=site,
                station_ids=station_ids,
                username=ix.username,
                password=resolve_secret(ix.password_env, ix.password_file, "password"),
                token=token,
                timeout_s=timeout_s,
            )
        return cls(
            url,
            db=ix.bucket_name,
            site=site,
            station_ids=station_ids,
            token=token,
            timeout_s=timeout_s,
        )

    # -- the wire ------------------------------------------------------------------------
    def query(self, q: str) -> Iterator[dict[str, Any]]:
        """Every series of the answer to `q` (pieces of a long series come one by one)."""
        params = {"db": self.db, "q": q, "epoch": "ms", "chunked": "true"}
        params["chunk_size"] = str(CHUNK_ROWS)
        if self.rp:
            params["rp"] = self.rp
        url = f"{self.url}/query?{urllib.parse.urlencode(params)}"
        try:
            r = self.http.request(
                "GET", url, headers=self.headers, timeout=self.timeout_s, preload_content=False
            )
        except urllib3.exceptions.HTTPError as e:
            raise OSError(
                f"{self.name}: cannot query ({e}); is the server up? / 读取历史数据失败"
            ) from e
        try:
            if r.status != 200:
                body = r.read().decode("utf-8", "replace")[:300]
                raise OSError(
                    f"{self.name}: query refused (HTTP {r.status}: {body}); check the db, rp "
                    "and credentials in historian.influxdb / 历史库拒绝查询"
                )
            for line in r:
                if not line.strip():
                    continue
                doc = json.loads(line)
                if "error" in doc:
                    raise OSError(f"{self.name}: {doc['error']} / 查询失败")
                for result in doc.get("results", ()):
                    if "error" in result:
                        raise OSError(f"{self.name}: {result['error']} (query: {q}) / 查询失败")
                    yield from result.get("series", ())
        finally:
            r.release_conn()

    def _where(self, lo_ms: int, hi_ms: int) -> str:
        return f"{quote_ident('site')} = {quote_string(self.site)} AND time >= {lo_ms}ms AND time < {hi_ms}ms"

    # -- reading -------------------------------------------------------------------------
    def chunks(self, t_from: float, t_to: float, chunk_s: float = 3600.0) -> Iterator[Chunk]:
        for lo, hi in slices(t_from, t_to, chunk_s):
            q = (
                f"SELECT {self._signals} FROM {quote_ident('station')} "
                f"WHERE {self._where(lo, hi)} GROUP BY {quote_ident('station')}"
            )
            st: list[np.ndarray] = []
            ts: list[np.ndarray] = []
            vals: list[np.ndarray] = []
            for series in self.query(q):
                i = self.index.get(str(series.get("tags", {}).get("station", "")))
                if i is None:  # a station no longer in the config
                    continue
                cols = series["columns"]
                rows = np.array(series["values"], dtype=np.float64)  # None -> NaN
                if rows.size == 0:
                    continue
                out = np.full((len(rows), signals.K), np.nan)
                out[:, [signals.INDEX[c] for c in cols[1:]]] = rows[:, 1:]
                st.append(np.full(len(rows), i, dtype=np.intp))
                ts.append(rows[:, 0].astype(np.int64))
                vals.append(out)
            if not st:
                continue
            s, t, v = np.concatenate(st), np.concatenate(ts), np.concatenate(vals)
            order = np.lexsort((s, t))  # time order, then station
            yield Chunk(s[order], t[order], v[order])

    def points(
        self, t_from_ms: int, t_to_ms: int, measurement: str | None = None
    ) -> Iterator[Point]:
        source = quote_ident(measurement) if measurement else "/^(station|derived|alarm|daemon)$/"
        for lo, hi in slices(t_from_ms / 1000, t_to_ms / 1000, 3600.0):
            q = f"SELECT * FROM {source} WHERE {self._where(lo, hi)} GROUP BY *"
            out: list[Point] = []
            for series in self.query(q):
                name = str(series["name"])
                # GROUP BY * over several measurements lists every tag key: "" = absent
                tags = {k: v for k, v in series.get("tags", {}).items() if v}
                cols = series["columns"]
                for row in series["values"]:
                    fields = {
                        c: (
                            float(x)
                            if isinstance(x, int | float) and not isinstance(x, bool)
                            else x
                        )
                        for c, x in zip(cols[1:], row[1:], strict=True)
                        if x is not None
                    }
                    if fields:
                        out.append(Point(name, tags, fields, int(row[0])))
            out.sort(key=lambda p: (p.ts_ms, p.measurement, sorted(p.tags.items())))
            yield from out

    def close(self) -> None:
        self.http.clear()
