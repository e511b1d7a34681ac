"""The simulator's loopback control API (aiohttp, JSON): inject and clear faults, read truth.

    POST   /faults        {kind, station|branch|source|feeder, size, ups, signal, duration, at, id}
                          -> 201 the fault's truth
    DELETE /faults/{id}   -> 200 the fault's truth (404 if unknown)
    GET    /truth         -> {plant_time, wall_time, speed, faults: [truth...]}
    GET    /state         -> {plant_time, wall_time, speed, stations: {id: {answering, values}}}
    POST   /speed         {speed} -> {speed}

It binds 127.0.0.1 only: whoever reaches it can switch stations off, which is the point of
a training simulator and the reason it is not exposed.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

from aiohttp import web
from pydantic import ValidationError

from tools.simulate_station.faults import Fault, FaultTruth


class Simulator(Protocol):
    """What the control API drives (tools.simulate_station.simulator.Simulator fits); a
    protocol, so this module does not import the simulator that serves it."""

    @property
    def speed(self) -> float: ...

    @property
    def plant(self) -> Any: ...

    def inject(self, fault: Fault) -> FaultTruth: ...

    def clear(self, fault_id: str) -> FaultTruth: ...

    def truth(self) -> list[FaultTruth]: ...

    def state(self) -> dict[str, Any]: ...

    def set_speed(self, speed: float) -> None: ...


SIM_KEY: web.AppKey[Simulator] = web.AppKey("simulator")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


async def post_fault(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        return _error(400, f"body is not JSON: {exc}")
    if not isinstance(body, dict):
        return _error(400, "body must be a JSON object")
    try:
        fault = Fault.model_validate(body)
    except ValidationError as exc:
        msgs = [
            f"{'.'.join(str(x) for x in e['loc']) or 'fault'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        return _error(400, "; ".join(msgs))
    try:
        truth = sim.inject(fault)
    except ValueError as exc:
        return _error(400, str(exc))
    return _json(truth.as_dict(), 201)


async def delete_fault(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    fid = request.match_info["fault_id"]
    try:
        truth = sim.clear(fid)
    except KeyError:
        return _error(404, f"no fault {fid!r}")
    return _json(truth.as_dict())


async def get_truth(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    return _json(
        {
            "plant_time": sim.plant.t,
            "wall_time": time.time(),
            "speed": sim.speed,
            "faults": [t.as_dict() for t in sim.truth()],
        }
    )


async def get_state(request: web.Request) -> web.Response:
    return _json(request.app[SIM_KEY].state())


async def post_speed(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    try:
        body = await request.json()
        speed = float(body["speed"])
        sim.set_speed(speed)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return _error(400, f'expected {{"speed": N}} with N > 0 ({exc})')
    return _json({"speed": sim.speed})


def make_app(sim: Simulator) -> web.Application:
    app = web.Application()
    app[SIM_KEY] = sim
    app.router.add_post("/faults", post_fault)
    app.router.add_delete("/faults/{fault_id}", delete_fault)
    app.router.add_get("/truth", get_truth)
    app.router.add_get("/state", get_state)
    app.router.add_post("/speed", post_speed)
    return app


async def start_control(
    sim: Simulator, port: int, host: str = "127.0.0.1"
) -> tuple[web.AppRunner, str]:
    """Serve the control API; returns the runner (cleanup() stops it) and its base URL."""
    runner = web.AppRunner(make_app(sim), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]  # the real port when 0 was asked for
    return runner, f"http://{host}:{bound}"
