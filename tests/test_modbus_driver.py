"""ModbusDriver against a real pymodbus server on a free loopback port.

The server holds registers encoded from known engineering values for the `hx-plc-a` and
`hx-plc-b` templates of config/stations.yaml; the driver must read them back, spoil only
the block a device refuses, fail fast (TransientError) when the server goes away, connect
again when it is back, and write coils, registers and single bits of a status word.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping
from typing import Any

import numpy as np
import pytest
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.base import PermanentError, TransientError
from drivers.decode import decode_registers, encode_registers
from drivers.factory import make_driver
from drivers.modbus import ModbusDriver
from stationd.config import Defaults, ModbusEndpoint, ModbusStation, ModbusTag, load_config
from tests.conftest import ROOT
from tests.servers import free_port, modbus_server

CFG = load_config(ROOT / "config" / "stations.yaml")
DEFAULTS = Defaults(interval=1.0, timeout=0.5, connect_timeout=1.0)
FC = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}


def station_on(station_id: str, port: int, unit_id: int, **update: Any) -> ModbusStation:
    st = CFG.station(station_id)
    assert isinstance(st, ModbusStation)
    return st.model_copy(
        update={"modbus": ModbusEndpoint(host="127.0.0.1", port=port, unit_id=unit_id), **update}
    )


def plant_values(station: ModbusStation, seed: int) -> dict[str, float]:
    """A plausible engineering value per signal that the tag's type can hold exactly."""
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    for sig, tag in station.tags.items():
        if tag.type == "bool" or tag.bit is not None:
            out[sig] = float(rng.integers(0, 2))
        elif tag.type in ("float32", "float64"):
            out[sig] = float(np.float32(rng.uniform(-20, 400)))
        else:
            lo = 0 if tag.type.startswith("u") else -300
            out[sig] = int(rng.integers(lo, 3000)) * tag.scale + tag.offset
    return out


def sim_device(
    device_id: int, stations_values: list[tuple[ModbusStation, Mapping[str, float]]], **kw: Any
) -> SimDevice:
    """One unit id's memory holding every tag's encoded value (non-shared tables)."""
    regs: dict[str, dict[int, int]] = {"holding": {}, "input": {}}
    bits: dict[str, dict[int, bool]] = {"coil": {}, "discrete": {}}
    for station, values in stations_values:
        for sig, tag in station.tags.items():
            words = encode_registers(tag, values[sig])
            if tag.kind in bits:
                bits[tag.kind][tag.address] = bool(words[0])
            elif tag.bit is not None:
                table = regs[tag.kind]
                table[tag.address] = table.get(tag.address, 0) | words[0]
            else:
                for k, w in enumerate(words):
                    regs[tag.kind][tag.address + k] = w
    limit: int | None = kw.pop("serve_registers_below", None)

    def reg_block(table: dict[int, int]) -> list[SimData]:
        top = max(table, default=0) + 1
        if limit is not None:
            top = min(top, limit)
        return [
            SimData(0, values=[table.get(a, 0) for a in range(top)], datatype=DataType.REGISTERS)
        ]

    def bit_block(table: dict[int, bool]) -> list[SimData]:
        top = max(table, default=0) + 1
        return [
            SimData(0, values=[table.get(a, False) for a in range(top)], datatype=DataType.BITS)
        ]

    return SimDevice(
        id=device_id,
        simdata=(
            bit_block(bits["coil"]),
            bit_block(bits["discrete"]),
            reg_block(regs["holding"]),
            reg_block(regs["input"]),
        ),
        **kw,
    )


def assert_reads(
    station: ModbusStation, values: np.ndarray, quality: np.ndarray, held: Mapping[str, float]
) -> None:
    for i, sig in enumerate(station.signals):
        assert quality[i], sig
        tag = station.tags[sig]
        assert values[i] == pytest.approx(held[sig], rel=1e-6, abs=abs(tag.scale) / 2), sig


