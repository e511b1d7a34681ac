"""Deliver JSON requests to one HTTP endpoint: a bounded queue, one worker, retries.

Adapters turn pager events into JSON items and `offer()` them here; only the worker task
does network I/O. An unreachable pager therefore costs a full queue and a counter, never
a blocked alarm engine. Retryable failures (connection errors, timeouts, 429, 5xx) are
retried with capped exponential backoff and jitter; any other answer (a 4xx: the request
itself is wrong and will stay wrong) is logged and not retried. Items go out in the
order they were offered, so a resolve never overtakes its trigger.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

log = logging.getLogger(__name__)

USER_AGENT = "stationd-pager/0.1"
DROP_LOG_INTERVAL_S = 10.0  # at most one "dropped" log line per outbox per this period


def rfc3339(ts: float) -> str:
    """Unix seconds -> `2026-11-23T09:00:00.000Z`, the time format every pager API parses."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait for it to finish, without swallowing a cancellation of
    the caller itself (a shutdown that cancels stop() must still propagate)."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


@dataclass(slots=True)
class DeliveryCounters:
    """Counted in items (one alert / one event), not in HTTP requests."""

    sent: int = 0  # accepted by the receiver (2xx)
    failed: int = 0  # rejected (4xx) or retries exhausted
    dropped: int = 0  # never attempted: queue overflow, or still queued at stop
    retried: int = 0  # retry attempts (an item retried three times counts three)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def delay(self, retry: int, rng: random.Random) -> float:
        """Wait before retry number `retry` (1-based): doubling, capped, jittered.

        The jitter spreads two replica daemons (and many alarms) that lost the same
        pager at the same moment, so they do not hammer it in lock-step when it returns.
        """
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * 2 ** (retry - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


class RateLimit:
    """At most `limit` requests in any sliding `window_s` (PagerDuty: ~120 a minute per
    routing key, answering 429 past it). Waiting here in a flood delays events instead
    of having them refused and then given up on."""

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError(
                f"rate limit needs limit >= 1 and window_s > 0, got {limit}/{window_s}"
            )
        self.limit = limit
        self.window_s = window_s
        self._sent: deque[float] = deque()

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while self._sent and self._sent[0] <= now - self.window_s:
                self._sent.popleft()
            if len(self._sent) < self.limit:
                self._sent.append(now)
                return
            await asyncio.sleep(self._sent[0] + self.window_s - now)


@dataclass(slots=True)
class _Item:
    body: Any  # one JSON-able item
    key: str  # incident id, for the logs


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare for these APIs, fall back to our own backoff


def _json_default(obj: Any) -> Any:
    # Evidence dicts may carry numpy scalars or tuples of them; anything else becomes text
    # rather than failing the whole alarm's delivery.
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


class HttpSink:
    """One endpoint's outbox. `offer()` never blocks; `stop()` drains within a deadline."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        queue_size: int = 1000,
        timeout_s: float = 5.0,
        retry: RetryPolicy | None = None,
        batch_max: int = 1,
        encode: Callable[[list[Any]], Any] | None = None,
        rng: random.Random | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.name = name
        self.url = url
        # Webhook URLs often carry a token in the query (chat bots): keep it out of logs.
        parts = urlsplit(url)
        self._log_url = parts._replace(query="…" if parts.query else "", fragment="").geturl()
        self.counters = DeliveryCounters()
        self._headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            **(headers or {}),
        }
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_size)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._retry = retry or RetryPolicy()
        self._batch_max = batch_max
        # batch_max == 1: the item is the body; otherwise the list is (e.g. Alertmanager's array)
        self._encode = encode or ((lambda items: items[0]) if batch_max == 1 else list)
        self._rng = rng or random.Random()
        self._limit = rate_limit
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._closing = False
        self._drop_logged_at = -math.inf

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being sent or retried."""
        return self._queue.empty() and self._in_flight == 0

    def offer(self, body: Any, key: str) -> None:
        """Queue one item; when full, drop the oldest so the newest state gets through."""
        if self._closing:
            self._dropped("stopping", key)
            return
        if self._queue.full():
            old = self._queue.get_nowait()
            self._queue.task_done()
            self._dropped(f"queue full ({self._queue.maxsize}), oldest", old.key)
        self._queue.put_nowait(_Item(body, key))

    def _dropped(self, why: str, key: str) -> None:
        self.counters.dropped += 1
        # In an alarm flood against a dead pager this fires per event; one line per
        # interval with the running count says the same without flooding the journal.
        now = time.monotonic()
        if now - self._drop_logged_at >= DROP_LOG_INTERVAL_S:
            self._drop_logged_at = now
            log.warning(
                "pager %s: %s item dropped incident=%s (dropped so far: %d)",
                self.name,
                why,
                key,
                self.counters.dropped,
            )

    async def start(self) -> None:
        if self._task is not None:
            return
        self._session = aiohttp.ClientSession(timeout=self._timeout, raise_for_status=False)
        self._task = asyncio.create_task(self._worker(), name=f"pager-{self.name}")

    async def stop(self, deadline_s: float) -> None:
        """Stop taking items, give the queue up to `deadline_s` to drain, then cancel."""
        self._closing = True
        try:
            if self._task is not None and not self._task.done():
                try:
                    async with asyncio.timeout(deadline_s):
                        await self._queue.join()
                except TimeoutError:
                    log.warning(
                        "pager %s: drain deadline %.1fs passed with %d item(s) unsent",
                        self.name,
                        deadline_s,
                        self._queue.qsize() + self._in_flight,
                    )
        finally:
            if self._task is not None:
                await cancel_and_wait(self._task)
                self._task = None
            left = self._queue.qsize() + self._in_flight
            if left:
                self.counters.dropped += left
            self._in_flight = 0
            while not self._queue.empty():
                self._queue.get_nowait()
                self._queue.task_done()
            if self._session is not None:
                await self._session.close()
                self._session = None

    async def _worker(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._in_flight = len(batch)
            try:
                await self._deliver(batch)
            except Exception:
                # A bug in encoding must not kill the outbox for every later alarm.
                self.counters.failed += len(batch)
                log.exception(
                    "pager %s: unexpected error delivering %d item(s)", self.name, len(batch)
                )
            self._in_flight = 0
            for _ in batch:
                self._queue.task_done()

    async def _deliver(self, batch: list[_Item]) -> None:
        n = len(batch)
        keys = ",".join(sorted({it.key for it in batch}))
        data = json.dumps(
            self._encode([it.body for it in batch]),
            ensure_ascii=False,
            separators=(",", ":"),
            default=_json_default,
        ).encode("utf-8")
        assert self._session is not None
        for attempt in range(1, self._retry.max_attempts + 1):
            if self._limit is not None:
                await self._limit.acquire()
            retry_after: float | None = None
            try:
                async with self._session.post(self.url, data=data, headers=self._headers) as resp:
                    status = resp.status
                    text = await resp.text(errors="replace")
                    if status == 429:
                        retry_after = _retry_after(resp.headers)
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if 200 <= status < 300:
                    self.counters.sent += n
                    log.debug("pager %s: sent %d item(s) incident=%s", self.name, n, keys)
                    return
                reason = f"HTTP {status}: {text[:300]}"
                if status != 429 and status < 500:
                    self.counters.failed += n
                    log.error(
                        "pager %s: %s rejected %d item(s) incident=%s: %s (not retried: "
                        "fix the pager config or the receiver)",
                        self.name,
                        self._log_url,
                        n,
                        keys,
                        reason,
                    )
                    return
            if attempt == self._retry.max_attempts:
                self.counters.failed += n
                log.error(
                    "pager %s: gave up on %d item(s) incident=%s after %d attempts: %s",
                    self.name,
                    n,
                    keys,
                    attempt,
                    reason,
                )
                return
            delay = self._retry.delay(attempt, self._rng)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self._retry.max_backoff_s))
            self.counters.retried += n
            log.warning(
                "pager %s: %s failed (%s), retry %d/%d in %.2fs incident=%s",
                self.name,
                self._log_url,
                reason,
                attempt,
                self._retry.max_attempts - 1,
                delay,
                keys,
            )
            await asyncio.sleep(delay)
