"""Compile a Modbus station's tag map into the fewest block reads, once, at start-up.

As Telegraf's modbus `request.go` does: per register kind, sort the tags by address and
merge neighbours into one request while the gap between them is at most
`max_gap_registers` (reading a few unused registers is cheaper than another round trip)
and the block stays within `max_block_registers` (125, the Modbus limit for FC3/FC4) or
2000 bits for coils and discrete inputs (FC1/FC2). The plan also fixes where each block
lands in the driver's register and bit buffers, so decoding is one `DecodePlan` call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from drivers.decode import DecodePlan
from drivers.schema import DriverTiming, ModbusStationSpec, ModbusTag

MAX_BITS_PER_REQUEST = 2000  # Modbus limit for read coils / read discrete inputs
# A bit costs 1/16 of a register on the wire: allow a proportionally wider gap for bits.
BITS_PER_REGISTER = 16
KINDS = ("holding", "input", "coil", "discrete")


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: `count` registers (or bits) of `kind` from `start`."""

    kind: str
    start: int
    count: int
    offset: int = 0  # where the block's first value lands in the register or bit buffer
    signals: tuple[str, ...] = ()  # the signals decoded from this block

    @property
    def end(self) -> int:
        return self.start + self.count


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """Everything the driver needs on the tick path, built once per station."""

    station_id: str
    signals: tuple[str, ...]  # output order (station.signals)
    tags: tuple[ModbusTag, ...]  # same order
    blocks: tuple[Block, ...]
    n_registers: int  # size of the register buffer (holding + input blocks)
    n_bits: int  # size of the bit buffer (coil + discrete blocks)
    signal_block: np.ndarray  # int64 [n_signals]: index into blocks
    decode: DecodePlan

    def block_quality(self, block_ok: np.ndarray) -> np.ndarray:
        """bool[n_blocks] -> bool[n_signals]."""
        return block_ok[self.signal_block]


def plan_blocks(
    tags: Mapping[str, ModbusTag],
    max_gap_registers: int = 8,
    max_block_registers: int = 125,
    max_block_bits: int = MAX_BITS_PER_REQUEST,
) -> list[Block]:
    """Group tags into block requests, per kind, in kind then address order."""
    blocks: list[Block] = []
    for kind in KINDS:
        points = sorted(
            (tag.address, tag.address + tag.width, sig)
            for sig, tag in tags.items()
            if tag.kind == kind
        )
        if not points:
            continue
        bitwise = kind in ("coil", "discrete")
        limit = max_block_bits if bitwise else max_block_registers
        gap = max_gap_registers * BITS_PER_REGISTER if bitwise else max_gap_registers
        start, end, members = points[0][0], points[0][1], [points[0][2]]
        for a, e, sig in points[1:]:
            # merge when the hole is small and the merged block still fits one request
            if a - end <= gap and max(end, e) - start <= limit:
                end = max(end, e)
                members.append(sig)
                continue
            blocks.append(Block(kind, start, end - start, signals=tuple(members)))
            start, end, members = a, e, [sig]
        blocks.append(Block(kind, start, end - start, signals=tuple(members)))
    return blocks


def plan_station(station: ModbusStationSpec, defaults: DriverTiming) -> ReadPlan:
    """The compiled read plan of one station."""
    raw = plan_blocks(station.tags, defaults.max_gap_registers, defaults.max_block_registers)
    blocks: list[Block] = []
    n_regs = n_bits = 0
    for b in raw:
        if b.kind in ("coil", "discrete"):
            blocks.append(Block(b.kind, b.start, b.count, n_bits, b.signals))
            n_bits += b.count
        else:
            blocks.append(Block(b.kind, b.start, b.count, n_regs, b.signals))
            n_regs += b.count
    where = {sig: i for i, b in enumerate(blocks) for sig in b.signals}
    order = station.signals
    tags = tuple(station.tags[s] for s in order)
    positions: Sequence[int] = [
        blocks[where[s]].offset + station.tags[s].address - blocks[where[s]].start for s in order
    ]
    return ReadPlan(
        station_id=station.id,
        signals=order,
        tags=tags,
        blocks=tuple(blocks),
        n_registers=n_regs,
        n_bits=n_bits,
        signal_block=np.asarray([where[s] for s in order], dtype=np.int64),
        decode=DecodePlan.compile(tags, positions),
    )


def describe(plan: ReadPlan) -> str:
    """One line for the start-up log: how many requests a poll of this station costs."""
    parts = [f"{b.kind}[{b.start}:{b.end}]" for b in plan.blocks]
    return f"{plan.station_id}: {len(plan.signals)} signals in {len(plan.blocks)} requests: " + (
        ", ".join(parts)
    )