@pytest.fixture
async def plant() -> AsyncIterator[dict[str, Any]]:
    """Unit 1 = PLC model A, unit 2 = PLC model B, on one server."""
    port = free_port()
    a = station_on("hs001", port, 1)
    b = station_on("hs003", port, 2)
    va, vb = plant_values(a, 1), plant_values(b, 2)
    devices = [sim_device(1, [(a, va)]), sim_device(2, [(b, vb)])]
    async with modbus_server(devices, port) as server:
        yield {
            "port": port,
            "a": a,
            "b": b,
            "va": va,
            "vb": vb,
            "server": server,
            "devices": devices,
        }


async def test_both_plc_templates_read_back_what_the_server_holds(plant: dict[str, Any]) -> None:
    for key in ("a", "b"):
        station, held = plant[key], plant["v" + key]
        driver = make_driver(station, DEFAULTS)
        assert isinstance(driver, ModbusDriver)
        await driver.connect()
        try:
            result = await driver.read()
            assert result.values.shape == (len(station.signals),)
            assert_reads(station, result.values, result.quality, held)
        finally:
            await driver.close()


async def test_a_changed_register_is_seen_on_the_next_read(plant: dict[str, Any]) -> None:
    a: ModbusStation = plant["a"]
    driver = ModbusDriver(a, DEFAULTS)
    await driver.connect()
    try:
        tag = a.tags["secondary_supply_pressure"]
        await plant["server"].async_setValues(
            1, FC["holding"], tag.address, encode_registers(tag, 0.123)
        )
        result = await driver.read()
        assert result.values[a.signals.index("secondary_supply_pressure")] == pytest.approx(0.123)
    finally:
        await driver.close()


async def test_refused_block_spoils_only_its_signals() -> None:
    port = free_port()
    a = station_on("hs001", port, 1)
    held = plant_values(a, 3)
    # the PLC serves registers 0..39 only: the block holding[100:102] gets "illegal address"
    async with modbus_server([sim_device(1, [(a, held)], serve_registers_below=40)], port):
        driver = ModbusDriver(a, DEFAULTS)
        await driver.connect()
        try:
            result = await driver.read()
        finally:
            await driver.close()
    bad = [s for s, q in zip(a.signals, result.quality, strict=True) if not q]
    assert bad == ["circ_pump_current"]
    assert math.isnan(result.values[a.signals.index("circ_pump_current")])
    good = [i for i, s in enumerate(a.signals) if s != "circ_pump_current"]
    assert not np.isnan(result.values[good]).any()
    assert driver.block_errors == 1


async def test_device_nan_is_bad_quality_for_that_signal_only(plant: dict[str, Any]) -> None:
    b: ModbusStation = plant["b"]
    tag = b.tags["secondary_flow"]
    await plant["server"].async_setValues(
        2, FC["input"], tag.address, encode_registers(tag, math.nan)
    )
    driver = ModbusDriver(b, DEFAULTS)
    await driver.connect()
    try:
        result = await driver.read()
    finally:
        await driver.close()
    assert [s for s, q in zip(b.signals, result.quality, strict=True) if not q] == [
        "secondary_flow"
    ]


async def test_server_gone_is_transient_within_the_timeout_and_a_restart_reconnects() -> None:
    port = free_port()
    a = station_on("hs001", port, 1)
    held = plant_values(a, 4)
    driver = ModbusDriver(a, DEFAULTS)
    loop = asyncio.get_running_loop()
    async with modbus_server([sim_device(1, [(a, held)])], port):
        await driver.connect()
        assert (await driver.read()).quality.all()
    # The listener is gone; the open connection may or may not be dropped by the server.
    t0 = loop.time()
    with pytest.raises(TransientError):
        async with asyncio.timeout(5):  # a hang would fail here, not at the pytest timeout
            await driver.read()
    assert loop.time() - t0 < DEFAULTS.timeout + 0.5
    assert not driver.connected
    # no server: connect fails fast, and read refuses rather than reconnecting on its own
    with pytest.raises(TransientError):
        async with asyncio.timeout(5):
            await driver.connect()
    with pytest.raises(TransientError):
        await driver.read()
    # the PLC is back: a new connect() works
    async with modbus_server([sim_device(1, [(a, held)])], port):
        await driver.connect()
        try:
            result = await driver.read()
        finally:
            await driver.close()
    assert_reads(a, result.values, result.quality, held)


