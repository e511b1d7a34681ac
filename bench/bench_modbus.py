"""Benchmark: ModbusDriver.read() against a bare pymodbus client loop, same run, same load.

A pymodbus server runs in a SUBPROCESS (its own core) serving the `hx-plc-a` register map
for every unit id (SimDevice id=0) on 4 ports. For each fleet size, N stations each get
one connection and poll as fast as they can for a fixed time, first with the bare client
(the same block requests, no decoding, no quality), then with our driver (plan, buffers,
decode, quality); the two alternate over the rounds so drift hits both. Printed: requests
per second, client CPU per request, and our share of the bare figure (target >= 80 %).

    python bench/bench_modbus.py                    # 200 and 1000 stations, 5 s per run
    python bench/bench_modbus.py --stations 200 --seconds 3 --rounds 1

Then a paced run (every station once per tick at --hz, all started at the tick, as the
daemon polls) prints client CPU, p99 latency from the tick, and missed reads for both.
The machine is shared: the load average is printed, and the closed-loop figures are the
median over --rounds alternating runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from pymodbus.client import AsyncModbusTcpClient  # noqa: E402

from drivers.base import TransientError  # noqa: E402
from drivers.modbus import ModbusDriver  # noqa: E402
from stationd.config import Defaults, ModbusEndpoint, ModbusStation, load_config  # noqa: E402

N_PORTS = 4
# Modbus unit ids stop at 247: past 4 x 247 stations, ids repeat on a port (each station
# still has its own connection, which is what the benchmark measures).
UNITS_PER_PORT = 247
# Generous timeouts: under saturation a request waits behind every other connection's.
DEFAULTS = Defaults(interval=10.0, timeout=8.0, connect_timeout=8.0)


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def template_station() -> ModbusStation:
    cfg = load_config(ROOT / "config" / "stations.yaml")
    st = cfg.station("hs001")
    assert isinstance(st, ModbusStation)
    return st


# --- the server subprocess ------------------------------------------------------------------
async def serve(ports: list[int]) -> None:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    from drivers.decode import encode_registers

    station = template_station()
    regs: dict[int, int] = {}
    for k, (_sig, tag) in enumerate(sorted(station.tags.items())):
        value = 1.0 if tag.type == "bool" else (20 + k) * tag.scale  # fits every type
        words = encode_registers(tag, value)
        for j, w in enumerate(words):
            regs[tag.address + j] = regs.get(tag.address + j, 0) | w
    top = max(regs) + 1
    device = SimDevice(
        id=0,  # answers every unit id: one memory image stands for 1,000 stations
        simdata=[
            SimData(0, values=[regs.get(a, 0) for a in range(top)], datatype=DataType.REGISTERS)
        ],
    )
    servers = [ModbusTcpServer(device, address=("127.0.0.1", p)) for p in ports]
    for s in servers:
        await s.serve_forever(background=True)
    print("ready", flush=True)
    await asyncio.Event().wait()


def start_server(ports: list[int]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", ",".join(map(str, ports))],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != b"ready":
        proc.kill()
        raise RuntimeError(f"benchmark server did not start: {line!r}")
    return proc


# --- the two clients ------------------------------------------------------------------------
def fleet(station: ModbusStation, ports: list[int], n: int) -> list[ModbusStation]:
    out = []
    for i in range(n):
        port = ports[i % len(ports)]
        unit = 1 + (i // len(ports)) % UNITS_PER_PORT
        ep = ModbusEndpoint(host="127.0.0.1", port=port, unit_id=unit)
        out.append(station.model_copy(update={"id": f"b{i:04d}", "modbus": ep}))
    return out


Reader = Callable[[], Awaitable[object]]


async def bare_readers(stations: list[ModbusStation]) -> tuple[list[Reader], Callable[[], None]]:
    """The baseline: what a hand-written pymodbus poll loop does for the same blocks."""
    blocks = [(b.start, b.count) for b in ModbusDriver(stations[0], DEFAULTS).plan.blocks]
    clients = [
        AsyncModbusTcpClient(
            st.modbus.host,
            port=st.modbus.port,
            timeout=DEFAULTS.timeout,
            retries=0,
            reconnect_delay=0,
        )
        for st in stations
    ]
    await asyncio.gather(*(c.connect() for c in clients))

    def reader(client: AsyncModbusTcpClient, unit: int) -> Reader:
        async def read() -> object:
            rr = None
            for start, count in blocks:
                rr = await client.read_holding_registers(start, count=count, device_id=unit)
                if rr.isError():
                    raise RuntimeError(rr)
            return rr

        return read

    def close() -> None:
        for c in clients:
            c.close()

    return [reader(c, st.modbus.unit_id) for c, st in zip(clients, stations, strict=True)], close


async def our_readers(stations: list[ModbusStation]) -> tuple[list[Reader], Callable[[], None]]:
    drivers = [ModbusDriver(st, DEFAULTS) for st in stations]
    await asyncio.gather(*(d.connect() for d in drivers))

    def reader(driver: ModbusDriver) -> Reader:
        async def read() -> object:
            if not driver.connected:  # a read cut off by the tick deadline drops the link:
                await driver.connect()  # reconnect at once, as the supervisor would
            result = await driver.read()
            if np.count_nonzero(result.quality) != result.quality.size:
                raise RuntimeError(f"{driver.station_id}: bad quality")
            return result

        return read

    def close() -> None:
        for d in drivers:
            d._drop()

    return [reader(d) for d in drivers], close


MAKERS = {"bare": bare_readers, "ours": our_readers}


async def closed_loop(readers: list[Reader], seconds: float) -> tuple[int, float, float]:
    """Every station reads back to back: the most reads the pair of processes can do."""
    loop = asyncio.get_running_loop()
    counts = [0] * len(readers)

    async def poll(i: int, read: Reader, stop: float) -> None:
        while loop.time() < stop:
            await read()
            counts[i] += 1

    await asyncio.gather(*(poll(i, r, loop.time() + 0.5) for i, r in enumerate(readers)))  # warm
    counts[:] = [0] * len(readers)
    cpu0, t0 = time.process_time(), time.perf_counter()
    stop = loop.time() + seconds
    await asyncio.gather(*(poll(i, r, stop) for i, r in enumerate(readers)))
    return sum(counts), time.perf_counter() - t0, time.process_time() - cpu0


async def paced(readers: list[Reader], hz: float, seconds: float) -> tuple[float, float, int]:
    """The daemon's load: every station once per tick, all started at the tick. Returns
    client CPU (share of one core), p99 read latency from the tick (ms), missed reads."""
    loop = asyncio.get_running_loop()
    lat: list[float] = []
    missed = 0

    async def one(read: Reader, tick: float) -> None:
        nonlocal missed
        try:
            async with asyncio.timeout(1 / hz):
                await read()
            lat.append(loop.time() - tick)
        except (TimeoutError, TransientError):
            missed += 1

    period = 1 / hz
    first = loop.time() + period
    cpu0 = time.process_time()
    ticks = round(seconds * hz)
    for k in range(ticks):
        tick = first + k * period
        await asyncio.sleep(max(0.0, tick - loop.time()))
        await asyncio.gather(*(one(r, tick) for r in readers))
    cpu = (time.process_time() - cpu0) / (ticks * period)
    lat.sort()
    p99 = lat[int(0.99 * (len(lat) - 1))] * 1000 if lat else float("nan")
    return cpu, p99, missed


async def bench(sizes: list[int], seconds: float, rounds: int, hz: float) -> None:
    ports = free_ports(N_PORTS)
    server = start_server(ports)
    try:
        station = template_station()
        n_blocks = len(ModbusDriver(station, DEFAULTS).plan.blocks)
        print(
            f"pymodbus server subprocess pid {server.pid} on {N_PORTS} ports; station map hx-plc-a: "
            f"{len(station.tags)} signals in {n_blocks} block requests per read; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
            f"{seconds:g} s per run, {rounds} round(s), bare and ours alternating"
        )
        print("closed loop (each station reads back to back, one connection each):")
        print(
            f"{'stations':>8} {'client':>6} {'req/s':>9} {'reads/s':>9} {'client CPU µs/req':>18}"
        )
        for n in sizes:
            stations = fleet(station, ports, n)
            rates: dict[str, list[float]] = {"bare": [], "ours": []}
            cpus: dict[str, list[float]] = {"bare": [], "ours": []}
            for _ in range(rounds):
                for name, make in MAKERS.items():
                    readers, close = await make(stations)
                    reads, wall, cpu = await closed_loop(readers, seconds)
                    close()
                    rates[name].append(reads * n_blocks / wall)
                    cpus[name].append(cpu / (reads * n_blocks) * 1e6)
            for name in MAKERS:
                r = statistics.median(rates[name])
                print(
                    f"{n:>8} {name:>6} {r:>9.0f} {r / n_blocks:>9.0f} {statistics.median(cpus[name]):>18.1f}"
                )
            ratio = statistics.median(rates["ours"]) / statistics.median(rates["bare"])
            verdict = "OK" if ratio >= 0.8 else "BELOW TARGET"
            print(f"{n:>8}  ours/bare requests/s = {ratio:.1%} ({verdict}; target >= 80 %)")
        print(
            f"paced ({hz:g} Hz ticks, every station read at each tick, as the daemon polls; "
            f"medians over {rounds} alternating runs, missed = total):"
        )
        print(
            f"{'stations':>8} {'client':>6} {'req/s':>9} {'client CPU':>11} {'p99 ms':>8} {'missed':>7}"
        )
        for n in sizes:
            stations = fleet(station, ports, n)
            runs: dict[str, list[tuple[float, float, int]]] = {"bare": [], "ours": []}
            for _ in range(rounds):
                for name, make in MAKERS.items():
                    readers, close = await make(stations)
                    runs[name].append(await paced(readers, hz, seconds))
                    close()
            for name in MAKERS:
                cpu = statistics.median(r[0] for r in runs[name])
                p99 = statistics.median(r[1] for r in runs[name])
                missed = sum(r[2] for r in runs[name])
                print(
                    f"{n:>8} {name:>6} {n * n_blocks * hz:>9.0f} {cpu:>10.1%} {p99:>8.1f} {missed:>7}"
                )
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--stations", type=int, nargs="*", default=[200, 1000])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hz", type=float, default=1.0, help="tick rate of the paced run")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    if args.serve:
        asyncio.run(serve([int(p) for p in args.serve.split(",")]))
        return
    asyncio.run(bench(args.stations, args.seconds, args.rounds, args.hz))


if __name__ == "__main__":
    main()
