"""The automatic daily reports: at 09:00 and 17:00 site time, as a task the daemon owns.

    sched = ReportScheduler(cfg, state_dir, out_dir)          # tz: cfg.site.timezone
    tg.create_task(sched.run(daemon.stop_event))

Each wake-up recomputes the next slot from the wall clock (zoneinfo, so it is right across
midnight and daylight-saving changes) and sleeps at most `max_sleep_s` at a time, so a
clock step (NTP, a suspended VM) moves the schedule instead of silently skipping it. A
report runs `settle_s` after its slot, so the historian's last flush of the period is on
disk before it is read; the reading and writing happen on a worker thread, never on the
event loop. A failed report is logged and the next slot still runs. Slots missed while
the daemon was down are not made up automatically: `stationd report --from D1 --to D2`
does that.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from stationd.report.build import build_report, write_report
from stationd.report.data import Source, open_source
from stationd.report.period import Period, next_slot

log = logging.getLogger(__name__)


class ReportScheduler:
    def __init__(
        self,
        cfg: Any,
        state_dir: str | Path,
        out_dir: str | Path,
        tz: str | None = None,
        *,
        source: str = "auto",
        url: str | None = None,
        settle_s: float = 10.0,
        max_sleep_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.state_dir = Path(state_dir)
        self.out_dir = Path(out_dir)
        self.tz = ZoneInfo(tz or cfg.site.timezone)
        self.source_kind = source
        self.url = url
        self.settle_s = settle_s
        self.max_sleep_s = max_sleep_s
        self.clock = clock
        #: (period, paths) of every report written, newest last; failures count separately
        self.written: list[tuple[Period, list[Path]]] = []
        self.failures = 0

    def update_config(self, cfg: Any) -> None:
        """A config reload: the next report covers the new fleet."""
        self.cfg = cfg

    def next_due(self, now: float | None = None) -> Period:
        """The next report's period (its `end` is the slot time)."""
        t = self.clock() if now is None else now
        # a start within settle_s after a slot still owes that slot's report
        return next_slot(datetime.fromtimestamp(t - self.settle_s, UTC), self.tz)

    def generate(self, period: Period) -> list[Path]:
        """Build and write one report (blocking: call it on a worker thread)."""
        src: Source = open_source(self.cfg, self.state_dir, self.source_kind, self.url)
        try:
            report = build_report(self.cfg, period, src, self.state_dir)
        finally:
            src.close()
        return write_report(report, self.out_dir)

    async def run(self, stop_event: asyncio.Event) -> None:
        while not stop_event.is_set():
            period = self.next_due()
            due = period.t1 + self.settle_s
            log.info(
                "next daily report %s %s at %s / 下一次供热日报",
                period.day,
                period.slot,
                period.end.isoformat(),
            )
            while (delay := due - self.clock()) > 0:
                try:
                    await asyncio.wait_for(stop_event.wait(), min(delay, self.max_sleep_s))
                    return
                except TimeoutError:
                    pass
            t = time.monotonic()
            try:
                paths = await asyncio.to_thread(self.generate, period)
            except Exception:
                self.failures += 1
                log.exception(
                    "daily report %s %s failed / 供热日报生成失败", period.day, period.slot
                )
                continue
            self.written.append((period, paths))
            log.info(
                "daily report %s %s written in %.1f s: %s / 供热日报已生成",
                period.day,
                period.slot,
                time.monotonic() - t,
                paths[-1],
            )