async def test_writes_round_trip_coil_register_and_bit_in_register(plant: dict[str, Any]) -> None:
    a: ModbusStation = plant["a"]
    b: ModbusStation = plant["b"]
    server = plant["server"]
    da, db = ModbusDriver(a, DEFAULTS), ModbusDriver(b, DEFAULTS)
    await da.connect()
    await db.connect()
    try:
        # coil (model B pumps)
        for v in (1.0, 0.0, 1.0):
            await db.write("makeup_pump_running", v)
            assert (await server.async_getValues(2, FC["coil"], 1, 1))[0] is bool(v)
            assert (await db.read()).values[b.signals.index("makeup_pump_running")] == v
        # scaled uint16 holding register (model B valve) and a float32 (model A)
        await db.write("primary_valve_position", 37.5)
        assert await server.async_getValues(2, FC["holding"], 0, 1) == [375]
        await da.write("secondary_supply_temp", 61.25)
        got = await server.async_getValues(1, FC["holding"], 12, 2)
        assert decode_registers(a.tags["secondary_supply_temp"], got) == 61.25
        # CDAB float, and a float64 across four registers
        await da.write("makeup_flow", 2.5)
        await da.write("heat_energy", 123456.789)
        r = await da.read()
        assert r.values[a.signals.index("makeup_flow")] == 2.5
        assert r.values[a.signals.index("heat_energy")] == 123456.789
        # one bit of status word 30: the neighbouring bits must survive
        before = (await server.async_getValues(1, FC["holding"], 30, 1))[0]
        bit1 = a.tags["makeup_pump_running"]
        for v in (1.0, 0.0):
            await da.write("makeup_pump_running", v)
            word = (await server.async_getValues(1, FC["holding"], 30, 1))[0]
            assert (word >> 1) & 1 == int(v)
            assert word & ~0b10 == before & ~0b10
            assert decode_registers(bit1, [word]) == v
        r = await da.read()
        for sig in ("circ_pump_running", "mains_power"):
            assert r.values[a.signals.index(sig)] == plant["va"][sig]
        # what cannot be written is refused, not clamped
        with pytest.raises(PermanentError):
            await db.write("outdoor_temp", 5.0)  # an input register
        with pytest.raises(PermanentError):
            await db.write("mains_power", 1.0)  # a discrete input
        with pytest.raises(PermanentError):
            await da.write("primary_supply_pressure", 40.0)  # int16 * 0.001 tops at 32.767
        with pytest.raises(PermanentError):
            await da.write("no_such_signal", 1.0)
    finally:
        await da.close()
        await db.close()


async def test_write_refused_by_the_device_is_permanent() -> None:
    port = free_port()
    a = station_on("hs001", port, 1)
    extra = {**a.tags, "spare_setpoint": ModbusTag(address=500, type="uint16")}
    st = a.model_copy(update={"tags": extra, "extras": (*a.extras, "spare_setpoint")})
    held = plant_values(a, 5)
    async with modbus_server([sim_device(1, [(a, held)])], port):
        driver = ModbusDriver(st, DEFAULTS)
        await driver.connect()
        try:
            with pytest.raises(PermanentError, match="illegal data address"):
                await driver.write("spare_setpoint", 7)
            assert driver.connected  # a refusal is an answer: the link is fine
            result = await driver.read()
        finally:
            await driver.close()
    assert [s for s, q in zip(st.signals, result.quality, strict=True) if not q] == [
        "spare_setpoint"
    ]
