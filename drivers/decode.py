"""Modbus register <-> engineering value conversion, table-driven, scalar and vectorised.

The type table (`drivers/registers.py`) says how many registers a type spans and how its
big-endian bytes unpack; byte order and word order are two independent swaps applied before unpacking:

    byte_order little  -> the two bytes inside every 16-bit register are swapped (BADC)
    word_order little  -> the registers of a 32/64-bit value come low word first (CDAB)
    both little        -> DCBA

A `bit:` tag takes one bit (0 = least significant) of the 16-bit register value after the
byte swap. Coils and discrete inputs arrive as single bits. Engineering value =
raw * scale + offset; `encode_registers` inverts that, rounds for integer types and refuses
(ValueError) a value whose raw form the type cannot hold: a silently clamped setpoint is
worse than a refused one.

`DecodePlan` is the tick path: compiled once per station from its tags and their positions
in the driver's register/bit buffers. The byte and word orders of every tag are folded
into ONE byte permutation that lays all values out big-endian, back to back, so a single
precompiled `struct.Struct` unpacks the whole station; a dozen numpy operations then apply
bits, scale, offset and quality (NaN/inf from a device float is bad quality). The cost
does not grow with the number of distinct types or orders, and there is no Python loop
per signal.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from drivers.registers import BIT_KINDS, REGISTER_TYPES
from drivers.schema import ModbusTag


def is_bit_tag(tag: ModbusTag) -> bool:
    """A coil or discrete input: one bit in the bit address space, not a register."""
    return tag.kind in BIT_KINDS


def _swap_bytes(reg: int) -> int:
    return ((reg & 0xFF) << 8) | (reg >> 8)


def _wire_to_be(tag: ModbusTag, regs: Sequence[int]) -> list[int]:
    """Registers as sent -> registers in big-endian (ABCD) order. The swaps are involutions,
    so the same function maps big-endian back to the wire."""
    out = [int(r) & 0xFFFF for r in regs]
    if tag.byte_order == "little":
        out = [_swap_bytes(r) for r in out]
    if tag.word_order == "little":
        out.reverse()
    return out


def raw_to_value(tag: ModbusTag, raw: float) -> float:
    return float(raw) * tag.scale + tag.offset


def value_to_raw(tag: ModbusTag, value: float) -> float | int:
    """Engineering value -> the raw number the device holds; ValueError if it cannot."""
    spec = REGISTER_TYPES[tag.type]
    raw = (float(value) - tag.offset) / tag.scale
    if tag.bit is not None or is_bit_tag(tag) or tag.type == "bool":
        bit = round(raw)
        if bit not in (0, 1) or abs(raw - bit) > 1e-6:
            raise ValueError(f"{value!r} is not a bit value (raw {raw!r}; want 0 or 1)")
        return bit
    if spec.integer:
        if not math.isfinite(raw):
            raise ValueError(f"{value!r} has no {tag.type} form (raw {raw!r})")
        iraw = round(raw)
        if not spec.lo <= iraw <= spec.hi:
            raise ValueError(
                f"{value!r} needs raw {iraw}, outside {tag.type} range [{spec.lo}, {spec.hi}]"
                f" (scale {tag.scale}, offset {tag.offset})"
            )
        return iraw
    # NaN and +-inf are representable (a device may report them); finite overflow is not.
    if math.isfinite(raw) and not spec.lo <= raw <= spec.hi:
        raise ValueError(f"{value!r} needs raw {raw!r}, outside the {tag.type} range")
    return raw


def encode_registers(tag: ModbusTag, value: float) -> list[int]:
    """Engineering value -> the register(s) (or the one bit, for coils/discretes) on the wire.

    For a `bit:` tag the result is the register with only that bit set (or 0): OR the
    results of the bits of one status word together, or use `set_bit` to change one bit
    of a register read back from the device.
    """
    raw = value_to_raw(tag, value)
    if is_bit_tag(tag):
        return [int(raw)]
    if tag.bit is not None:
        return _wire_to_be(tag, [int(raw) << tag.bit])
    spec = REGISTER_TYPES[tag.type]
    data = struct.pack(spec.fmt, raw)
    be = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return _wire_to_be(tag, be)


def set_bit(tag: ModbusTag, reg: int, value: float) -> int:
    """Read-modify-write of one bit: the register `reg` (as on the wire) with tag.bit set to value."""
    if tag.bit is None:
        raise ValueError("set_bit needs a tag with `bit:`")
    bit = int(value_to_raw(tag, value))
    be = _wire_to_be(tag, [reg])[0]
    be = (be | (1 << tag.bit)) if bit else (be & ~(1 << tag.bit) & 0xFFFF)
    return _wire_to_be(tag, [be])[0]


def decode_registers(tag: ModbusTag, regs: Sequence[int]) -> float:
    """The register(s) (or the one bit) of one tag as read -> engineering value."""
    if is_bit_tag(tag):
        if len(regs) != 1:
            raise ValueError(f"a {tag.kind} is one bit, got {len(regs)} values")
        return raw_to_value(tag, 1 if regs[0] else 0)
    spec = REGISTER_TYPES[tag.type]
    if len(regs) != spec.width:
        raise ValueError(f"{tag.type} spans {spec.width} registers, got {len(regs)}")
    be = _wire_to_be(tag, regs)
    if tag.bit is not None:
        return raw_to_value(tag, (be[0] >> tag.bit) & 1)
    data = b"".join(r.to_bytes(2, "big") for r in be)
    (raw,) = struct.unpack(spec.fmt, data)
    return raw_to_value(tag, raw)


# --- the vectorised tick path -----------------------------------------------------------------
def _wire_bytes(tag: ModbusTag, position: int) -> list[int]:
    """Byte offsets in the wire buffer (2 bytes per register, as received) that, taken in
    this order, give the tag's value big-endian: the inverse of the two swaps above."""
    width = 1 if tag.bit is not None else REGISTER_TYPES[tag.type].width
    out: list[int] = []
    for k in range(width):
        reg = position + (width - 1 - k if tag.word_order == "little" else k)
        hi, lo = 2 * reg, 2 * reg + 1
        out += [lo, hi] if tag.byte_order == "little" else [hi, lo]
    return out


