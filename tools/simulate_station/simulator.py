"""The running simulator: plant + Modbus/OPC UA servers + control API on one event loop.

`async with Simulator(config, speed=..., seed=..., port_map=...) as sim:` starts every
server on 127.0.0.1 (ports shifted by `port_map`/`port_offset` so tests use free ports),
then an update loop that every `update_interval` wall seconds 1) turns clients' control
writes into plant set-points, 2) advances the plant to the plant time of now (`speed` x
faster than the wall clock), 3) publishes the sensor readings and who answers.
Leaving the block stops the loop and the servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from stationd import signals
from stationd.config import Config, ModbusStation, OpcuaStation, load_config
from tools.simulate_station.faults import Fault, FaultTruth
from tools.simulate_station.modbus_server import ModbusServers
from tools.simulate_station.opcua_server import OpcuaServers, rewrite_port
from tools.simulate_station.plant import Plant

log = logging.getLogger(__name__)


def config_ports(config: Config) -> set[int]:
    """Every TCP port the config's stations are served on (Modbus ports, OPC UA URL ports)."""
    ports = {st.modbus.port for st in config.stations if isinstance(st, ModbusStation)}
    for st in config.stations:
        if isinstance(st, OpcuaStation):
            port = st.opcua.url.split("://", 1)[1].split("/", 1)[0].rpartition(":")[2]
            if port.isdigit():
                ports.add(int(port))
    return ports


def config_on_ports(config: Config, port_map: dict[int, int]) -> Config:
    """`config` with every Modbus port and OPC UA endpoint port moved by `port_map`, as a
    daemon polling this simulator (on shifted or free ports) must be configured."""
    stations: list[ModbusStation | OpcuaStation] = []
    for st in config.stations:
        if isinstance(st, ModbusStation):
            ep = st.modbus.model_copy(update={"port": port_map.get(st.modbus.port, st.modbus.port)})
            stations.append(st.model_copy(update={"modbus": ep}))
        else:
            ua_ep = st.opcua.model_copy(update={"url": rewrite_port(st.opcua.url, port_map)})
            stations.append(st.model_copy(update={"opcua": ua_ep}))
    return config.model_copy(update={"stations": tuple(stations)})


