"""Polling: one supervisor per station, one tick loop for the fleet.

The supervisor is the only reconnect policy (capped exponential backoff with full jitter;
the protocol libraries' own reconnects are off). Every network call sits inside
asyncio.timeout with a deadline shorter than the interval, so a dead or slow station
can never delay another station or the next tick. Results are staged into the fleet
frame under the tick time they were requested for; a result that arrives after its tick
was committed is counted as late and dropped, never queued. Each station starts its read
at a stable offset into the tick (`defaults.poll_spread`), so a large fleet's requests
reach the gateways spread out rather than in one burst; the sample keeps the tick time.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from drivers.base import Driver, PermanentError, TransientError
from stationd import signals
from stationd.config import AnyStation, Config
from stationd.frame import FleetFrame
from stationd.ticks import TickClock, next_tick

log = logging.getLogger(__name__)

DriverFactory = Callable[[AnyStation, Config], Driver]
TickHandler = Callable[[float, "TickReport"], Awaitable[None]]


class LinkState(enum.IntEnum):
    DISCONNECTED = 0
    CONNECTING = 1
    CONNECTED = 2
    BACKOFF = 3
    FAILED = 4  # permanent error: needs a config change, retried slowly


@dataclass(slots=True)
class TickReport:
    """What one committed tick carried, for sinks (historian, detection, status)."""

    tick: float
    answered: int
    stations: int
    late: int
    extras: dict[int, np.ndarray] = field(default_factory=dict)  # station -> extra values
    clock_stepped: bool = False  # the wall clock stepped back before this tick


@dataclass(frozen=True, slots=True)
class PollStats:
    """The poller's figures at one moment, for /metrics: per station (in fleet order) and
    for the tick loop. Read at scrape time; the tick path pays nothing for them."""

    station_ids: tuple[str, ...]
    latency_s: np.ndarray  # last read latency; NaN before the first read
    consecutive_misses: np.ndarray  # ticks without a good sample
    up: np.ndarray  # bool: answered the last tick
    good_ratio: np.ndarray  # share of the station's canonical signals with good quality
    reconnects: np.ndarray
    read_failures: np.ndarray
    ticks: int
    ticks_skipped: int
    clock_steps: int
    late_results: int
    handler_overruns: int


class StationSupervisor:
    """Owns one station's driver: connect, read on each tick, back off on failure."""

    def __init__(
        self, index: int, station: AnyStation, cfg: Config, driver: Driver, poller: Poller
    ) -> None:
        self.index = index
        self.station = station
        self.cfg = cfg
        self.driver = driver
        self.poller = poller
        self.state = LinkState.DISCONNECTED
        self.retry_at = 0.0  # loop time before which no connect is tried
        self.attempt = 0
        self.last_error = ""
        sig = station.signals
        n_canon = sum(1 for s in sig if s in signals.INDEX)
        # Plan once: where each read value goes in the frame row.
        self.frame_cols = np.array([signals.INDEX[s] for s in sig[:n_canon]], dtype=np.intp)
        self.n_canon = n_canon
        self.has_extras = len(sig) > n_canon
        self._row = np.full(signals.K, np.nan)
        self._rng = random.Random(hash(station.id))
        # A stable start offset within the tick (defaults.poll_spread): crc32 of the id,
        # not hash(), so a station keeps its slot across restarts.
        slot = zlib.crc32(station.id.encode()) / 2**32
        self.start_offset = cfg.defaults.poll_spread * cfg.defaults.timeout * slot

    def _backoff(self) -> float:
        d = self.cfg.defaults
        cap = min(d.backoff_max, d.backoff_initial * (2 ** min(self.attempt, 16)))
        # Full jitter (AWS architecture blog): spreads a fleet's reconnects after an outage.
        return d.backoff_initial * 0.5 + self._rng.uniform(0, cap)

    async def _drop(self, reason: str, permanent: bool = False) -> None:
        loop = asyncio.get_running_loop()
        if self.state == LinkState.CONNECTED:
            log.warning("station=%s link lost: %s", self.station.id, reason)
        self.last_error = reason
        self.attempt += 1
        self.state = LinkState.FAILED if permanent else LinkState.BACKOFF
        delay = self.cfg.defaults.backoff_max if permanent else self._backoff()
        self.retry_at = loop.time() + delay
        try:
            async with asyncio.timeout(self.cfg.defaults.timeout):
                await self.driver.close()
        except (TimeoutError, Exception):  # close must never take the supervisor down
            log.debug("station=%s close failed", self.station.id, exc_info=True)

    async def _connect(self) -> bool:
        self.state = LinkState.CONNECTING
        try:
            async with asyncio.timeout(self.cfg.defaults.connect_timeout):
                await self.driver.connect()
        except PermanentError as exc:
            await self._drop(f"connect refused for good: {exc}", permanent=True)
            log.error(
                "station=%s endpoint=%s %s", self.station.id, self.station.endpoint_label, exc
            )
            return False
        except (TimeoutError, TransientError, OSError) as exc:
            await self._drop(f"connect failed: {exc or type(exc).__name__}")
            return False
        if self.attempt:
            self.poller.reconnects[self.index] += 1
            log.info("station=%s reconnected after %d attempts", self.station.id, self.attempt)
        self.state = LinkState.CONNECTED
        self.attempt = 0
        self.last_error = ""
        return True

    async def run(self) -> None:
        clock = self.poller.clock
        loop = asyncio.get_running_loop()
        timeout = self.cfg.defaults.timeout
        while True:
            tick = await clock.wait_next()
            if self.start_offset:
                await clock.sleep_until(tick + self.start_offset)
            if self.state != LinkState.CONNECTED:
                if loop.time() < self.retry_at:
                    continue
                if not await self._connect():
                    continue
            t0 = loop.time()
            # The deadline belongs to the tick, not to when this task woke up.
            deadline = t0 + max(0.0, tick + timeout - clock.wall())
            try:
                async with asyncio.timeout_at(deadline):
                    result = await self.driver.read()
            except PermanentError as exc:
                await self._drop(str(exc), permanent=True)
                continue
            except (TimeoutError, TransientError, OSError) as exc:
                self.poller.read_failures[self.index] += 1
                await self._drop(f"read failed: {exc or type(exc).__name__}")
                continue
            except Exception as exc:
                # A driver bug or a reply it could not parse: this station reconnects, the
                # daemon and every other station carry on.
                log.exception("station=%s unexpected read error", self.station.id)
                self.poller.read_failures[self.index] += 1
                await self._drop(f"unexpected {type(exc).__name__}: {exc}")
                continue
            self.poller.latency[self.index] = loop.time() - t0
            self.poller.stage(self, tick, result.values)