@dataclass(frozen=True, slots=True)
class DecodePlan:
    """Compiled decode of one station: buffers -> (values float64[n], quality bool[n])."""

    n: int
    reg_out: np.ndarray  # int64: output position of each register field, in field order
    perm: np.ndarray  # int64: wire-buffer byte offsets, in field order, big-endian
    layout: struct.Struct  # unpacks the permuted bytes into one raw number per field
    bit_field: np.ndarray  # int64: fields that are one bit of a register
    bit_shift: np.ndarray  # int64: ... and which bit
    coil_out: np.ndarray  # int64: output positions of coils / discrete inputs
    coil_pos: np.ndarray  # int64: ... and their positions in the bit buffer
    scale: np.ndarray  # float64 [n]
    offset: np.ndarray  # float64 [n]

    @classmethod
    def compile(cls, tags: Sequence[ModbusTag], positions: Sequence[int]) -> DecodePlan:
        """tags in signal order; positions[i] = where tag i's first register sits in the
        register buffer (or its bit in the bit buffer, for coils and discrete inputs)."""
        if len(tags) != len(positions):
            raise ValueError("one buffer position per tag")
        reg_out: list[int] = []
        perm: list[int] = []
        fmt = ">"
        bit_field: list[int] = []
        bit_shift: list[int] = []
        coil_out: list[int] = []
        coil_pos: list[int] = []
        for i, (tag, pos) in enumerate(zip(tags, positions, strict=True)):
            if is_bit_tag(tag):
                coil_out.append(i)
                coil_pos.append(pos)
                continue
            # (ModbusTag refuses a register bool without `bit:`)
            if tag.bit is not None:
                bit_field.append(len(reg_out))
                bit_shift.append(tag.bit)
                fmt += "H"
            else:
                fmt += REGISTER_TYPES[tag.type].fmt[1:]
            reg_out.append(i)
            perm += _wire_bytes(tag, pos)

        def arr(v: list[int]) -> np.ndarray:
            return np.asarray(v, dtype=np.int64)

        return cls(
            n=len(tags),
            reg_out=arr(reg_out),
            perm=arr(perm),
            layout=struct.Struct(fmt),
            bit_field=arr(bit_field),
            bit_shift=arr(bit_shift),
            coil_out=arr(coil_out),
            coil_pos=arr(coil_pos),
            scale=np.asarray([t.scale for t in tags], dtype=np.float64),
            offset=np.asarray([t.offset for t in tags], dtype=np.float64),
        )

    def decode(
        self,
        regs: bytes | bytearray | memoryview | np.ndarray,
        bits: bytes | bytearray | memoryview | np.ndarray,
        ok: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """regs: the register buffer as received (2 bytes per register, high byte first, as
        on the wire), or a uint16 array of register values; bits: one byte (0/1) per coil
        or discrete input; ok: bool[n] per signal (False where the block holding it failed).
        Bad values come back NaN."""
        values = np.empty(self.n, dtype=np.float64)
        if self.reg_out.size:
            if isinstance(regs, np.ndarray):
                regs = regs.astype(">u2").tobytes()
            wire = np.frombuffer(regs, dtype=np.uint8)
            raw = np.array(self.layout.unpack(wire[self.perm].tobytes()), dtype=np.float64)
            if self.bit_field.size:
                words = raw[self.bit_field].astype(np.int64)
                raw[self.bit_field] = (words >> self.bit_shift) & 1
            values[self.reg_out] = raw
        if self.coil_out.size:
            b = bits if isinstance(bits, np.ndarray) else np.frombuffer(bits, dtype=np.uint8)
            values[self.coil_out] = b[self.coil_pos] != 0
        values *= self.scale
        values += self.offset
        quality = np.isfinite(values)
        if ok is not None:
            quality &= ok
        if np.count_nonzero(quality) != self.n:  # (cheaper than quality.all() on small arrays)
            values[~quality] = np.nan
        return values, quality
