"""Store-and-forward: batch lines in memory briefly, commit them to the disk queue, send.

    submit() --(batch_lines or flush_interval_s)--> DiskQueue --(sender)--> Sink

Two lanes leave the queue. The live lane (batches queued within `live_window_s`) is sent
at once; the backlog lane (older batches, left by an outage or a restart) drains oldest
first at no more than `drain_rate` batches/s, so after an outage the dispatch room sees
current values immediately while history fills in behind them. A failed send keeps the
batch and backs off (capped, jittered); the sink is the only thing retried and the queue
the only retry memory.

Two kinds of failure are told apart: "unreachable" (network, 5xx: `outage_since`) and
"configuration error" (the server answered and refuses our settings: `config_error`,
logged once per distinct answer, `stationd_historian_config_error` = 1, readiness false).
Both keep the data on disk. At start the sink's `check()` (when it has one) asks the
server whether the configured API, credentials and target work, and says so.

Disk and network work run on two dedicated threads (one owns the SQLite connection, one
the sink), so the event loop never blocks and a slow database never stalls the queue.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from stationd.historian.queue import Batch, DiskQueue
from stationd.historian.sink import ConfigurationError, RejectedError, RetryableError, Sink

log = logging.getLogger(__name__)
T = TypeVar("T")


class ForwarderMetrics:
    # one set per registry (metric names register once); weak so test registries go away
    _by_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, ForwarderMetrics]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent_batches = Counter(
            "stationd_historian_sent_batches",
            "Batches the database accepted",
            ["queue"],
            registry=registry,
        )
        self.sent_lines = Counter(
            "stationd_historian_sent_lines",
            "Lines the database accepted",
            ["queue"],
            registry=registry,
        )
        self.rejected_batches = Counter(
            "stationd_historian_rejected_batches",
            "Batches the database refused as malformed (dropped)",
            ["queue"],
            registry=registry,
        )
        self.send_failures = Counter(
            "stationd_historian_send_failures",
            "Failed sends that were kept for retry",
            ["queue"],
            registry=registry,
        )
        self.dropped_pending = Counter(
            "stationd_historian_dropped_pending_lines",
            "Lines dropped before reaching the disk queue (disk far too slow)",
            ["queue"],
            registry=registry,
        )
        self.up = Gauge(
            "stationd_historian_up", "1 when the last send succeeded", ["queue"], registry=registry
        )
        self.config_error = Gauge(
            "stationd_historian_config_error",
            "1 while the database refuses our configuration (wrong API, credentials, "
            "database/bucket): data is kept on disk until it is fixed",
            ["queue"],
            registry=registry,
        )

    @classmethod
    def for_registry(cls, registry: CollectorRegistry) -> ForwarderMetrics:
        m = cls._by_registry.get(registry)
        if m is None:
            m = cls._by_registry[registry] = cls(registry)
        return m


class Forwarder:
    def __init__(
        self,
        queue: DiskQueue,
        sink: Sink,
        *,
        batch_lines: int = 5000,
        flush_interval_s: float = 1.0,
        drain_rate: float = 5.0,
        live_window_s: float | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_pending_lines: int | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.queue = queue
        self.sink = sink
        self.name = queue.name
        self.batch_lines = batch_lines
        self.flush_interval_s = flush_interval_s
        self.drain_rate = drain_rate
        self.live_window_s = live_window_s or max(10.0, 3.0 * flush_interval_s)
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        # bounded even in memory: past this the disk thread is hopelessly behind
        self.max_pending_lines = max_pending_lines or 50 * batch_lines
        self._pending: list[tuple[bytes, int]] = []
        self._pending_lines = 0
        self._qx = ThreadPoolExecutor(1, thread_name_prefix=f"historian-queue-{self.name}")
        self._sx = ThreadPoolExecutor(1, thread_name_prefix=f"historian-sink-{self.name}")
        self._flush_now = asyncio.Event()
        self._enqueued = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.sent_batches = 0
        self.sent_lines = 0
        self.rejected_batches = 0
        self.send_failures = 0
        self.dropped_pending_lines = 0
        self.outage_since: float | None = None
        #: the server's refusal of our settings, with what to change; None when accepted
        self.config_error: str | None = None
        #: what the sink's start-up check found ("InfluxDB 1.6.7, api v1 ..."), if it ran
        self.server: str | None = None
        m = ForwarderMetrics.for_registry(registry if registry is not None else REGISTRY)
        self._m = {
            "sent_batches": m.sent_batches.labels(self.name),
            "sent_lines": m.sent_lines.labels(self.name),
            "rejected": m.rejected_batches.labels(self.name),
            "failures": m.send_failures.labels(self.name),
            "dropped_pending": m.dropped_pending.labels(self.name),
        }
        m.up.labels(self.name).set_function(
            lambda: 0.0 if self.outage_since or self.config_error else 1.0
        )
        m.config_error.labels(self.name).set_function(lambda: 1.0 if self.config_error else 0.0)

    # -- life cycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._flusher(), name=f"historian-flush-{self.name}"),
            asyncio.create_task(self._sender(), name=f"historian-send-{self.name}"),
        ]

    async def stop(self, drain_timeout_s: float = 2.0) -> None:
        """Commit everything pending to disk; give the sender a short while to empty the
        queue if the database is up; then stop. What is left is sent after the restart."""
        flusher, sender = self._tasks if self._tasks else (None, None)
        if flusher is not None:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        await self.flush()
        if sender is not None:
            if self.outage_since is None and self.config_error is None:
                await self.wait_empty(drain_timeout_s)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        self._tasks = []
        await self._on_queue(self.queue.close)
        self._qx.shutdown(wait=True)
        # A write in flight may still be blocked in the sink thread (bounded by the sink's
        # timeout); its batch was not acknowledged, so it is simply sent again next time.
        self._sx.submit(self.sink.close)
        self._sx.shutdown(wait=False)

    # -- producing -----------------------------------------------------------------------
    def submit(self, payload: bytes, lines: int) -> None:
        """Hand over lines (called on the loop; cheap). Durable once flushed to disk."""
        if not lines:
            return
        self._pending.append((payload, lines))
        self._pending_lines += lines
        while self._pending_lines > self.max_pending_lines and len(self._pending) > 1:
            _, n = self._pending.pop(0)
            self._pending_lines -= n
            self.dropped_pending_lines += n
            self._m["dropped_pending"].inc(n)
            log.warning(
                "historian %s: disk queue too slow, dropped %d pending lines "
                "/ 磁盘队列过慢, 丢弃 %d 行",
                self.name,
                n,
                n,
            )
        if self._pending_lines >= self.batch_lines:
            self._flush_now.set()

    async def flush(self) -> None:
        """Commit everything submitted so far to the disk queue (acknowledged on return)."""
        while self._pending:
            chunk: list[bytes] = []
            n = 0
            while self._pending and (n == 0 or n + self._pending[0][1] <= self.batch_lines):
                p, k = self._pending.pop(0)
                chunk.append(p)
                n += k
            payload = b"".join(chunk)
            try:
                await self._on_queue(self.queue.put, payload, n)
            except BaseException:
                # not committed (disk full, cancelled): keep it for the next flush
                self._pending.insert(0, (payload, n))
                raise
            self._pending_lines -= n
            self._enqueued.set()

    async def _flusher(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._flush_now.wait(), timeout=self.flush_interval_s)
            except TimeoutError:
                pass
            self._flush_now.clear()
            try:
                await self.flush()
            except Exception:
                log.exception(
                    "historian %s: cannot commit to the disk queue %s; data kept in memory "
                    "(bounded) and retried / 无法写入磁盘队列",
                    self.name,
                    self.queue.path,
                )

    # -- sending -------------------------------------------------------------------------
    async def _check_sink(self) -> None:
        """Ask the server whether our config works, once at start (the sends that follow
        report the same problems if it does not; this only says so before the first)."""
        check = getattr(self.sink, "check", None)
        if check is None:
            return
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.run_in_executor(self._sx, check)
        except ConfigurationError as e:
            self._on_config_error(e)
        except RetryableError as e:
            self._on_failure(e)
        except Exception as e:  # a sink bug: the sends will tell more
            log.exception("historian %s: start-up check failed", self.name)
            self._on_failure(e)
        else:
            log.info("historian %s: server accepts our config: %s", self.name, self.server)

    async def _sender(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = self.backoff_initial_s
        next_backlog = 0.0
        await self._check_sink()
        while True:
            # cleared before looking, so a batch queued meanwhile still wakes the wait below
            self._enqueued.clear()
            batch: Batch | None = None
            backlog = False
            if self.queue.depth:
                cutoff = time.time() - self.live_window_s
                batch = await self._on_queue(self.queue.first_since, cutoff)
                if batch is None and loop.time() >= next_backlog:
                    batch = await self._on_queue(self.queue.first_before, cutoff)
                    backlog = batch is not None
            if batch is None:
                # Nothing eligible: wait for new data or the next backlog slot; re-check at
                # least every second because live batches age into the backlog.
                wait = 1.0
                if self.queue.depth:
                    wait = min(wait, max(0.0, next_backlog - loop.time()))
                try:
                    await asyncio.wait_for(self._enqueued.wait(), timeout=max(wait, 0.001))
                except TimeoutError:
                    pass
                continue
            try:
                await loop.run_in_executor(self._sx, self.sink.write, batch.payload)
            except ConfigurationError as e:
                self._on_config_error(e)
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2.0, self.backoff_max_s)
                continue
            except RetryableError as e:
                self._on_failure(e)
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2.0, self.backoff_max_s)
                continue
            except RejectedError as e:
                self.rejected_batches += 1
                self._m["rejected"].inc()
                log.error(
                    "historian %s: batch %d (%d lines) refused by the database and dropped "
                    "/ 数据库拒收该批数据, 已丢弃: %s",
                    self.name,
                    batch.id,
                    batch.lines,
                    e,
                )
            except Exception as e:  # a sink bug or a local disk error: keep the batch
                log.exception(
                    "historian %s: unexpected error sending batch %d", self.name, batch.id
                )
                self._on_failure(e)
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2.0, self.backoff_max_s)
                continue
            else:
                self._on_success(batch)
            backoff = self.backoff_initial_s
            await self._on_queue(self.queue.ack, batch.id)
            if backlog:
                next_backlog = max(next_backlog, loop.time()) + 1.0 / self.drain_rate

    def _on_config_error(self, e: ConfigurationError) -> None:
        self.send_failures += 1
        self._m["failures"].inc()
        msg = str(e)
        if msg != self.config_error:
            # once per distinct answer: a person must act, repeating it helps nobody
            log.error(
                "historian %s: CONFIGURATION ERROR, keeping data on disk (%d batches queued) "
                "until it is fixed / 历史库配置错误, 数据暂存本地: %s",
                self.name,
                self.queue.depth,
                msg,
            )
        self.config_error = msg
        # it answered, so it is not an outage
        self.outage_since = None

    def _on_failure(self, e: Exception) -> None:
        self.send_failures += 1
        self._m["failures"].inc()
        if self.outage_since is None:
            self.outage_since = time.time()
            log.warning(
                "historian %s unreachable, keeping data on disk (%d batches queued) "
                "/ 历史库不可达, 数据暂存本地: %s",
                self.name,
                self.queue.depth,
                e,
            )

    def _on_success(self, batch: Batch) -> None:
        if self.config_error is not None:
            log.warning(
                "historian %s: the database accepts our writes now; draining %d queued batches "
                "/ 历史库配置问题已解决, 补传积压数据",
                self.name,
                self.queue.depth,
            )
            self.config_error = None
        self.sent_batches += 1
        self.sent_lines += batch.lines
        self._m["sent_batches"].inc()
        self._m["sent_lines"].inc(batch.lines)
        if self.outage_since is not None:
            log.warning(
                "historian %s back after %.0f s; draining %d queued batches at %.1f/s "
                "/ 历史库恢复, 补传积压数据",
                self.name,
                time.time() - self.outage_since,
                self.queue.depth,
                self.drain_rate,
            )
            self.outage_since = None

    # -- helpers -------------------------------------------------------------------------
    async def _on_queue(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._qx, fn, *args)

    async def on_sink_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the sink's thread (e.g. the embedded store's retention)."""
        return await asyncio.get_running_loop().run_in_executor(self._sx, fn, *args)

    async def wait_empty(self, timeout_s: float) -> bool:
        """True once nothing is pending and the disk queue is empty (polls, with a deadline)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if not self._pending and self.queue.depth == 0:
                return True
            self._flush_now.set()
            await asyncio.sleep(0.02)
        return not self._pending and self.queue.depth == 0

    @property
    def depth(self) -> int:
        return self.queue.depth

    @property
    def oldest_age(self) -> float:
        return self.queue.oldest_age
