"""Real pymodbus TCP servers for the simulated Modbus stations, fed from the plant.

One `ModbusTcpServer` per distinct port hosts every unit id configured on that port (a
`SimDevice` per unit with the four separate blocks — coils, discrete inputs, holding and
input registers — because the register maps reuse address 0 in several kinds). Each block
spans its kind's lowest to highest tagged address with no holes, so the daemon may read
across gaps between tags as its read planner likes.

Registers are filled with `drivers.decode.encode_registers`, so the simulator and the
daemon agree on every byte and word order by construction.

How a PLC "stops answering" in pymodbus 3.16.1: the device's `action` hook runs on every
request; for a unit that is down it raises `NoSuchIdException`, and the server, built
with `ignore_missing_devices=True`, then sends nothing, so the client's request times out
exactly as with a dead PLC behind a live gateway. The TCP port stays open (other units on
it keep answering). The simulator's own updates bypass the hook (`_internal`).

Control writes: the same hook marks a unit dirty when a client writes; before the next
update the writable tags of dirty units are read back and compared with what the
simulator last wrote, and each changed control point becomes a plant set-point.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.decode import decode_registers, encode_registers, is_bit_tag
from stationd import signals
from stationd.config import ModbusStation, ModbusTag
from tools.simulate_station.plant import CONTROL_POINTS

log = logging.getLogger(__name__)

# kind -> (SimDevice block position, function code used to read/write it internally)
_KINDS: dict[str, tuple[int, int]] = {
    "coil": (0, 1),
    "discrete": (1, 2),
    "holding": (2, 3),
    "input": (3, 4),
}
_INT_RANGE = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}


def encode_clamped(tag: ModbusTag, value: float) -> list[int]:
    """encode_registers, but a value the register cannot hold is clamped to its range, as a
    PLC's analog input card saturates (a reading below 0 in a uint16 reads 0)."""
    try:
        return encode_registers(tag, value)
    except ValueError:
        if tag.type in _INT_RANGE and tag.bit is None:
            lo, hi = _INT_RANGE[tag.type]
            raw = (value - tag.offset) / tag.scale
            raw = 0.0 if not math.isfinite(raw) else min(max(raw, lo), hi)
            return encode_registers(tag, raw * tag.scale + tag.offset)
        return encode_registers(tag, 1.0 if value >= 0.5 else 0.0)


@dataclass
class _Block:
    kind: str
    start: int
    image: list[int]  # registers (or bits as 0/1) as last written by the simulator


@dataclass
class _Unit:
    """One simulated PLC: a unit id on a port, with its tags and register images."""

    plant_index: int
    station: ModbusStation
    unit_id: int
    blocks: dict[str, _Block]
    # signal -> tag, split into canonical (plant columns) and extras
    canon: list[tuple[int, ModbusTag]] = field(default_factory=list)
    extras: list[tuple[str, ModbusTag]] = field(default_factory=list)
    writable: list[tuple[str, ModbusTag]] = field(default_factory=list)
    answering: bool = True
    dirty: bool = False


def _layout(st: ModbusStation) -> dict[str, _Block]:
    spans: dict[str, tuple[int, int]] = {}
    for tag in st.tags.values():
        lo, hi = spans.get(tag.kind, (tag.address, tag.address + tag.width - 1))
        spans[tag.kind] = (min(lo, tag.address), max(hi, tag.address + tag.width - 1))
    return {k: _Block(k, lo, [0] * (hi - lo + 1)) for k, (lo, hi) in spans.items()}