class Poller:
    """The fleet tick loop: opens a tick, waits for the reads' deadline, commits the frame."""

    def __init__(
        self,
        cfg: Config,
        frame: FleetFrame,
        driver_factory: DriverFactory,
        on_tick: TickHandler | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.frame = frame
        self.clock = TickClock(cfg.defaults.interval, wall)
        self.on_tick = on_tick
        self.driver_factory = driver_factory
        n = len(cfg.stations)
        self.latency = np.full(n, np.nan)
        self.reconnects = np.zeros(n, dtype=np.int64)
        self.read_failures = np.zeros(n, dtype=np.int64)
        self.late = 0  # results that arrived after their tick closed
        self.handler_overruns = 0  # ticks whose sinks ran into the next tick
        self.first_full_poll = asyncio.Event()
        self._extras: dict[int, np.ndarray] = {}
        self._closed_tick = float("nan")
        # one task per station id while run() is running; reconfigure() swaps entries
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running = False
        self.supervisors = [
            StationSupervisor(i, st, cfg, driver_factory(st, cfg), self)
            for i, st in enumerate(cfg.stations)
        ]
        if [s.id for s in cfg.stations] != frame.station_ids:
            raise ValueError("frame stations must match config stations, in order")

    def stage(self, sup: StationSupervisor, tick: float, values: np.ndarray) -> None:
        if tick != self.clock.current or self._closed_tick == tick:
            self.late += 1
            return
        row = sup._row
        row.fill(np.nan)
        row[sup.frame_cols] = values[: sup.n_canon]
        self.frame.put(sup.index, row)
        if sup.has_extras:
            self._extras[sup.index] = values[sup.n_canon :].copy()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run supervisors and the tick loop until `stop` is set (or cancelled)."""
        stop = stop or asyncio.Event()
        d = self.cfg.defaults
        # Commit a little after the read deadline so reads that finish at it are in.
        grace = min(0.05, (d.interval - d.timeout) / 2)
        self._running = True
        for sup in self.supervisors:
            self._start(sup)
        try:
            await self._tick_loop(stop, grace)
        finally:
            self._running = False
            tasks, self._tasks = list(self._tasks.values()), {}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, sup: StationSupervisor) -> None:
        self._tasks[sup.station.id] = asyncio.create_task(
            sup.run(), name=f"station-{sup.station.id}"
        )

    def reconfigure(
        self, cfg: Config, frame: FleetFrame, restart: set[str]
    ) -> list[StationSupervisor]:
        """Switch to a reloaded fleet between two ticks (called from the tick handler).

        Supervisors of stations kept and not in `restart` carry on with their connection
        and counters; the others are replaced by fresh ones. Returns the retired
        supervisors, whose tasks are cancelled here: the caller closes their drivers
        (`retire`) off the tick path. `cfg.defaults` must be unchanged (the clock stays).
        """
        if [s.id for s in cfg.stations] != frame.station_ids:
            raise ValueError("frame stations must match config stations, in order")
        old = {sup.station.id: sup for sup in self.supervisors}
        n = len(cfg.stations)
        latency = np.full(n, np.nan)
        reconnects = np.zeros(n, dtype=np.int64)
        read_failures = np.zeros(n, dtype=np.int64)
        sups: list[StationSupervisor] = []
        for i, st in enumerate(cfg.stations):
            sup = old.pop(st.id, None) if st.id not in restart else None
            if sup is not None:
                latency[i] = self.latency[sup.index]
                reconnects[i] = self.reconnects[sup.index]
                read_failures[i] = self.read_failures[sup.index]
                sup.index = i
            else:
                sup = StationSupervisor(i, st, cfg, self.driver_factory(st, cfg), self)
            sups.append(sup)
        retired = list(old.values())  # removed stations and the replaced (restarted) ones
        for sup in retired:
            task = self._tasks.pop(sup.station.id, None)
            if task is not None:
                task.cancel()
        self.cfg, self.frame, self.supervisors = cfg, frame, sups
        self.latency, self.reconnects, self.read_failures = latency, reconnects, read_failures
        # what was staged for the open tick belonged to the old index: drop it
        self._extras = {}
        if self._running:
            for sup in sups:
                if sup.station.id not in self._tasks:
                    self._start(sup)
        return retired

    async def retire(self, supervisors: list[StationSupervisor]) -> None:
        """Close the drivers of supervisors taken out by reconfigure(), in parallel."""
        await self._close_all(supervisors)

    async def _tick_loop(self, stop: asyncio.Event, grace: float) -> None:
        d = self.cfg.defaults
        clock = self.clock
        tick = next_tick(clock.wall(), d.interval)
        stepped = False
        while not stop.is_set():
            if not await self._sleep_or_stop(tick, stop):
                if stop.is_set():
                    break
                log.warning("wall clock stepped back %.1fs: realigning ticks", tick - clock.wall())
                tick = next_tick(clock.wall(), d.interval)
                stepped = True
                continue
            now = clock.wall()
            if now - tick > d.timeout:
                # We woke too late to give stations their full timeout: skip, count, realign.
                missed = int((now - tick) // d.interval) + 1
                clock.skipped += missed
                log.warning("tick loop %.3fs late: skipped %d tick(s)", now - tick, missed)
                tick = next_tick(now, d.interval)
                continue
            clock.open(tick)
            await clock.sleep_until(tick + d.timeout + grace)
            self._closed_tick = tick
            answered = int(self.frame.staged.sum())
            report = TickReport(tick, answered, self.frame.n, self.late, self._extras, stepped)
            self._extras = {}
            stepped = False
            self.frame.commit(tick)
            if answered == self.frame.n and not self.first_full_poll.is_set():
                self.first_full_poll.set()
            if self.on_tick is not None:
                await self.on_tick(tick, report)
            if clock.wall() > tick + d.interval:
                self.handler_overruns += 1
            tick += d.interval

    async def _sleep_or_stop(self, tick: float, stop: asyncio.Event) -> bool:
        """Sleep until the next tick opens, waking early on stop: a stop between ticks
        must not wait a whole interval (SIGTERM has the unit's TimeoutStopSec)."""
        sleeper = asyncio.ensure_future(self.clock.sleep_until(tick))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((sleeper, stopper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (sleeper, stopper):
                t.cancel()
            await asyncio.gather(sleeper, stopper, return_exceptions=True)
        if sleeper.done() and not sleeper.cancelled() and sleeper.exception() is None:
            return sleeper.result()
        return False

    def stats(self) -> PollStats:
        """The poller's figures now (PollStats), for the health endpoint."""
        frame = self.frame
        latest = frame.latest()
        misses = frame.consecutive_misses.copy()
        good = np.full(len(self.supervisors), np.nan)
        for i, sup in enumerate(self.supervisors):
            if len(sup.frame_cols):
                row = latest[i, sup.frame_cols]
                good[i] = float((row == row).sum()) / len(sup.frame_cols)
        return PollStats(
            station_ids=tuple(s.station.id for s in self.supervisors),
            latency_s=self.latency.copy(),
            consecutive_misses=misses,
            up=(misses == 0) & bool(frame.count),
            good_ratio=good,
            reconnects=self.reconnects.copy(),
            read_failures=self.read_failures.copy(),
            ticks=self.clock.ticks,
            ticks_skipped=self.clock.skipped,
            clock_steps=self.clock.clock_steps,
            late_results=self.late,
            handler_overruns=self.handler_overruns,
        )

    async def write(self, station_id: str, signal: str, value: float) -> None:
        """Write one point through the station's own connection (control only)."""
        sup = self.supervisors[self.frame.index[station_id]]
        if sup.state != LinkState.CONNECTED:
            raise TransientError(station_id, f"not connected ({sup.state.name})")
        async with asyncio.timeout(self.cfg.defaults.timeout):
            await sup.driver.write(signal, value)

    async def close(self) -> None:
        await self._close_all(self.supervisors)

    async def _close_all(self, supervisors: list[StationSupervisor]) -> None:
        # In parallel: 1,000 sequential closes of dead links would outlast TimeoutStopSec.
        async def one(sup: StationSupervisor) -> None:
            try:
                async with asyncio.timeout(self.cfg.defaults.timeout):
                    await sup.driver.close()
            except (TimeoutError, Exception):
                log.debug("station=%s close failed", sup.station.id, exc_info=True)

        await asyncio.gather(*(one(sup) for sup in supervisors))
