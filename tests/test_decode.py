"""Register encode/decode: every type x byte order x word order x scale/offset round-trips,
the vectorised DecodePlan agrees with the scalar path, and block planning golden cases."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient

from drivers.decode import DecodePlan, decode_registers, encode_registers, set_bit
from drivers.modbus_plan import Block, describe, plan_blocks, plan_station
from stationd.config import Defaults, ModbusTag, load_config
from tests.conftest import ROOT

ORDERS = ("big", "little")
INT_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}
scales = st.sampled_from([1.0, 0.1, 0.01, 0.001, 2.5, -1.0, 10.0])
offsets = st.sampled_from([0.0, -40.0, 273.15, 100.0])


@st.composite
def int_cases(draw: st.DrawFn) -> tuple[ModbusTag, int]:
    typ = draw(st.sampled_from(sorted(INT_RANGES)))
    lo, hi = INT_RANGES[typ]
    tag = ModbusTag(
        kind=draw(st.sampled_from(["holding", "input"])),
        address=draw(st.integers(0, 1000)),
        type=typ,
        byte_order=draw(st.sampled_from(ORDERS)),
        word_order=draw(st.sampled_from(ORDERS)),
        scale=draw(scales),
        offset=draw(offsets),
    )
    return tag, draw(st.integers(lo, hi))


@st.composite
def float_cases(draw: st.DrawFn) -> tuple[ModbusTag, float]:
    typ = draw(st.sampled_from(["float32", "float64"]))
    raw = draw(
        st.floats(width=32 if typ == "float32" else 64, allow_nan=False, allow_infinity=False)
    )
    tag = ModbusTag(
        address=draw(st.integers(0, 1000)),
        type=typ,
        byte_order=draw(st.sampled_from(ORDERS)),
        word_order=draw(st.sampled_from(ORDERS)),
    )
    return tag, raw


@st.composite
def bit_cases(draw: st.DrawFn) -> tuple[ModbusTag, int]:
    kind = draw(st.sampled_from(["holding", "input", "coil", "discrete"]))
    if kind in ("coil", "discrete"):
        tag = ModbusTag(kind=kind, address=draw(st.integers(0, 1000)), type="bool")
    else:
        tag = ModbusTag(
            kind=kind,
            address=draw(st.integers(0, 1000)),
            type=draw(st.sampled_from(["bool", "uint16", "int16"])),
            bit=draw(st.integers(0, 15)),
            byte_order=draw(st.sampled_from(ORDERS)),
        )
    return tag, draw(st.integers(0, 1))


def _plan_decode(tag: ModbusTag, regs: list[int]) -> float:
    plan = DecodePlan.compile([tag], [0])
    if tag.kind in ("coil", "discrete"):
        values, quality = plan.decode(np.zeros(0, np.uint16), np.asarray(regs, np.uint8))
    else:
        values, quality = plan.decode(np.asarray(regs, np.uint16), np.zeros(0, np.uint8))
    return float(values[0]) if quality[0] else math.nan


@given(int_cases())
def test_integer_types_round_trip_through_scale_and_offset(case: tuple[ModbusTag, int]) -> None:
    tag, raw = case
    value = raw * tag.scale + tag.offset
    regs = encode_registers(tag, value)
    assert len(regs) == tag.width and all(0 <= r <= 0xFFFF for r in regs)
    assert decode_registers(tag, regs) == value
    assert _plan_decode(tag, regs) == value


@given(float_cases())
def test_float_types_round_trip_bit_exact(case: tuple[ModbusTag, float]) -> None:
    tag, raw = case
    regs = encode_registers(tag, raw)
    assert decode_registers(tag, regs) == raw
    assert _plan_decode(tag, regs) == raw


@given(bit_cases())
def test_bits_round_trip(case: tuple[ModbusTag, int]) -> None:
    tag, bit = case
    regs = encode_registers(tag, bit)
    assert decode_registers(tag, regs) == bit
    assert _plan_decode(tag, regs) == bit


@given(bit_cases(), st.integers(0, 0xFFFF), st.integers(0, 1))
def test_set_bit_changes_only_its_bit(case: tuple[ModbusTag, int], reg: int, bit: int) -> None:
    tag, _ = case
    if tag.bit is None:
        return
    new = set_bit(tag, reg, bit)
    assert decode_registers(tag, [new]) == bit
    other = ModbusTag(address=0, type="uint16", byte_order=tag.byte_order)
    mask = 1 << tag.bit
    assert (
        int(decode_registers(other, [new])) & ~mask == int(decode_registers(other, [reg])) & ~mask
    )


def test_orders_match_the_abcd_badc_cdab_dcba_table() -> None:
    # 0x41480000 = 12.5f; the four classic layouts of its bytes A B C D.
    expected = {
        ("big", "big"): [0x4148, 0x0000],  # ABCD
        ("little", "big"): [0x4841, 0x0000],  # BADC
        ("big", "little"): [0x0000, 0x4148],  # CDAB
        ("little", "little"): [0x0000, 0x4841],  # DCBA
    }
    for (bo, wo), regs in expected.items():
        tag = ModbusTag(address=0, type="float32", byte_order=bo, word_order=wo)
        assert encode_registers(tag, 12.5) == regs
        assert decode_registers(tag, regs) == 12.5


def test_agrees_with_pymodbus_convert_from_registers() -> None:
    dt = AsyncModbusTcpClient.DATATYPE
    for typ, pdt, value in [
        ("float32", dt.FLOAT32, -3.25),
        ("float64", dt.FLOAT64, 1234.5678),
        ("int32", dt.INT32, -123456),
        ("uint32", dt.UINT32, 4000000000),
        ("int16", dt.INT16, -5),
    ]:
        for wo in ORDERS:
            tag = ModbusTag(address=0, type=typ, word_order=wo)
            regs = encode_registers(tag, value)
            assert AsyncModbusTcpClient.convert_from_registers(regs, pdt, word_order=wo) == value


@pytest.mark.parametrize(
    ("tag", "value"),
    [
        (ModbusTag(address=0, type="int16", scale=0.001), 40.0),  # raw 40000 > 32767
        (ModbusTag(address=0, type="uint16"), -1.0),
        (ModbusTag(address=0, type="uint32", scale=0.01), 5e7),  # raw 5e9 > 2^32-1
        (ModbusTag(address=0, type="int16"), math.nan),
        (ModbusTag(address=0, type="float32"), 1e39),
        (ModbusTag(address=0, type="bool", bit=3), 2.0),
        (ModbusTag(kind="coil", address=0, type="bool"), 0.5),
    ],
)
def test_out_of_range_raw_is_refused_not_clamped(tag: ModbusTag, value: float) -> None:
    with pytest.raises(ValueError):
        encode_registers(tag, value)


def test_device_nan_and_inf_are_bad_quality_in_the_plan() -> None:
    f32 = ModbusTag(address=0, type="float32")
    f64 = ModbusTag(address=2, type="float64", word_order="little")
    i16 = ModbusTag(address=6, type="int16", scale=0.1)
    regs = [*encode_registers(f32, math.nan), *encode_registers(f64, math.inf), 215]
    plan = DecodePlan.compile([f32, f64, i16], [0, 2, 6])
    values, quality = plan.decode(np.asarray(regs, np.uint16), np.zeros(0, np.uint8))
    assert quality.tolist() == [False, False, True]
    assert np.isnan(values[:2]).all() and values[2] == pytest.approx(21.5)


def test_plan_decodes_a_whole_template_like_the_scalar_path() -> None:
    cfg = load_config(ROOT / "config" / "stations.yaml")
    for station in cfg.stations:
        if station.protocol != "modbus":
            continue
        plan = plan_station(station, cfg.defaults)
        rng = np.random.default_rng(7)
        regs = rng.integers(0, 0x3FFF, plan.n_registers).astype(np.uint16)  # no NaN patterns
        bits = rng.integers(0, 2, plan.n_bits).astype(np.uint8)
        values, quality = plan.decode.decode(regs, bits)
        assert quality.all()
        for i, sig in enumerate(plan.signals):
            tag = station.tags[sig]
            b = plan.blocks[int(plan.signal_block[i])]
            pos = b.offset + tag.address - b.start
            src = bits if b.kind in ("coil", "discrete") else regs
            width = 1 if b.kind in ("coil", "discrete") else tag.width
            assert values[i] == decode_registers(tag, src[pos : pos + width].tolist()), sig


# --- block planning golden cases ---------------------------------------------------------------
def _tags(**spec: tuple[int, str] | tuple[int, str, str]) -> dict[str, ModbusTag]:
    out = {}
    for name, s in spec.items():
        kind = s[2] if len(s) > 2 else "holding"  # type: ignore[misc]
        out[name] = ModbusTag(kind=kind, address=s[0], type=s[1])
    return out


def _shape(blocks: list[Block]) -> list[tuple[str, int, int]]:
    return [(b.kind, b.start, b.count) for b in blocks]


def test_small_gaps_merge_large_gaps_split() -> None:
    tags = _tags(a=(0, "float32"), b=(2, "uint16"), c=(10, "uint16"), d=(20, "float32"))
    # gap b..c = 7 registers (3..9) <= 8: merge; gap c..d = 9 > 8: split
    assert _shape(plan_blocks(tags, max_gap_registers=8)) == [
        ("holding", 0, 11),
        ("holding", 20, 2),
    ]
    assert _shape(plan_blocks(tags, max_gap_registers=0)) == [
        ("holding", 0, 3),
        ("holding", 10, 1),
        ("holding", 20, 2),
    ]


def test_block_never_exceeds_125_registers() -> None:
    tags = {f"s{i}": ModbusTag(address=i * 2, type="float32") for i in range(100)}  # 200 regs
    blocks = plan_blocks(tags, max_gap_registers=8, max_block_registers=125)
    assert _shape(blocks) == [("holding", 0, 124), ("holding", 124, 76)]
    assert sum(len(b.signals) for b in blocks) == 100
    # a value is never split across two requests
    assert all(b.count % 2 == 0 for b in blocks)


def test_kinds_are_never_mixed_and_bits_have_their_own_limit() -> None:
    tags = _tags(
        h=(0, "uint16"),
        i=(0, "uint16", "input"),
        c0=(0, "bool", "coil"),
        c1=(100, "bool", "coil"),  # gap 99 bits <= 8*16: same request
        c2=(1999, "bool", "coil"),
        d=(5, "bool", "discrete"),
    )
    assert _shape(plan_blocks(tags, max_gap_registers=8)) == [
        ("holding", 0, 1),
        ("input", 0, 1),
        ("coil", 0, 101),
        ("coil", 1999, 1),
        ("discrete", 5, 1),
    ]
    many = {f"c{i}": ModbusTag(kind="coil", address=i, type="bool") for i in range(2500)}
    assert _shape(plan_blocks(many)) == [("coil", 0, 2000), ("coil", 2000, 500)]


def test_bits_of_one_status_word_share_the_register() -> None:
    tags = {
        "p": ModbusTag(address=30, type="bool", bit=0),
        "q": ModbusTag(address=30, type="bool", bit=1),
        "r": ModbusTag(address=31, type="int16"),
    }
    assert _shape(plan_blocks(tags)) == [("holding", 30, 2)]


def test_example_fleet_plans() -> None:
    cfg = load_config(ROOT / "config" / "stations.yaml")
    a = plan_station(cfg.station("hs001"), cfg.defaults)
    assert _shape(list(a.blocks)) == [("holding", 0, 31), ("holding", 100, 2)]
    assert a.signals[-1] == "circ_pump_current"  # extras after canonical signals
    assert describe(a) == "hs001: 22 signals in 2 requests: holding[0:31], holding[100:102]"
    b = plan_station(cfg.station("hs003"), cfg.defaults)
    assert _shape(list(b.blocks)) == [
        ("holding", 0, 1),
        ("input", 0, 30),
        ("coil", 0, 2),
        ("discrete", 0, 1),
    ]
    tight = plan_station(
        cfg.station("hs001"), Defaults(max_gap_registers=0, max_block_registers=10)
    )
    assert all(blk.count <= 10 for blk in tight.blocks)


def test_struct_reference_for_float64_dcba() -> None:
    tag = ModbusTag(address=0, type="float64", byte_order="little", word_order="little")
    regs = encode_registers(tag, 1.5)
    data = b"".join(r.to_bytes(2, "big") for r in regs)
    assert struct.unpack("<d", data)[0] == 1.5


@settings(max_examples=50)
@given(st.lists(int_cases(), min_size=1, max_size=12))
def test_plan_with_many_groups_matches_scalar(cases: list[tuple[ModbusTag, int]]) -> None:
    tags, regs, positions, expect = [], [], [], []
    for tag, raw in cases:
        positions.append(len(regs))
        value = raw * tag.scale + tag.offset
        regs.extend(encode_registers(tag, value))
        tags.append(tag)
        expect.append(value)
    values, quality = DecodePlan.compile(tags, positions).decode(
        np.asarray(regs, np.uint16), np.zeros(0, np.uint8)
    )
    assert quality.all()
    assert values.tolist() == expect