def dump_config(config: Config, path: str | Path) -> Path:
    """Write `config` as a stations.yaml that `load_config` reads back to an equal config
    (templates already merged into each station)."""
    data = config.model_dump(mode="json", exclude={"path"}, exclude_none=True)
    for st in data["stations"]:
        st.pop("extras", None)  # derived from the tags on load
    out = Path(path)
    header = "# Written by simulate-station: the fleet on the simulator's actual ports.\n"
    out.write_text(
        header + yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    return out


class _Clock:
    """Plant time as a piecewise-linear function of wall time (speed may change)."""

    def __init__(self, plant_start: float, wall_start: float, speed: float) -> None:
        self.segments: list[tuple[float, float, float]] = [(plant_start, wall_start, speed)]

    @property
    def speed(self) -> float:
        return self.segments[-1][2]

    def plant_at(self, wall: float) -> float:
        p0, w0, s = self.segments[-1]
        return p0 + (wall - w0) * s

    def wall_at(self, plant: float) -> float:
        seg = self.segments[0]
        for candidate in self.segments:
            if candidate[0] <= plant:
                seg = candidate
        p0, w0, s = seg
        return w0 + (plant - p0) / s

    def set_speed(self, speed: float, wall: float, plant: float) -> None:
        self.segments.append((plant, wall, speed))


class Simulator:
    """Simulated stations of a config, served for real on loopback."""

    def __init__(
        self,
        config: Config | str | Path,
        *,
        speed: float = 1.0,
        seed: int = 0,
        port_map: dict[int, int] | None = None,
        port_offset: int = 0,
        control_port: int | None = None,
        scenario: list[Fault] | None = None,
        update_interval: float = 0.5,
        outdoor_base_c: float = -5.0,
        start_time: float | None = None,
    ) -> None:
        self.config = config if isinstance(config, Config) else load_config(config)
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed0 = float(speed)
        self.seed = seed
        self.update_interval = update_interval
        stations = list(self.config.stations)
        self.port_map = {p: p + port_offset for p in config_ports(self.config)}
        self.port_map.update(port_map or {})
        self.control_port = control_port
        self.scenario = list(scenario or [])
        wall0 = time.time()
        self.plant = Plant(
            stations,
            seed=seed,
            start_time=wall0 if start_time is None else start_time,
            outdoor_base_c=outdoor_base_c,
            site=self.config.site.id,
        )
        self.clock = _Clock(self.plant.t, wall0, self.speed0)
        self.modbus = ModbusServers(
            [(i, st) for i, st in enumerate(stations) if isinstance(st, ModbusStation)],
            self.port_map,
        )
        self.opcua = OpcuaServers(
            [(i, st) for i, st in enumerate(stations) if isinstance(st, OpcuaStation)],
            self.port_map,
        )
        self.readings = self.plant.values()
        self.control_url: str | None = None
        self.updates = 0
        self._updated = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Simulator:
        try:
            for f in self.scenario:
                self.plant.inject(f)
            # registers hold real readings before the first client can connect
            await self.modbus.start()
            self._stack.push_async_callback(self.modbus.stop)
            await self.opcua.start()
            self._stack.push_async_callback(self.opcua.stop)
            # the OPC UA server takes ~2 s to start: the first update catches the plant up
            await self.update()
            if self.control_port is not None:
                from tools.simulate_station.control import start_control

                runner, url = await start_control(self, self.control_port)
                self.control_url = url
                self._stack.push_async_callback(runner.cleanup)
            self._task = asyncio.create_task(self._run(), name="simulate-station-update")
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._stack.aclose()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += self.update_interval
            delay = deadline - loop.time()
            if delay < 0:  # an update overran: skip the missed slots, don't pile up
                deadline = loop.time()
                delay = 0.0
            await asyncio.sleep(delay)
            try:
                await self.update()
            except Exception:  # one bad update must not end the simulation
                log.exception("simulator update failed")

    async def update(self) -> None:
        """Apply control writes, advance the plant to now, publish readings."""
        for idx, sig, value in (
            await self.modbus.collect_writes() + await self.opcua.collect_writes()
        ):
            self.plant.set_point(idx, sig, value)
        now = time.time()
        self.plant.advance(self.clock.plant_at(now))
        self.readings = self.plant.values()
        answering = self.plant.answering()
        extras = self.plant.extras()
        await self.modbus.publish(self.readings, extras, answering)
        await self.opcua.publish(self.readings, extras, answering)
        self.updates += 1
        self._updated.set()
        self._updated = asyncio.Event()

    async def wait_update(self, n: int = 1, timeout: float = 10.0) -> None:
        """Wait until `n` more updates have been published (tests)."""
        async with asyncio.timeout(timeout):
            for _ in range(n):
                await self._updated.wait()

    # -- faults, truth, speed ---------------------------------------------------------------
    def inject(self, fault: Fault | dict[str, Any] | None = None, **kw: Any) -> FaultTruth:
        """Inject a fault now (or at its onset); `sim.inject(kind="comm_loss", station="hs002")`."""
        f = fault if isinstance(fault, Fault) else Fault.model_validate({**(fault or {}), **kw})
        truth = self.plant.inject(f, wall_time=time.time())
        log.info(
            "fault injected id=%s kind=%s subject=%s size=%s",
            truth.id,
            truth.kind,
            truth.subject,
            truth.size,
        )
        return truth

    def clear(self, fault_id: str) -> FaultTruth:
        truth = self.plant.clear(fault_id, wall_time=time.time())
        log.info("fault cleared id=%s kind=%s subject=%s", truth.id, truth.kind, truth.subject)
        return truth

    def truth(self) -> list[FaultTruth]:
        """Every fault with plant and wall times (wall times derived from the clock)."""
        out = self.plant.truth()
        for t in out:
            if t.onset_wall is None and t.onset <= self.plant.t:
                t.onset_wall = self.clock.wall_at(t.onset)
            if t.end is not None and t.end_wall is None and t.end <= self.plant.t:
                t.end_wall = self.clock.wall_at(t.end)
        return out

    def set_speed(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        now = time.time()
        self.clock.set_speed(speed, now, self.clock.plant_at(now))

    @property
    def speed(self) -> float:
        return self.clock.speed

    def state(self) -> dict[str, Any]:
        """The last published readings per station (what a client reads now)."""
        answering = self.plant.answering()
        stations = {}
        for i, sid in enumerate(self.plant.ids):
            row = self.readings[i]
            stations[sid] = {
                "answering": bool(answering[i]),
                "values": {
                    n: float(row[k]) for n, k in signals.INDEX.items() if not np.isnan(row[k])
                },
            }
        return {
            "plant_time": self.plant.t,
            "wall_time": time.time(),
            "speed": self.speed,
            "stations": stations,
        }

    @property
    def endpoints(self) -> dict[str, Any]:
        return {
            "modbus": [
                {"host": p.host, "port": p.port, "units": sorted(p.units)}
                for p in self.modbus.ports
            ],
            "opcua": [s.url for s in self.opcua.servers],
            "control": self.control_url,
        }

    def config_on_ports(self) -> Config:
        """The config as a daemon polling this simulator must see it (actual ports)."""
        return config_on_ports(self.config, self.port_map)

    def describe(self) -> list[str]:
        lines = self.modbus.describe() + self.opcua.describe()
        if self.control_url:
            lines.append(f"control {self.control_url}")
        return lines
