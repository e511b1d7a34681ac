"""`stationd demo`: a simulated fleet plus the daemon, live in the terminal.

The demo lives with the simulator it runs (tools/), above the daemon: stationd's CLI
offers it through the `stationd.commands` entry point (pyproject.toml), so the daemon's
own code never imports the simulator. `add_parser` is light; the demo's modules load only
when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `demo` to the stationd CLI's subparsers (the `stationd.commands` entry point)."""
    d = sub.add_parser("demo", help="simulated fleet + daemon, live view in the terminal")
    d.add_argument("--config", type=Path, default=Path("config/stations.yaml"))
    d.add_argument("--speed", type=float, default=1.0, help="plant time runs this much faster")
    d.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    d.add_argument("--state-dir", type=Path, default=None)
    d.set_defaults(func=main)
    return d


def main(args: argparse.Namespace) -> int:
    from stationd.config import ConfigError, load_config
    from tools.demo.run import run_demo

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        return 2
    return asyncio.run(
        run_demo(cfg, speed=args.speed, duration=args.duration, state_dir=args.state_dir)
    )
