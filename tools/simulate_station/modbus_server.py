"""Real pymodbus TCP servers for the simulated Modbus stations, fed from the plant.

One `ModbusTcpServer` per distinct port hosts every unit id configured on that port (a
`SimDevice` per unit with the four separate blocks — coils, discrete inputs, holding and
input registers — because the register maps reuse address 0 in several kinds). Each block
spans its kind's lowest to highest tagged address with no holes, so the daemon may read
across gaps between tags as its read planner likes.

Publishing is vectorised: the units of a port that share one register map form a group,
and `RegisterMapEncoder` turns the group's readings (a [units x tags] array) into its
register images with a few numpy operations per tag — the same table-driven encoding as
`drivers.decode.encode_registers` (byte/word order, scale/offset, `bit:` tags), with the
simulator's clamping (`encode_clamped`) — instead of a Python loop per station per signal.
Only the images that changed are pushed, straight into the server's register lists: a
1,000-station update costs a few milliseconds, so the server loop is not blocked while a
poller's requests wait. Each request is served by pymodbus' own handler, minus a
thread-safe hop it makes per request (`_RequestHandler`): with both, the simulator serves
~15,000 requests/s flat out on this machine, where it served ~3,300 before.

How a PLC "stops answering" in pymodbus 3.16.1: a device's `action` hook runs on every
request; for a unit that is down the hook raises `NoSuchIdException`, and the server,
built with `ignore_missing_devices=True`, then sends nothing, so the client's request
times out exactly as with a dead PLC behind a live gateway. The TCP port stays open (other
units on it keep answering). The hook is installed only on units that are down: an
answering unit's requests run no simulator code at all.

Control writes: after each update the writable blocks (holding registers, coils) as
pushed are remembered; before the next update a unit whose registers differ from that
copy was written by a client, its writable tags are read back and compared with what the
simulator last wrote, and each changed control point becomes a plant set-point.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.decode import decode_registers, encode_registers, is_bit_tag
from drivers.registers import REGISTER_TYPES
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
# kind -> the block letter of pymodbus' SimRuntime (its per-device register store)
_RUNTIME_BLOCK = {"coil": "c", "discrete": "d", "holding": "h", "input": "i"}
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


def _swap_bytes(words: np.ndarray) -> np.ndarray:
    return ((words & 0xFF) << 8) | (words >> 8)


def bit_mask(tag: ModbusTag) -> int:
    """The register with only tag.bit set, as it sits on the wire (after the byte order)."""
    assert tag.bit is not None
    be = 1 << tag.bit
    return int(_swap_bytes(np.uint16(be))) if tag.byte_order == "little" else be


def encode_column(tag: ModbusTag, values: np.ndarray) -> np.ndarray:
    """`encode_clamped` of one tag over many units: float64[n] -> uint16[n, width], the
    registers as on the wire (coils/discretes: [n, 1] of 0/1; `bit:` tags: the register
    with only that bit set, or 0)."""
    v = np.asarray(values, dtype=np.float64)
    spec = REGISTER_TYPES[tag.type]
    with np.errstate(invalid="ignore", over="ignore"):
        raw = (v - tag.offset) / tag.scale
        if is_bit_tag(tag) or tag.bit is not None:
            bit = np.rint(raw)
            ok = ((bit == 0) | (bit == 1)) & (np.abs(raw - bit) <= 1e-6)
            # not a clean 0/1: the engineering value decides, as encode_clamped does
            fallback = np.rint(((v >= 0.5).astype(np.float64) - tag.offset) / tag.scale)
            bits = np.clip(np.where(ok, bit, fallback), 0, 1).astype(np.uint16)
            if is_bit_tag(tag):
                return bits[:, None]
            words = bits << np.uint16(tag.bit)
            if tag.byte_order == "little":
                words = _swap_bytes(words)
            return words[:, None]
        if spec.integer:
            lo, hi = _INT_RANGE[tag.type]
            r = np.rint(raw)
            ok = np.isfinite(r) & (r >= lo) & (r <= hi)
            clamped = np.rint(np.clip(np.where(np.isfinite(raw), raw, 0.0), lo, hi))
            r = np.clip(np.where(ok, r, clamped), lo, hi)
            be = r.astype(np.int64).astype(spec.dtype)
        else:
            # a finite value past the float's range: encode_clamped's bit fallback
            over = np.isfinite(raw) & (np.abs(raw) > spec.hi)
            fallback = ((v >= 0.5).astype(np.float64) - tag.offset) / tag.scale
            be = np.where(over, fallback, raw).astype(spec.dtype)
    words = be.view(">u2").reshape(len(v), spec.width).astype(np.uint16)
    if tag.byte_order == "little":
        words = _swap_bytes(words)
    if tag.word_order == "little":
        words = words[:, ::-1]
    return words


class RegisterMapEncoder:
    """One register map compiled for many units: readings [units x tags] -> one image per
    kind, [units x span] (registers as uint16 words; coils/discretes one 0/1 per address)."""

    def __init__(self, tags: Sequence[ModbusTag]) -> None:
        self.tags = list(tags)
        spans: dict[str, tuple[int, int]] = {}
        for tag in self.tags:
            lo, hi = spans.get(tag.kind, (tag.address, tag.address + tag.width - 1))
            spans[tag.kind] = (min(lo, tag.address), max(hi, tag.address + tag.width - 1))
        self.spans = {k: (lo, hi - lo + 1) for k, (lo, hi) in spans.items()}

    def encode(self, columns: np.ndarray) -> dict[str, np.ndarray]:
        n = columns.shape[0]
        out = {k: np.zeros((n, size), dtype=np.uint16) for k, (_, size) in self.spans.items()}
        for j, tag in enumerate(self.tags):
            words = encode_column(tag, columns[:, j])
            img = out[tag.kind]
            off = tag.address - self.spans[tag.kind][0]
            if tag.bit is not None:
                keep = np.uint16(~bit_mask(tag) & 0xFFFF)
                img[:, off] = (img[:, off] & keep) | words[:, 0]
            else:
                img[:, off : off + words.shape[1]] = words
        return out


def pack_bits(bits: np.ndarray, start: int) -> np.ndarray:
    """0/1 per bit address from `start` -> the 16-bit registers pymodbus' simulator keeps
    them in (bit address a is bit a % 16 of register a // 16), [units x registers]."""
    addr = start + np.arange(bits.shape[1])
    reg = addr // 16 - start // 16
    weights = np.zeros((bits.shape[1], int(reg[-1]) + 1), dtype=np.int64)
    weights[np.arange(bits.shape[1]), reg] = 1 << (addr % 16)
    return (bits.astype(np.int64) @ weights).astype(np.uint16)


class _RequestHandler(ServerRequestHandler):
    """pymodbus' request handler minus one hop: pymodbus 3.16 hands every request to
    `asyncio.run_coroutine_threadsafe` (a concurrent Future, locks and a self-pipe write)
    although it already runs on the loop's thread; a third of the server's CPU under
    load. A plain task runs the same `handle_request` on the same loop."""

    _pending: ClassVar[set[asyncio.Task[None]]] = set()  # the loop keeps only weak task references

    def handle_later(self) -> None:
        task = self.loop.create_task(self.handle_request())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


class _TcpServer(ModbusTcpServer):
    """A `ModbusTcpServer` whose connections use `_RequestHandler`."""

    def callback_new_connection(self) -> ServerRequestHandler:
        return _RequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


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
    # kind -> (the server's register list, offset of this block in it, as last pushed)
    pushed: dict[str, tuple[list[int], int, list[int]]] = field(default_factory=dict)


def _layout(st: ModbusStation) -> dict[str, _Block]:
    spans = RegisterMapEncoder(list(st.tags.values())).spans
    return {k: _Block(k, lo, [0] * size) for k, (lo, size) in spans.items()}


@dataclass
class _Group:
    """The units of one port that share one register map: encoded together."""

    units: list[_Unit]
    rows: np.ndarray  # plant index of each unit
    encoder: RegisterMapEncoder
    signals: list[str]  # column name of each tag (canonical signal or extra)
    last: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> images as pushed


def _group(units: list[_Unit]) -> list[_Group]:
    by_map: dict[tuple[tuple[str, ModbusTag], ...], list[_Unit]] = {}
    for u in units:
        by_map.setdefault(tuple(u.station.tags.items()), []).append(u)
    return [
        _Group(
            units=us,
            rows=np.asarray([u.plant_index for u in us], dtype=np.int64),
            encoder=RegisterMapEncoder([t for _, t in key]),
            signals=[s for s, _ in key],
        )
        for key, us in by_map.items()
    ]


class ModbusPort:
    """One pymodbus server on host:port with the units configured on it."""

    def __init__(self, host: str, port: int, units: list[_Unit]) -> None:
        self.host = host
        self.port = port
        self.units = {u.unit_id: u for u in units}
        self.groups = _group(units)
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
        return SimDevice(id=u.unit_id, simdata=(blocks[0], blocks[1], blocks[2], blocks[3]))

    async def _down(
        self,
        _fc: int,
        _start: int,
        _address: int,
        _count: int,
        _regs: list[int],
        _set_values: list[int] | list[bool] | None,
    ) -> None:
        """The action hook of a unit that is down: no response at all (see the docstring)."""
        if self._internal:
            return None
        raise NoSuchIdException("unit is down")

    async def start(self) -> None:
        devices = [self._device(u) for u in self.units.values()]
        self.server = _TcpServer(
            devices, address=(self.host, self.port), ignore_missing_devices=True
        )
        self._bind_registers()
        await self.server.serve_forever(background=True)

    def _bind_registers(self) -> None:
        """Find each block's register list in the server's store (pymodbus 3.16 SimRuntime:
        block letter -> (start, count, registers, flags)); publish writes there directly."""
        assert self.server is not None
        runtimes = self.server.context.devices  # type: ignore[union-attr]
        for u in self.units.values():
            rt = runtimes[u.unit_id]
            for kind, b in u.blocks.items():
                first, count, regs, _flags = rt.block[_RUNTIME_BLOCK[kind]]
                bits = kind in ("coil", "discrete")
                off = (b.start // 16 if bits else b.start) - first
                size = (
                    (b.start + len(b.image) - 1) // 16 - b.start // 16 + 1 if bits else len(b.image)
                )
                if off < 0 or off + size > count:
                    raise RuntimeError(
                        f"unexpected pymodbus register store for unit {u.unit_id} {kind}: "
                        f"start {first} count {count}, want {b.start}+{size}"
                    )
                u.pushed[kind] = (regs, off, list(regs[off : off + size]))

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    def _written(self, u: _Unit) -> bool:
        """Did a client write to this unit since the last publish?"""
        for kind in ("holding", "coil"):
            got = u.pushed.get(kind)
            if got is not None:
                regs, off, last = got
                if regs[off : off + len(last)] != last:
                    return True
        return False

    async def collect_writes(self) -> list[tuple[int, str, float]]:
        """Control points clients changed since the last update: (plant index, signal, value)."""
        assert self.server is not None
        writes: list[tuple[int, str, float]] = []
        for u in self.units.values():
            if not u.writable or not self._written(u):
                continue
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

    def images(
        self, group: _Group, values: np.ndarray, extras: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The group's register images for these readings (kind -> [units x span])."""
        cols = np.zeros((len(group.units), len(group.signals)), dtype=np.float64)
        for j, sig in enumerate(group.signals):
            col = signals.INDEX.get(sig)
            if col is not None:
                cols[:, j] = values[group.rows, col]
            elif (arr := extras.get(sig)) is not None:
                cols[:, j] = arr[group.rows]
        return group.encoder.encode(cols)

    async def publish(
        self, values: np.ndarray, extras: dict[str, np.ndarray], answering: np.ndarray
    ) -> None:
        """Write the plant's readings into every unit's registers; set who answers."""
        assert self.server is not None
        runtimes = self.server.context.devices  # type: ignore[union-attr]
        for u in self.units.values():
            up = bool(answering[u.plant_index])
            if up != u.answering or (not up and runtimes[u.unit_id].action is None):
                runtimes[u.unit_id].action = None if up else self._down
            u.answering = up
        for g in self.groups:
            for kind, img in self.images(g, values, extras).items():
                prev = g.last.get(kind)
                changed = (
                    np.arange(len(g.units))
                    if prev is None
                    else np.flatnonzero((img != prev).any(axis=1))
                )
                if changed.size == 0:
                    continue
                bits = kind in ("coil", "discrete")
                start = g.encoder.spans[kind][0]
                store = pack_bits(img[changed], start) if bits else img[changed]
                for row, words in zip(changed.tolist(), store.tolist(), strict=True):
                    u = g.units[row]
                    regs, off, _ = u.pushed[kind]
                    regs[off : off + len(words)] = words
                    u.pushed[kind] = (regs, off, words)
                    u.blocks[kind].image = img[row].tolist() if bits else words
                g.last[kind] = img


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
