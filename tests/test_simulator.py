"""The simulator's real servers: what a bare client reads is what the plant says.

One simulator per module (an asyncua server takes ~2 s to start) on free loopback ports,
with its update loop effectively paused (`update_interval` of an hour) so each test
publishes with `await sim.update()` and reads a stable register image.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from drivers.decode import decode_registers, is_bit_tag, set_bit
from stationd import signals
from stationd.config import ModbusStation, OpcuaStation, load_config
from tests.servers import free_port, start_simulator
from tools.simulate_station.cli import main as cli_main
from tools.simulate_station.generate import MAX_UNITS_PER_PORT, generate, write_fleet
from tools.simulate_station.simulator import Simulator, config_on_ports, dump_config

on_module_loop = pytest.mark.asyncio(loop_scope="module")  # shares the module's simulator

ROOT = Path(__file__).resolve().parents[1]
CFG = load_config(ROOT / "config" / "stations.yaml")
COL = signals.INDEX


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sim() -> AsyncIterator[Simulator]:
    async with start_simulator(CFG, seed=11, update_interval=3600.0) as s:
        assert isinstance(s, Simulator)
        yield s


def modbus_port(sim: Simulator, st: ModbusStation) -> int:
    return sim.port_map[st.modbus.port]


async def modbus_client(port: int, timeout: float = 1.0) -> AsyncModbusTcpClient:
    c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=timeout, retries=0, reconnect_delay=0)
    assert await c.connect()
    return c


async def read_station(sim: Simulator, st: ModbusStation, timeout: float = 1.0) -> dict[str, float]:
    """Read every tag of a Modbus station with a bare client and decode it."""
    c = await modbus_client(modbus_port(sim, st), timeout)
    try:
        out: dict[str, float] = {}
        for kind in ("holding", "input", "coil", "discrete"):
            tags = {s: t for s, t in st.tags.items() if t.kind == kind}
            if not tags:
                continue
            lo = min(t.address for t in tags.values())
            hi = max(t.address + t.width - 1 for t in tags.values())
            fn = {
                "holding": c.read_holding_registers,
                "input": c.read_input_registers,
                "coil": c.read_coils,
                "discrete": c.read_discrete_inputs,
            }[kind]
            resp = await fn(lo, count=hi - lo + 1, device_id=st.modbus.unit_id)
            assert not resp.isError(), resp
            data = resp.bits if kind in ("coil", "discrete") else resp.registers
            for sig, t in tags.items():
                a = t.address - lo
                out[sig] = decode_registers(t, data[a : a + (1 if is_bit_tag(t) else t.width)])
        return out
    finally:
        c.close()


@on_module_loop
async def test_modbus_registers_decode_to_the_plants_readings(sim):
    await sim.update()
    state = sim.state()["stations"]
    checked = 0
    for st in CFG.stations:
        if not isinstance(st, ModbusStation):
            continue
        got = await read_station(sim, st)
        for sig, value in got.items():
            if sig not in COL:
                assert sig == "circ_pump_current" and 5 < value < 100  # a modelled extra
                continue
            want = state[st.id]["values"][sig]
            tag = st.tags[sig]
            tol = (
                0.51 * abs(tag.scale) if tag.type in ("int16", "uint16", "int32", "uint32") else 0.0
            )
            tol += 1e-6 * max(1.0, abs(want))  # float32 keeps ~7 digits
            assert abs(value - want) <= tol, (st.id, sig, value, want)
            checked += 1
    assert checked > 80


@on_module_loop
async def test_opcua_nodes_read_the_plants_readings(sim):
    await sim.update()
    state = sim.state()["stations"]
    url = sim.opcua.servers[0].url
    async with Client(url, timeout=5) as client:
        for sid in ("hs006", "hs008"):
            st = CFG.station(sid)
            assert isinstance(st, OpcuaStation)
            for sig in (
                "secondary_supply_pressure",
                "secondary_flow",
                "circ_pump_running",
                "heat_energy",
            ):
                node = client.get_node(st.tags[sig].node)
                dv = await node.read_data_value()
                assert dv.Value.VariantType == ua.VariantType.Double
                assert dv.Value.Value == pytest.approx(state[sid]["values"][sig], rel=1e-12)
        name = await client.get_node(ua.NodeId("hs006", 2)).read_display_name()
        assert name.Text == "和平小区换热站"


@on_module_loop
async def test_comm_loss_silences_one_station_while_the_others_answer(sim):
    hs002, hs001 = CFG.station("hs002"), CFG.station("hs001")
    assert isinstance(hs002, ModbusStation) and isinstance(hs001, ModbusStation)
    fault = sim.inject(kind="comm_loss", station="hs002")
    fault_ua = sim.inject(kind="comm_loss", station="hs007")
    await sim.update()
    with pytest.raises(ModbusIOException):
        await read_station(sim, hs002, timeout=0.3)
    assert (await read_station(sim, hs001))["mains_power"] == 1.0  # same port, still answering
    async with Client(sim.opcua.servers[0].url, timeout=5) as client:
        dv = await client.get_node("ns=2;s=hs007.secondary_flow").read_data_value(
            raise_on_bad_status=False
        )
        assert dv.StatusCode.value == ua.StatusCodes.BadNoCommunication
        ok = await client.get_node("ns=2;s=hs008.secondary_flow").read_data_value()
        assert ok.StatusCode.is_good() and ok.Value.Value > 10
    # the plant ran on behind the silent PLC
    assert sim.state()["stations"]["hs002"]["values"]["circ_pump_running"] == 1.0
    sim.clear(fault.id)
    sim.clear(fault_ua.id)
    await sim.update()
    assert (await read_station(sim, hs002))["mains_power"] == 1.0
    truth = {t.id: t for t in sim.truth()}
    assert not truth[fault.id].active and truth[fault.id].end_wall is not None


@on_module_loop
async def test_power_loss_without_ups_goes_dark_with_ups_answers(sim):
    hs004, hs005 = CFG.station("hs004"), CFG.station("hs005")
    assert isinstance(hs004, ModbusStation) and isinstance(hs005, ModbusStation)
    dark = sim.inject(kind="power_loss", station="hs004", ups=False)
    ups = sim.inject(kind="power_loss", station="hs005", ups=True)
    await sim.update()
    with pytest.raises(ModbusIOException):
        await read_station(sim, hs004, timeout=0.3)
    seen = await read_station(sim, hs005)
    assert seen["mains_power"] == 0.0 and seen["circ_pump_running"] == 0.0
    sim.clear(dark.id)
    sim.clear(ups.id)
    await sim.update()
    assert (await read_station(sim, hs004))["mains_power"] == 1.0


@on_module_loop
async def test_control_writes_stop_the_pump_in_the_plant(sim):
    hs001, hs003 = CFG.station("hs001"), CFG.station("hs003")
    assert isinstance(hs001, ModbusStation) and isinstance(hs003, ModbusStation)
    await sim.update()
    # PLC A: the pump is bit 0 of status word 30: read-modify-write, as the daemon does
    tag = hs001.tags["circ_pump_running"]
    c = await modbus_client(modbus_port(sim, hs001))
    try:
        word = (await c.read_holding_registers(30, count=1, device_id=1)).registers[0]
        resp = await c.write_register(30, set_bit(tag, word, 0), device_id=1)
        assert not resp.isError()
    finally:
        c.close()
    # PLC B: the pump is coil 0
    c = await modbus_client(modbus_port(sim, hs003))
    try:
        assert not (await c.write_coil(0, False, device_id=1)).isError()
    finally:
        c.close()
    # OPC UA: the pump node (Double)
    async with Client(sim.opcua.servers[0].url, timeout=5) as client:
        await client.get_node("ns=2;s=hs006.circ_pump_running").write_value(
            ua.DataValue(ua.Variant(0.0, ua.VariantType.Double))
        )
    await sim.update()
    stopped = [sim.plant.index[s] for s in ("hs001", "hs003", "hs006")]
    assert not sim.plant.circ_cmd[stopped].any()
    assert sim.plant.circ_cmd.sum() == len(CFG.stations) - 3
    v = sim.plant.true_values()
    assert (v[stopped, COL["circ_pump_running"]] == 0).all()
    a = await read_station(sim, hs001)
    assert a["circ_pump_running"] == 0.0 and a["mains_power"] == 1.0  # other bits untouched
    assert (await read_station(sim, hs003))["circ_pump_running"] == 0.0
    # the pump really stops: flow and head decay over the next plant seconds
    sim.plant.advance(sim.plant.t + 60)
    assert sim.plant.true_values()[stopped, COL["secondary_flow"]].max() < 1.0
    for i in stopped:
        sim.plant.set_point(i, "circ_pump_running", 1)


@on_module_loop
async def test_control_api_injects_clears_and_reports_truth(sim):
    base = sim.control_url
    assert base is not None
    async with aiohttp.ClientSession() as http:
        body = {"kind": "secondary_leak", "station": "hs004", "size": 1.5, "duration": 3600}
        async with http.post(f"{base}/faults", json=body) as r:
            assert r.status == 201
            created = await r.json()
        assert created["subject"] == "hs004" and created["size"] == 1.5 and created["active"]
        async with http.get(f"{base}/truth") as r:
            truth = await r.json()
        mine = [f for f in truth["faults"] if f["id"] == created["id"]]
        assert mine and mine[0]["onset_wall"] is not None and mine[0]["end"] is not None
        async with http.get(f"{base}/state") as r:
            state = await r.json()
        assert state["stations"]["hs004"]["answering"] is True
        assert state["stations"]["hs004"]["values"]["secondary_flow"] > 50
        async with http.post(f"{base}/faults", json={"kind": "pipe_burst"}) as r:
            assert r.status == 400 and "station" in (await r.json())["error"]
        async with http.post(f"{base}/faults", json={"kind": "comm_loss", "station": "nope"}) as r:
            assert r.status == 400 and "unknown station" in (await r.json())["error"]
        async with http.delete(f"{base}/faults/{created['id']}") as r:
            assert r.status == 200 and (await r.json())["active"] is False
        async with http.delete(f"{base}/faults/f-none") as r:
            assert r.status == 404
        async with http.post(f"{base}/speed", json={"speed": 5}) as r:
            assert (await r.json())["speed"] == 5
        async with http.post(f"{base}/speed", json={"speed": 1}) as r:
            assert (await r.json())["speed"] == 1


def _free_offset() -> int:
    """A port offset under which 15020, 15021 and 14840 (and the control port) are free."""
    for _ in range(50):
        base = free_port()
        off = base - 14840
        ports = [14840 + off, 15020 + off, 15021 + off]
        if max(ports) > 65000:
            continue
        try:
            for p in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return off
    raise RuntimeError("no free port offset found")


def _read_until(proc: subprocess.Popen[str], marker: str, deadline_s: float) -> list[str]:
    """Lines of the child's stdout up to `marker`, read by a thread so the deadline holds."""
    assert proc.stdout is not None
    stdout = proc.stdout
    q: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in iter(stdout.readline, ""):
            q.put(line.rstrip("\n"))
            if line.rstrip("\n") == marker:
                return
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    lines: list[str] = []
    end = time.monotonic() + deadline_s
    while (left := end - time.monotonic()) > 0:
        try:
            line = q.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        lines.append(line)
        if line == marker:
            return lines
    raise AssertionError(f"no {marker!r} within {deadline_s}s; got {lines}")


