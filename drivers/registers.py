"""The Modbus register type table: one row per data type, the only place widths live.

Every part that lays out, reads or writes registers takes its facts from here: the config
model (a tag's width, addresses past 65535, overlapping registers), block planning, the
decoder and encoder (`drivers/decode.py`) and the simulator's register images
(`tools/simulate_station/modbus_server.py`). A type's bytes are described big-endian
(ABCD); byte and word order are swaps applied around them (see decode.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

DataType = Literal["bool", "int16", "uint16", "int32", "uint32", "float32", "float64"]
RegisterKind = Literal["holding", "input", "coil", "discrete"]

#: coils and discrete inputs are single bits in their own address space, not registers
BIT_KINDS: frozenset[str] = frozenset({"coil", "discrete"})


@dataclass(frozen=True, slots=True)
class RegisterType:
    """How one data type sits in 16-bit registers."""

    width: int  # registers
    fmt: str  # struct format of the big-endian bytes
    dtype: str  # numpy dtype of the big-endian bytes
    integer: bool
    lo: float  # the raw range the type can hold
    hi: float


_F32_MAX = float(np.finfo(np.float32).max)

REGISTER_TYPES: dict[str, RegisterType] = {
    "bool": RegisterType(1, ">H", ">u2", True, 0, 1),
    "int16": RegisterType(1, ">h", ">i2", True, -(2**15), 2**15 - 1),
    "uint16": RegisterType(1, ">H", ">u2", True, 0, 2**16 - 1),
    "int32": RegisterType(2, ">i", ">i4", True, -(2**31), 2**31 - 1),
    "uint32": RegisterType(2, ">I", ">u4", True, 0, 2**32 - 1),
    "float32": RegisterType(2, ">f", ">f4", False, -_F32_MAX, _F32_MAX),
    "float64": RegisterType(4, ">d", ">f8", False, -math.inf, math.inf),
}
assert set(REGISTER_TYPES) == set(DataType.__args__), "one row per DataType"  # type: ignore[attr-defined]


def width(data_type: str) -> int:
    """Registers a value of `data_type` spans."""
    return REGISTER_TYPES[data_type].width
