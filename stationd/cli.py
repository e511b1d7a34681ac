"""The `stationd` command line: one subcommand per job, each a thin call into its module."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from stationd.config import ConfigError, load_config, summary

DEFAULT_CONFIG = Path("config/stations.yaml")


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


def cmd_demo(args: argparse.Namespace) -> int:
    from stationd.demo import run_demo

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        return 2
    return asyncio.run(
        run_demo(cfg, speed=args.speed, duration=args.duration, state_dir=args.state_dir)
    )


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
    r.add_argument("--state-dir", type=Path, default=None, help="state (queues, alarms, history)")
    r.add_argument("--shard", default=None, help="k/n: poll only this shard of the fleet")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="simulated fleet + daemon, live view in the terminal")
    d.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    d.add_argument("--speed", type=float, default=1.0, help="plant time runs this much faster")
    d.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    d.add_argument("--state-dir", type=Path, default=None)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
