"""Alertmanager silences for incidents a dispatcher acknowledged in stationd.

An ack means a person has taken the incident: Alertmanager should stop re-notifying the
on-call receivers for it, but keep it listed. So an ack creates a silence matching the
incident label (`incident="<id>"`, the incident's own alert and nothing else) on every
configured Alertmanager, and the clear expires it. The silence carries a time-to-live
(`ack_silence_s`) that the re-send loop renews while the incident stays acknowledged:
"until it clears" in practice, yet a silence left by a daemon that died expires on its
own.

No silence id needs to survive a restart: silences are found by their matcher
(`GET /api/v2/silences?filter=incident="<id>"`, created by stationd), so a clear after a
restart, or from the other replica of a pair, still removes them, and an ack seen twice
(both replicas) keeps one. Operations for the same incident run in order on one worker,
with bounded retries; a failure is counted and logged, never raised into the alarm path.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

import aiohttp

from alarms.pager.delivery import USER_AGENT, RetryPolicy, cancel_and_wait, rfc3339

log = logging.getLogger(__name__)

CREATED_BY = "stationd"
_FRACTION = re.compile(r"\.\d+")
QUEUE_MAX = 10_000


@dataclass(slots=True)
class SilenceCounters:
    created: int = 0
    renewed: int = 0
    expired: int = 0
    failed: int = 0  # operations given up on (retries exhausted or refused)


@dataclass(frozen=True, slots=True)
class _Op:
    kind: Literal["ensure", "expire"]
    incident: str
    operator: str = ""


class _Refused(Exception):
    """Alertmanager answered 4xx: the request is wrong and stays wrong."""


class Silences:
    """Keeps one silence per acknowledged incident on each Alertmanager URL."""

    def __init__(
        self,
        urls: list[str],
        *,
        ttl_s: float,
        timeout_s: float = 5.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.counters = SilenceCounters()
        self.acked: dict[str, str] = {}  # incident -> operator, while acknowledged
        self._queue: deque[_Op] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._rng = random.Random()

    # -- what the adapter tells ----------------------------------------------------------
    def acknowledged(self, incident: str, operator: str) -> None:
        self.acked[incident] = operator
        self._put(_Op("ensure", incident, operator))

    def cleared(self, incident: str) -> None:
        self.acked.pop(incident, None)
        self._put(_Op("expire", incident))

    def renew(self) -> None:
        """Re-assert every acknowledged incident's silence (called each re-send period;
        a silence with more than half its time-to-live left is kept as it is)."""
        for incident, operator in self.acked.items():
            self._put(_Op("ensure", incident, operator))

    def _put(self, op: _Op) -> None:
        if len(self._queue) >= QUEUE_MAX:
            self.counters.failed += 1
            log.error(
                "pager alertmanager silences: queue full, %s for incident=%s dropped",
                op.kind,
                op.incident,
            )
            return
        if op.kind == "ensure" and op in self._queue:
            return  # already waiting
        self._queue.append(op)
        self._idle.clear()
        self._wake.set()

    # -- life cycle ----------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={"User-Agent": USER_AGENT},
            )
            self._task = asyncio.create_task(self._worker(), name="pager-am-silences")

    async def stop(self, deadline_s: float) -> None:
        if self._task is not None:
            try:
                await asyncio.wait_for(self._idle.wait(), max(0.0, deadline_s))
            except TimeoutError:
                log.warning(
                    "pager alertmanager silences: %d operation(s) left at stop", len(self._queue)
                )
            await cancel_and_wait(self._task)
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def wait_idle(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    # -- the work ------------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            op = self._queue[0]
            for url in self.urls:
                await self._with_retries(url, op)
            self._queue.popleft()

    async def _with_retries(self, url: str, op: _Op) -> None:
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                if op.kind == "ensure":
                    await self._ensure(url, op)
                else:
                    await self._expire(url, op.incident)
                return
            except _Refused as e:
                self.counters.failed += 1
                log.error(
                    "pager alertmanager %s: silence %s for incident=%s refused: %s",
                    url,
                    op.kind,
                    op.incident,
                    e,
                )
                return
            except (aiohttp.ClientError, TimeoutError) as e:
                if attempt == self.retry.max_attempts:
                    self.counters.failed += 1
                    log.error(
                        "pager alertmanager %s: silence %s for incident=%s failed after %d "
                        "tries: %s",
                        url,
                        op.kind,
                        op.incident,
                        attempt,
                        e,
                    )
                    return
                await asyncio.sleep(self.retry.delay(attempt, self._rng))

    async def _request(self, method: str, url: str, **kw: Any) -> Any:
        assert self._session is not None
        async with self._session.request(method, url, **kw) as resp:
            text = await resp.text()
            if resp.status >= 500:
                raise aiohttp.ClientResponseError(
                    resp.request_info, (), status=resp.status, message=text[:200]
                )
            if resp.status >= 400:
                raise _Refused(f"HTTP {resp.status}: {text[:200]}")
            return await resp.json(content_type=None) if text else None

    async def _ours(self, url: str, incident: str) -> list[dict[str, Any]]:
        """Active or pending silences stationd made for this incident."""
        flt = f'incident="{_escape(incident)}"'
        got = await self._request("GET", f"{url}/api/v2/silences", params={"filter": flt})
        return [
            s
            for s in got or []
            if s.get("status", {}).get("state") in ("active", "pending")
            and str(s.get("createdBy", "")).startswith(CREATED_BY)
            and _matches_only(s, incident)
        ]

    async def _ensure(self, url: str, op: _Op) -> None:
        if op.incident not in self.acked:
            return  # cleared meanwhile: the expire behind us removes it
        now = time.time()
        ours = await self._ours(url, op.incident)
        keep = [s for s in ours if _ends(s) - now > self.ttl_s / 2]
        if keep:
            return
        body: dict[str, Any] = {
            "matchers": [
                {"name": "incident", "value": op.incident, "isRegex": False, "isEqual": True}
            ],
            "startsAt": rfc3339(now),
            "endsAt": rfc3339(now + self.ttl_s),
            "createdBy": f"{CREATED_BY} ({op.operator})" if op.operator else CREATED_BY,
            "comment": (
                f"已在调度系统确认，报警恢复时自动解除 / acknowledged in stationd by "
                f"{op.operator or 'a dispatcher'}; removed when the alarm clears"
            ),
        }
        if ours:  # renew the one we have (Alertmanager updates it in place)
            body["id"] = ours[0]["id"]
        await self._request("POST", f"{url}/api/v2/silences", json=body)
        if ours:
            self.counters.renewed += 1
        else:
            self.counters.created += 1
            log.info(
                "pager alertmanager %s: silenced incident=%s (acknowledged by %s)",
                url,
                op.incident,
                op.operator,
            )

    async def _expire(self, url: str, incident: str) -> None:
        for s in await self._ours(url, incident):
            await self._request("DELETE", f"{url}/api/v2/silence/{quote(s['id'])}")
            self.counters.expired += 1
            log.info("pager alertmanager %s: silence for incident=%s removed", url, incident)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _matches_only(silence: dict[str, Any], incident: str) -> bool:
    m = silence.get("matchers") or []
    return (
        len(m) == 1
        and m[0].get("name") == "incident"
        and m[0].get("value") == incident
        and not m[0].get("isRegex")
        and m[0].get("isEqual", True)
    )


def _ends(silence: dict[str, Any]) -> float:
    # Alertmanager writes up to nanoseconds; Python's parser takes microseconds
    text = _FRACTION.sub(lambda m: m.group(0)[:7], str(silence.get("endsAt", "")))
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
