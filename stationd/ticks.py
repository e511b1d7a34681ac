"""Wall-clock-aligned ticks: the one clock every station and sink agrees on.

Ticks fall on multiples of the interval (t = n * interval, UNIX time), so two replicas
polling the same station stamp identical times and InfluxDB folds their points. The
deadline of each tick is computed from the tick itself, never from when the work ended:
sleeping "interval after the work" drifts (STYLE.md, poller habits).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable


def tick_floor(t: float, interval: float) -> float:
    """The tick at or before wall time t."""
    return math.floor(t / interval + 1e-9) * interval


def next_tick(t: float, interval: float) -> float:
    """The first tick strictly after wall time t."""
    return tick_floor(t, interval) + interval


class TickClock:
    """Broadcasts tick times to every waiting station task.

    Each tick resolves one shared future; a station that is busy (connecting, backing off)
    simply misses the ticks that pass meanwhile: misses are counted by the fleet frame,
    never queued.
    """

    def __init__(self, interval: float, wall: Callable[[], float] = time.time) -> None:
        self.interval = interval
        self.wall = wall
        self.current: float = float("nan")  # the open tick
        self._next: asyncio.Future[float] | None = None
        self.ticks = 0
        self.skipped = 0  # ticks the loop itself was too late to open (loop lag, clock step)
        self.clock_steps = 0  # backward wall-clock steps seen (NTP step, operator)

    def _future(self) -> asyncio.Future[float]:
        if self._next is None or self._next.done():
            self._next = asyncio.get_running_loop().create_future()
        return self._next

    async def wait_next(self) -> float:
        """Wait for the next tick to open; returns its time."""
        return await asyncio.shield(self._future())

    def open(self, tick: float) -> None:
        self.current = tick
        self.ticks += 1
        fut = self._future()
        fut.set_result(tick)

    async def sleep_until(self, wall_t: float) -> bool:
        """Sleep until wall time wall_t. Re-checks the clock at least once a second, so a
        clock step cannot make us oversleep by much. Returns False if the wall clock
        stepped backwards so far that wall_t is more than an interval + 1 s away: the
        caller realigns instead of stalling the fleet for the size of the step."""
        limit = self.interval + 1.0
        while True:
            delay = wall_t - self.wall()
            if delay <= 0:
                return True
            if delay > limit:
                self.clock_steps += 1
                return False
            await asyncio.sleep(min(delay, 1.0))
