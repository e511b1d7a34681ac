"""The `stationd` command line: one subcommand per job, each a thin call into its module."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from alarms.kpi import add_kpi_parser
from stationd import state
from stationd.config import ConfigError, load_config, summary
from stationd.dispatch_cli import add_dispatch_parsers
from stationd.historian.reader import READER_KINDS
from stationd.report import add_report_parser

DEFAULT_CONFIG = Path("config/stations.yaml")
STATE_DIR_HELP = (
    "the daemon's state dir (default: the config's state_dir:, else $STATE_DIRECTORY, "
    "else ./state; see stationd/state.py)"
)


def _setup_logging(level: str) -> None:
    # One event per line, key=value fields; journald adds its own timestamp.
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # The protocol libraries log every session open/close at INFO: too chatty for a
    # 24/7 journal. Their warnings still come through.
    for noisy in ("asyncua", "pymodbus"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        return 2
    print(f"{args.file}: OK — {summary(cfg)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from stationd.app import run_daemon

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        return 2
    return asyncio.run(run_daemon(cfg, state_dir=args.state_dir, shard=args.shard))


def cmd_reload(args: argparse.Namespace) -> int:
    from stationd.reload import ReloadError, send_reload

    state_dir = state.resolve(args.state_dir)
    try:
        pid = send_reload(state_dir)
    except ReloadError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"sent SIGHUP to stationd pid {pid}; the result is in its log (journalctl -u stationd)")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from stationd.replay import replay_main

    return replay_main(args.config, args.input, args.output, interval=args.interval)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from stationd.evaluate import evaluate_main

    return evaluate_main(
        args.config,
        args.output,
        interval=args.interval,
        seed=args.seed,
        only=args.only,
        baseline_days=args.baseline_days,
    )


def cmd_export(args: argparse.Namespace) -> int:
    from stationd.historian import export_main, open_reader

    cfg = None
    if args.config is not None:
        try:
            cfg = load_config(args.config)
        except ConfigError as exc:
            for err in exc.errors:
                print(err, file=sys.stderr)
            return 2
    state_dir = state.resolve(args.state_dir, cfg.state_dir if cfg is not None else None)
    if args.db is not None or (cfg is None and args.source in ("auto", "embedded")):
        return export_main(args.db or (state_dir / "history.db"), *_export_args(args))
    site, ids, section = "", [], None
    if cfg is not None:
        site, ids, section = cfg.site.id, [s.id for s in cfg.stations], cfg.historian
    try:
        reader = open_reader(section, site, ids, state_dir, args.source, args.url)
    except (ValueError, OSError) as exc:
        print(f"stationd export: {exc}", file=sys.stderr)
        return 2
    return export_main(reader, *_export_args(args))


def _export_args(args: argparse.Namespace) -> tuple[str | None, str | None, str, str]:
    return args.t_from, args.t_to, args.format, args.output


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stationd",
        description="换热站监控守护进程 — monitoring daemon for district-heating exchange stations",
    )
    p.add_argument("--log-level", default="INFO")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("check-config", help="validate stations.yaml (exit 2 with FILE:LINE key)")
    c.add_argument("file", type=Path)
    c.set_defaults(func=cmd_check_config)

    r = sub.add_parser("run", help="run the daemon in the foreground")
    r.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    r.add_argument("--state-dir", type=Path, default=None, help=STATE_DIR_HELP)
    r.add_argument("--shard", default=None, help="k/n: poll only this shard of the fleet")
    r.set_defaults(func=cmd_run)

    rl = sub.add_parser(
        "reload", help="reload stations.yaml and playbooks in the running daemon (SIGHUP)"
    )
    rl.add_argument("--state-dir", type=Path, default=None, help=STATE_DIR_HELP)
    rl.set_defaults(func=cmd_reload)

    rp = sub.add_parser(
        "replay", help="run the detectors over recorded data (CSV or line protocol) at full speed"
    )
    rp.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    rp.add_argument(
        "--input", type=Path, required=True, help="CSV (time,station,<signal>...) or .lp"
    )
    rp.add_argument("--output", default="-", help="findings.jsonl ('-' = stdout)")
    rp.add_argument(
        "--interval", type=float, default=None, help="tick of the data (default: inferred)"
    )
    rp.set_defaults(func=cmd_replay)

    ev = sub.add_parser(
        "evaluate",
        help="score detection on simulated faults: detected/missed, latency, false alarms",
    )
    ev.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ev.add_argument("--output", default=None, help="write the per-scenario results as JSON here")
    ev.add_argument("--interval", type=float, default=10.0, help="plant seconds per tick")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument(
        "--only", action="append", default=None, help="run only this scenario (repeatable)"
    )
    ev.add_argument("--baseline-days", type=float, default=1.0, help="fault-free days per station")
    ev.set_defaults(func=cmd_evaluate)

    ex = sub.add_parser(
        "export",
        help="export history (lp or csv) from the configured store: embedded, InfluxDB, "
        "VictoriaMetrics",
    )
    ex.add_argument(
        "--config", type=Path, default=None, help="read the store its historian: configures"
    )
    ex.add_argument("--state-dir", type=Path, default=None, help=STATE_DIR_HELP)
    ex.add_argument(
        "--db",
        type=Path,
        default=None,
        help="an embedded history.db (default: STATE_DIR/history.db)",
    )
    ex.add_argument(
        "--source",
        choices=READER_KINDS,
        default="auto",
        help="history store (default: as configured)",
    )
    ex.add_argument("--url", default=None, help="server URL for --source influxql or vm")
    ex.add_argument("--from", dest="t_from", default=None, help="RFC 3339 or unix seconds")
    ex.add_argument("--to", dest="t_to", default=None)
    ex.add_argument("--format", choices=["lp", "csv"], default="lp")
    ex.add_argument("--output", default="-")
    ex.set_defaults(func=cmd_export)

    add_kpi_parser(sub)
    add_report_parser(sub)
    add_dispatch_parsers(sub)
    _add_plugin_commands(sub)
    return p


def _add_plugin_commands(sub: Any) -> None:
    """Subcommands that live above the daemon (tools/: `demo`) register themselves as
    `stationd.commands` entry points (pyproject.toml): the CLI offers them without the
    daemon's code importing them."""
    for ep in sorted(entry_points(group="stationd.commands"), key=lambda e: e.name):
        try:
            add = ep.load()
        except ImportError as exc:  # a tool whose dependencies are not installed
            logging.getLogger(__name__).debug("stationd %s unavailable: %s", ep.name, exc)
            continue
        add(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
