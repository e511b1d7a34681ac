"""`stationd report`: one daily report, or a backfill of many, from the command line.

    stationd report --date 2026-11-20 --at 09:00
    stationd report --from 2026-11-01 --to 2026-11-20            # both slots, each day
    stationd report --source vm --url http://127.0.0.1:8428 --date 2026-11-20 --at 17:00

Reads the history from the store `historian:` configures (the embedded store, InfluxDB
through InfluxQL, or VictoriaMetrics; `--source` overrides), the alarm side's files under
the state dir, and writes CSV, XLSX and HTML into --out-dir (default <state>/reports).
A backfill prints one progress line per report on stderr. Exit code: 0 done, 1 a report
failed, 2 bad arguments, config or a missing history store.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from stationd import state
from stationd.historian.reader import READER_KINDS
from stationd.report.build import build_report, write_report
from stationd.report.data import open_source
from stationd.report.period import SLOTS, Period, days, period_for

log = logging.getLogger(__name__)


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `report` to the stationd CLI's subparsers."""
    p = subparsers.add_parser(
        "report",
        help="daily heating report (供热日报): CSV, XLSX and HTML for 09:00 / 17:00",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--config", type=Path, default=Path("config/stations.yaml"))
    p.add_argument("--state-dir", type=Path, default=None, help="the daemon's state dir")
    p.add_argument("--out-dir", type=Path, default=None, help="default <state-dir>/reports")
    p.add_argument("--date", type=date.fromisoformat, default=None, help="YYYY-MM-DD (site)")
    p.add_argument("--at", choices=sorted(SLOTS), default=None, help="report slot (default: both)")
    p.add_argument("--from", dest="date_from", type=date.fromisoformat, default=None)
    p.add_argument("--to", dest="date_to", type=date.fromisoformat, default=None)
    p.add_argument(
        "--source",
        choices=READER_KINDS,
        default="auto",
        help="history store (default: as historian: is configured)",
    )
    p.add_argument("--url", default=None, help="server URL for --source influxql or vm")
    p.set_defaults(func=report_main)
    return p


def _periods(args: argparse.Namespace, tz: ZoneInfo, now: float) -> list[Period]:
    slots = [args.at] if args.at else sorted(SLOTS)
    if args.date_from or args.date_to:
        if args.date is not None:
            raise ValueError(
                "use either --date or --from/--to / --date 与 --from/--to 不能同时使用"
            )
        first = args.date_from or args.date_to
        last = args.date_to or args.date_from
        if last < first:
            raise ValueError(f"--to {last} is before --from {first}")
        dates = days(first, last)
    else:
        dates = [args.date or datetime.fromtimestamp(now, tz).date()]
    out = [period_for(d, s, tz) for d in dates for s in slots]
    # a report for a slot still in the future would be silently partial
    future = [p for p in out if p.t1 > now]
    if future and len(future) == len(out):
        p = future[0]
        raise ValueError(
            f"the {p.day} {p.slot} report's period ends in the future ({p.end.isoformat()}) "
            "/ 报表时段尚未结束"
        )
    if future:
        print(
            f"stationd report: skipping {len(future)} report(s) whose period has not ended "
            "/ 跳过尚未结束的报表时段",
            file=sys.stderr,
        )
    return [p for p in out if p.t1 <= now]


def report_main(args: argparse.Namespace) -> int:
    from stationd.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"stationd report: {e}", file=sys.stderr)
        return 2
    state_dir = state.resolve(args.state_dir, cfg.state_dir)
    out_dir = args.out_dir or state_dir / state.REPORTS_SUBDIR
    tz = ZoneInfo(cfg.site.timezone)
    try:
        periods = _periods(args, tz, time.time())
        source = open_source(cfg, state_dir, args.source, args.url)
    except (ValueError, OSError) as e:
        print(f"stationd report: {e}", file=sys.stderr)
        return 2
    backfill = len(periods) > 1
    failed = 0
    try:
        for n, period in enumerate(periods, start=1):
            t = time.monotonic()
            try:
                report = build_report(cfg, period, source, state_dir)
                paths = write_report(report, out_dir)
            except (OSError, sqlite3.Error) as e:
                failed += 1
                print(
                    f"[{n}/{len(periods)}] {period.day} {period.slot}: failed ({e}) / 生成失败",
                    file=sys.stderr,
                )
                continue
            if backfill:
                print(
                    f"[{n}/{len(periods)}] {period.day} {period.slot} -> {paths[-1]} "
                    f"({time.monotonic() - t:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
            else:
                for path in paths:
                    print(path)
    finally:
        source.close()
    return 1 if failed else 0