class ModbusPort:
    """One pymodbus server on host:port with the units configured on it."""

    def __init__(self, host: str, port: int, units: list[_Unit]) -> None:
        self.host = host
        self.port = port
        self.units = {u.unit_id: u for u in units}
        self._internal = False
        self.server: ModbusTcpServer | None = None

    def _device(self, u: _Unit) -> SimDevice:
        blocks: list[list[SimData]] = [[], [], [], []]
        for kind, (pos, _fc) in _KINDS.items():
            b = u.blocks.get(kind)
            if b is None:
                # pymodbus wants every block; an unused kind is one invalid (refused) address
                blocks[pos].append(
                    SimData(0, values=[False] * 16, datatype=DataType.BITS)
                    if pos < 2
                    else SimData(0, count=1, datatype=DataType.INVALID)
                )
            elif pos < 2:
                blocks[pos].append(
                    SimData(b.start, values=[bool(x) for x in b.image], datatype=DataType.BITS)
                )
            else:
                blocks[pos].append(
                    SimData(b.start, values=list(b.image), datatype=DataType.REGISTERS)
                )
        return SimDevice(
            id=u.unit_id,
            simdata=(blocks[0], blocks[1], blocks[2], blocks[3]),
            action=functools.partial(self._action, u.unit_id),
        )

    async def _action(
        self,
        unit_id: int,
        _fc: int,
        _start: int,
        _address: int,
        _count: int,
        _regs: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> None:
        if self._internal:
            return None
        u = self.units[unit_id]
        if not u.answering:
            raise NoSuchIdException(f"unit {unit_id} is down")  # -> no response at all
        if set_values is not None:
            u.dirty = True
        return None

    async def start(self) -> None:
        devices = [self._device(u) for u in self.units.values()]
        self.server = ModbusTcpServer(
            devices, address=(self.host, self.port), ignore_missing_devices=True
        )
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    async def collect_writes(self) -> list[tuple[int, str, float]]:
        """Control points clients changed since the last update: (plant index, signal, value)."""
        assert self.server is not None
        writes: list[tuple[int, str, float]] = []
        for u in self.units.values():
            if not u.dirty:
                continue
            u.dirty = False
            current: dict[str, list[int]] = {}
            self._internal = True
            try:
                for kind in ("holding", "coil"):
                    b = u.blocks.get(kind)
                    if b is not None:
                        got = await self.server.async_getValues(
                            u.unit_id, _KINDS[kind][1], b.start, len(b.image)
                        )
                        current[kind] = [int(x) for x in got]
            finally:
                self._internal = False
            for sig, tag in u.writable:
                b = u.blocks[tag.kind]
                lo, hi = (
                    tag.address - b.start,
                    tag.address - b.start + (1 if is_bit_tag(tag) else tag.width),
                )
                now, before = current[tag.kind][lo:hi], b.image[lo:hi]
                if now == before:
                    continue
                new, old = decode_registers(tag, now), decode_registers(tag, before)
                if new != old:
                    if sig in CONTROL_POINTS:
                        writes.append((u.plant_index, sig, new))
                        log.info(
                            "control write station=%s signal=%s value=%s (was %s)",
                            u.station.id,
                            sig,
                            new,
                            old,
                        )
                    else:
                        log.warning(
                            "write to read-only point ignored station=%s signal=%s value=%s",
                            u.station.id,
                            sig,
                            new,
                        )
        return writes

    async def publish(
        self, values: np.ndarray, extras: dict[str, np.ndarray], answering: np.ndarray
    ) -> None:
        """Write the plant's readings into every unit's registers; set who answers."""
        assert self.server is not None
        self._internal = True
        try:
            for u in self.units.values():
                i = u.plant_index
                u.answering = bool(answering[i])
                row = values[i]
                for col, tag in u.canon:
                    self._place(u, tag, row[col])
                for name, tag in u.extras:
                    arr = extras.get(name)
                    self._place(u, tag, float(arr[i]) if arr is not None else 0.0)
                for kind, b in u.blocks.items():
                    fc = _KINDS[kind][1]
                    vals: list[int] | list[bool] = (
                        [bool(x) for x in b.image] if kind in ("coil", "discrete") else b.image
                    )
                    await self.server.async_setValues(u.unit_id, fc, b.start, vals)
        finally:
            self._internal = False

    @staticmethod
    def _place(u: _Unit, tag: ModbusTag, value: float) -> None:
        b = u.blocks[tag.kind]
        off = tag.address - b.start
        regs = encode_clamped(tag, float(value))
        if tag.bit is not None:
            mask = encode_registers(tag, 1.0)[0]  # the bit's position as it sits on the wire
            b.image[off] = (b.image[off] & ~mask & 0xFFFF) | regs[0]
        else:
            b.image[off : off + len(regs)] = regs


class ModbusServers:
    """Every Modbus station of the config, grouped into one server per (host, port)."""

    def __init__(
        self, stations: Sequence[tuple[int, ModbusStation]], port_map: dict[int, int]
    ) -> None:
        by_port: dict[tuple[str, int], list[_Unit]] = {}
        for idx, st in stations:
            ep = st.modbus
            u = _Unit(plant_index=idx, station=st, unit_id=ep.unit_id, blocks=_layout(st))
            for sig, tag in st.tags.items():
                if sig in signals.INDEX:
                    u.canon.append((signals.INDEX[sig], tag))
                else:
                    u.extras.append((sig, tag))
                if tag.kind in ("holding", "coil"):
                    u.writable.append((sig, tag))
            by_port.setdefault((ep.host, port_map.get(ep.port, ep.port)), []).append(u)
        self.ports = [ModbusPort(h, p, units) for (h, p), units in sorted(by_port.items())]

    async def start(self) -> None:
        for p in self.ports:
            await p.start()

    async def stop(self) -> None:
        for p in self.ports:
            await p.stop()

    async def collect_writes(self) -> list[tuple[int, str, float]]:
        out: list[tuple[int, str, float]] = []
        for p in self.ports:
            out.extend(await p.collect_writes())
        return out

    async def publish(
        self, values: np.ndarray, extras: dict[str, np.ndarray], answering: np.ndarray
    ) -> None:
        for p in self.ports:
            await p.publish(values, extras, answering)

    def describe(self) -> list[str]:
        return [
            f"modbus {p.host}:{p.port} units {','.join(str(u) for u in sorted(p.units))}"
            for p in self.ports
        ]