def test_cli_run_prints_ready_and_stops_on_sigterm(tmp_path):
    off, control = _free_offset(), free_port()
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("faults:\n  - {at: 0, kind: comm_loss, station: hs008}\n", encoding="utf-8")
    cmd = [
        sys.executable, "-m", "tools.simulate_station.cli", "run",
        "--config", str(ROOT / "config" / "stations.yaml"), "--port-offset", str(off),
        "--control-port", str(control), "--speed", "10", "--scenario", str(scenario),
        "--write-config", str(tmp_path / "on-ports.yaml"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        lines = _read_until(proc, "READY", 30.0)
        assert f"modbus 127.0.0.1:{15020 + off} units 1,2,3" in lines
        assert f"modbus 127.0.0.1:{15021 + off} units 1,2" in lines
        assert any(
            x.startswith(f"opcua opc.tcp://127.0.0.1:{14840 + off}/stationd/") for x in lines
        )
        assert f"control http://127.0.0.1:{control}" in lines
        moved = load_config(tmp_path / "on-ports.yaml")
        assert moved.station("hs003").modbus.port == 15021 + off  # type: ignore[union-attr]
        out = subprocess.run(
            [sys.executable, "-m", "tools.simulate_station.cli", "fault",
             "--control", f"http://127.0.0.1:{control}", "truth"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        faults = json.loads(out.stdout)["faults"]
        assert faults[0]["kind"] == "comm_loss" and faults[0]["subject"] == "hs008"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert proc.stdout is not None and "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_generated_fleet_loads_with_both_protocols(tmp_path):
    fleet = generate(ROOT / "config" / "stations.yaml", 600, opcua_share=0.2, ports=2)
    path = tmp_path / "fleet.yaml"
    write_fleet(path, fleet)
    cfg = load_config(path)
    assert len(cfg.stations) == 600
    ua_st = [s for s in cfg.stations if isinstance(s, OpcuaStation)]
    mb_st = [s for s in cfg.stations if isinstance(s, ModbusStation)]
    assert len(ua_st) == 120 and len({s.opcua.url for s in ua_st}) == 1
    per_port: dict[int, int] = {}
    for s in mb_st:
        per_port[s.modbus.port] = per_port.get(s.modbus.port, 0) + 1
    assert len(per_port) >= 2 and max(per_port.values()) <= MAX_UNITS_PER_PORT
    branches = {s.branch for s in cfg.stations}
    assert len(branches) == 60 and len({s.power_feeder for s in cfg.stations}) == 120
    assert len({s.heat_source for s in cfg.stations}) >= 2
    assert cfg.stations[41].name == "第0042号换热站"
    assert all(s.estates and s.heated_area_m2 >= 50_000 for s in cfg.stations)
    area = sum(s.heated_area_m2 for s in cfg.stations)
    assert math.isfinite(area)


def test_generate_command_writes_a_loadable_file(tmp_path, capsys):
    out = tmp_path / "f.yaml"
    assert cli_main(["generate", "--count", "30", "--out", str(out), "--opcua-share", "0"]) == 0
    cfg = load_config(out)
    assert len(cfg.stations) == 30 and all(s.protocol == "modbus" for s in cfg.stations)
    assert "30 stations" in capsys.readouterr().out


@on_module_loop
async def test_the_daemons_drivers_read_and_control_the_simulator(sim):
    from drivers.factory import make_driver

    defaults = CFG.defaults
    await sim.update()
    state = sim.state()["stations"]
    drivers = {st.id: make_driver(st, defaults) for st in sim.config_on_ports().stations}
    try:
        for sid, drv in drivers.items():
            await drv.connect()
            result = await drv.read()
            end = time.monotonic() + 5.0
            while not result.quality.all() and time.monotonic() < end:
                await asyncio.sleep(0.05)  # subscribe mode: values arrive as data changes
                result = await drv.read()
            st = CFG.station(sid)
            assert result.quality.all(), (sid, result)
            for sig, value in zip(st.signals, result.values, strict=True):
                if sig in COL:
                    assert value == pytest.approx(state[sid]["values"][sig], rel=1e-5, abs=0.051), (
                        sid,
                        sig,
                    )
        # select-before-operate ends in a driver write: the pump must really stop
        await drivers["hs002"].write("circ_pump_running", 0)
        await drivers["hs004"].write("primary_valve_position", 20.0)
        await drivers["hs008"].write("circ_pump_running", 0)
        await sim.update()
        p = sim.plant
        assert not p.circ_cmd[p.index["hs002"]] and not p.circ_cmd[p.index["hs008"]]
        assert p.valve_manual[p.index["hs004"]] == pytest.approx(20.0)
        after = await drivers["hs002"].read()
        assert after.values[CFG.station("hs002").signals.index("circ_pump_running")] == 0.0
    finally:
        for drv in drivers.values():
            await drv.close()
        for sid in ("hs002", "hs008"):
            sim.plant.set_point(sid, "circ_pump_running", 1)
        sim.plant.release_valve("hs004")


def test_config_on_ports_round_trips_through_yaml(tmp_path):
    moved = config_on_ports(CFG, {15020: 25020, 15021: 25021, 14840: 24840})
    assert moved.station("hs001").modbus.port == 25020  # type: ignore[union-attr]
    assert moved.station("hs007").opcua.url == "opc.tcp://127.0.0.1:24840/stationd/"  # type: ignore[union-attr]
    back = load_config(dump_config(moved, tmp_path / "moved.yaml"))
    assert back.stations == moved.stations and back.site == CFG.site
