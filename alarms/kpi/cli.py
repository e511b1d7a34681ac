"""`stationd kpi --from --to`: the alarm-system KPIs of a period, read from the dispatch log.

Also `kpi_fields()`, the same figures over a rolling window for the historian's `daemon`
measurement. Reading is safe while the daemon runs (the log is SQLite in WAL mode).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alarms.dispatch_log import query_log
from alarms.files import LOG_FILE, alarm_dir
from alarms.kpi.history import build_history
from alarms.kpi.measures import KpiReport, compute_kpis
from alarms.kpi.report import render_text, report_fields, report_json
from alarms.playbooks import PlaybookLibrary, load_playbooks
from stationd import state
from stationd.state import ALARMS_SUBDIR

#: how far before the period the log is read: long enough to see when a stale alarm
#: began and to carry a flood or an open incident into the period (shelving is ≤ 36 h)
LOOKBACK_S = 35 * 86400.0
#: the log is read whole within the look-back; a bound keeps a runaway log from eating RAM
MAX_ENTRIES = 5_000_000


def resolve_log_dir(state_dir: Path) -> Path:
    """The directory holding the dispatch log for a daemon's state dir (alarms/files.py);
    FileNotFoundError naming both places looked at when there is none."""
    found = alarm_dir(state_dir)
    if not (found / LOG_FILE).exists():
        raise FileNotFoundError(
            f"no dispatch log ({LOG_FILE}) in {state_dir} or {Path(state_dir) / ALARMS_SUBDIR}: "
            "give the daemon's --state-dir (or $STATE_DIRECTORY) / 未找到调度日志"
        )
    return found


def kpi_report(
    state_dir: Path,
    since: float,
    until: float,
    *,
    operators: int = 1,
    playbooks: PlaybookLibrary | None = None,
    lookback_s: float = LOOKBACK_S,
) -> KpiReport:
    """Every KPI of [since, until) from the dispatch log under `state_dir` (blocking I/O:
    async callers use asyncio.to_thread)."""
    entries = query_log(
        resolve_log_dir(Path(state_dir)),
        since=since - lookback_s,
        until=until,
        kinds=("transition", "step"),
        limit=MAX_ENTRIES,
    )
    history = build_history(entries)
    return compute_kpis(history, since, until, playbooks or load_playbooks(), operators)


def kpi_fields(
    state_dir: Path,
    now: float | None = None,
    window_s: float = 86400.0,
    *,
    operators: int = 1,
    playbooks: PlaybookLibrary | None = None,
) -> dict[str, float]:
    """The KPIs of the last `window_s` seconds as `daemon` measurement fields; the daemon
    writes them hourly: `historian.write_daemon(await asyncio.to_thread(kpi_fields, dir))`."""
    until = time.time() if now is None else now
    r = kpi_report(state_dir, until - window_s, until, operators=operators, playbooks=playbooks)
    out = report_fields(r)
    out["kpi_window_h"] = window_s / 3600.0
    return out


def parse_time(text: str) -> float:
    """Unix seconds, ISO 8601 (`2026-11-16`, `2026-11-16T08:00+08:00`, `...Z`; without an
    offset it is local time), `now`, or relative to now: `-7d`, `-12h`, `-30m`."""
    s = text.strip()
    if s == "now":
        return time.time()
    if s.startswith("-") and s[-1:] in ("d", "h", "m") and s[1:-1].replace(".", "").isdigit():
        unit = {"d": 86400.0, "h": 3600.0, "m": 60.0}[s[-1]]
        return time.time() - float(s[1:-1]) * unit
    try:
        return float(s)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"bad time {text!r}: use 2026-11-16, 2026-11-16T08:00+08:00, unix seconds or -7d"
        ) from e
    if dt.tzinfo is None:
        dt = dt.astimezone()  # local time, as a dispatcher reads a wall clock
    return dt.timestamp()


def add_kpi_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """`stationd kpi`: add to stationd/cli.py's subparsers."""
    k = subparsers.add_parser(
        "kpi",
        help="alarm-system KPIs (ISA-18.2) of a period / 报警系统指标",
        description="Alarm-system KPIs after ISA-18.2 from the dispatch log: alarms per "
        "operator-hour, floods, chattering, stale, top ten, priorities, time to acknowledge, "
        "playbook steps on time. 报警系统指标（ISA-18.2）。",
    )
    k.add_argument(
        "--from",
        dest="since",
        type=parse_time,
        default=None,
        help="start (ISO 8601, unix s, or -7d); default: 24 h before --to",
    )
    k.add_argument(
        "--to", dest="until", type=parse_time, default=None, help="end (exclusive); default: now"
    )
    k.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the daemon's state dir (default: $STATE_DIRECTORY, else ./state; see stationd/state.py)",
    )
    k.add_argument(
        "--operators", type=int, default=1, help="operator positions sharing the load (default 1)"
    )
    k.add_argument("--playbook-dir", type=Path, default=None, help="playbooks (default: shipped)")
    k.add_argument("--site", default="", help="site name for the heading")
    k.add_argument("--json", action="store_true", help="print JSON (schema alarms.kpi/1)")
    k.set_defaults(func=kpi_main)
    return k


def kpi_main(args: argparse.Namespace) -> int:
    until = args.until if args.until is not None else time.time()
    since = args.since if args.since is not None else until - timedelta(days=1).total_seconds()
    if since >= until:
        print(
            f"--from ({_iso(since)}) must be before --to ({_iso(until)}) / 开始时间须早于结束时间",
            file=sys.stderr,
        )
        return 2
    if args.operators < 1:
        print("--operators must be at least 1 / 操作台数至少为 1", file=sys.stderr)
        return 2
    state_dir = state.resolve(args.state_dir)
    try:
        playbooks = load_playbooks(args.playbook_dir) if args.playbook_dir else None
        r = kpi_report(state_dir, since, until, operators=args.operators, playbooks=playbooks)
    except (FileNotFoundError, ValueError) as e:
        print(f"stationd kpi: {e}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(report_json(r, args.site), sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(r, args.site))
    return 0


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()
