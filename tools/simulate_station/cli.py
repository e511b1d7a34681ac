"""Command line of `simulate-station`: run a simulated fleet, generate one, send it faults.

    simulate-station run --config config/stations.yaml [--speed N] [--scenario FILE]
                         [--control-port P] [--seed S] [--port-offset O] [--fault KIND:k=v,...]
                         [--write-config FILE]
    simulate-station generate --count 500 --out fleet.yaml [--opcua-share 0.2] [--ports 4]
    simulate-station fault --control 127.0.0.1:P inject KIND [--station ID] [--size X] ...
    simulate-station fault --control 127.0.0.1:P clear ID
    simulate-station fault --control 127.0.0.1:P truth

`run` prints one line per server, then `READY` (tests and the demo wait for it), and stops
cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tools.simulate_station.faults import FAULT_KINDS, Fault, ScenarioError, load_scenario

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "stations.yaml"


def _parse_fault_flag(text: str) -> Fault:
    """`KIND[:key=value,...]`, e.g. `secondary_leak:station=hs001,size=1.0,at=600`."""
    kind, _, rest = text.partition(":")
    data: dict[str, Any] = {"kind": kind}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError(f"--fault {text}: expected key=value, got {part!r}")
        data[key.strip()] = value.strip()
    try:
        return Fault.model_validate(data)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(f"--fault {text}: {exc.errors()[0]['msg']}") from exc


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simulate-station", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="serve simulated stations on Modbus TCP / OPC UA")
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    run.add_argument("--speed", type=float, default=1.0, help="plant seconds per wall second")
    run.add_argument("--scenario", type=Path, help="YAML with faults: [{at: seconds, kind, ...}]")
    run.add_argument(
        "--fault",
        type=_parse_fault_flag,
        action="append",
        default=[],
        help="KIND:key=value,... injected at start (or at=seconds later)",
    )
    run.add_argument("--control-port", type=int, default=8765, help="0 picks a free port")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--port-offset", type=int, default=0, help="added to every Modbus/OPC UA port")
    run.add_argument("--outdoor-base", type=float, default=-5.0, help="°C, the day's mean")
    run.add_argument(
        "--update-interval", type=float, default=0.5, help="wall seconds between updates"
    )
    run.add_argument(
        "--write-config",
        type=Path,
        help="write the fleet on its actual (offset) ports here, for the daemon to poll",
    )
    run.add_argument("-v", "--verbose", action="store_true")

    gen = sub.add_parser("generate", help="write a generated fleet stations.yaml")
    gen.add_argument("--count", type=int, required=True)
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--opcua-share", type=float, default=0.2)
    gen.add_argument("--ports", type=int, default=4)
    gen.add_argument(
        "--templates",
        type=Path,
        default=DEFAULT_CONFIG,
        help="stations.yaml whose site, defaults and templates are reused",
    )
    gen.add_argument("--modbus-port", type=int, default=15020)
    gen.add_argument("--opcua-port", type=int, default=14840)
    gen.add_argument("--seed", type=int, default=0)

    fault = sub.add_parser("fault", help="talk to a running simulator's control API")
    fault.add_argument(
        "--control",
        default="127.0.0.1:8765",
        help="HOST:PORT (or http://HOST:PORT) of the control API",
    )
    fsub = fault.add_subparsers(dest="action", required=True)
    inj = fsub.add_parser("inject")
    inj.add_argument("kind", choices=FAULT_KINDS)
    for key in ("station", "branch", "source", "feeder", "signal", "id"):
        inj.add_argument(f"--{key}")
    inj.add_argument("--size", type=float)
    inj.add_argument("--duration", type=float)
    inj.add_argument("--no-ups", action="store_true", help="power_loss: the PLC goes dark too")
    clr = fsub.add_parser("clear")
    clr.add_argument("fault_id")
    fsub.add_parser("truth")
    fsub.add_parser("state")
    return p


async def _run(args: argparse.Namespace) -> int:
    from stationd.config import ConfigError, load_config
    from tools.simulate_station.simulator import Simulator

    try:
        cfg = load_config(args.config)
        scenario = load_scenario(args.scenario) if args.scenario else []
    except (ConfigError, ScenarioError) as exc:
        print(f"simulate-station: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sim = Simulator(
        cfg,
        speed=args.speed,
        seed=args.seed,
        port_offset=args.port_offset,
        control_port=args.control_port,
        scenario=scenario + list(args.fault),
        update_interval=args.update_interval,
        outdoor_base_c=args.outdoor_base,
    )
    async with sim:
        if args.write_config:
            from tools.simulate_station.simulator import dump_config

            dump_config(sim.config_on_ports(), args.write_config)
            print(f"config {args.write_config}", flush=True)
        for line in sim.describe():
            print(line, flush=True)
        print(
            f"plant speed x{sim.speed:g}, seed {args.seed}, {len(cfg.stations)} stations",
            flush=True,
        )
        print("READY", flush=True)
        await stop.wait()
    print("stopped", flush=True)
    return 0


def _control(args: argparse.Namespace) -> int:
    # HOST:PORT or the full URL the simulator prints on its `control` line
    base = args.control.rstrip("/")
    if "://" not in base:
        base = f"http://{base}"
    if args.action == "inject":
        body = {
            k: getattr(args, k)
            for k in (
                "kind",
                "station",
                "branch",
                "source",
                "feeder",
                "signal",
                "id",
                "size",
                "duration",
            )
            if getattr(args, k) is not None
        }
        if args.no_ups:
            body["ups"] = False
        req = urllib.request.Request(
            f"{base}/faults",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
    elif args.action == "clear":
        req = urllib.request.Request(f"{base}/faults/{args.fault_id}", method="DELETE")
    else:
        req = urllib.request.Request(f"{base}/{args.action}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            print(json.dumps(json.loads(resp.read()), ensure_ascii=False, indent=2))
            return 0
    except urllib.error.HTTPError as exc:
        print(
            f"simulate-station: {exc.code}: {exc.read().decode(errors='replace')}", file=sys.stderr
        )
        return 1
    except OSError as exc:
        print(f"simulate-station: cannot reach the control API at {base}: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "generate":
        from tools.simulate_station.generate import generate, write_fleet

        fleet = generate(
            args.templates,
            args.count,
            opcua_share=args.opcua_share,
            ports=args.ports,
            modbus_base_port=args.modbus_port,
            opcua_port=args.opcua_port,
            seed=args.seed,
        )
        write_fleet(args.out, fleet)
        print(f"wrote {args.out}: {args.count} stations")
        return 0
    if args.command == "fault":
        return _control(args)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # pymodbus logs every unanswered request of a station we switched off: keep it quiet
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
