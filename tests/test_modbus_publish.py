"""The simulator's vectorised register publishing equals the scalar encoding, tag by tag.

`encode_column` / `RegisterMapEncoder` must give exactly the registers that
`encode_clamped` (i.e. `drivers.decode.encode_registers` plus saturation) gives, for every
tag of the example templates, over ordinary readings and the awkward ones (NaN, +-inf,
values far outside a register's range, half-way bits). Then a real pymodbus server fed by
`ModbusPort.publish` must hand those images out through its own request path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drivers.decode import is_bit_tag
from drivers.registers import REGISTER_TYPES
from stationd import signals
from stationd.config import ModbusStation, ModbusTag, load_config
from tests.servers import free_port
from tools.simulate_station.modbus_server import (
    _KINDS,
    ModbusServers,
    RegisterMapEncoder,
    bit_mask,
    encode_clamped,
    encode_column,
)

ROOT = Path(__file__).resolve().parents[1]
CFG = load_config(ROOT / "config" / "stations.yaml")
MODBUS = [st for st in CFG.stations if isinstance(st, ModbusStation)]
TAGS: dict[ModbusTag, str] = {t: f"{st.id}.{s}" for st in MODBUS for s, t in st.tags.items()}


def sample_values(tag: ModbusTag, rng: np.random.Generator, n: int = 400) -> np.ndarray:
    """Readings in range, at its edges and well beyond, plus NaN and infinities."""
    if is_bit_tag(tag) or tag.bit is not None:
        base = rng.choice([0.0, 1.0, 0.49, 0.51, 0.5, 2.0, -1.0, 1.0 + 1e-9], size=n)
        raw_lo, raw_hi = 0.0, 1.0
    elif REGISTER_TYPES[tag.type].integer:
        raw_lo, raw_hi = REGISTER_TYPES[tag.type].lo, REGISTER_TYPES[tag.type].hi
        raw = rng.uniform(raw_lo, raw_hi, size=n)
        raw[: n // 4] = rng.uniform(-1000, 1000, size=n // 4)  # near zero: typical readings
        base = raw * tag.scale + tag.offset
    else:
        raw_lo, raw_hi = -1e6, 1e6
        base = rng.normal(0, 300, size=n) * tag.scale + tag.offset
    extreme = [np.nan, 1e40, -1e40, 0.0, tag.offset]
    if not (is_bit_tag(tag) or tag.bit is not None):  # (the scalar path overflows on a bit)
        extreme += [np.inf, -np.inf]
    extreme += [raw_lo * tag.scale + tag.offset, raw_hi * tag.scale + tag.offset]
    extreme += [(raw_lo - 5) * tag.scale + tag.offset, (raw_hi + 5) * tag.scale + tag.offset]
    return np.concatenate([base, np.asarray(extreme, dtype=np.float64)])


def test_every_example_tag_encodes_like_encode_registers():
    assert len(TAGS) > 40  # both PLC models, with every type, order and bit in the example
    kinds = {(t.type, t.byte_order, t.word_order, t.bit is not None, t.kind) for t in TAGS}
    assert len(kinds) >= 8
    rng = np.random.default_rng(7)
    for tag, name in TAGS.items():
        values = sample_values(tag, rng)
        got = encode_column(tag, values)
        for v, words in zip(values.tolist(), got.tolist(), strict=True):
            assert words == encode_clamped(tag, v), (name, v, words)


def reference_image(tags: list[ModbusTag], row: np.ndarray) -> dict[str, list[int]]:
    """The register images the old per-tag loop built: encode_clamped, bits OR-ed in."""
    enc = RegisterMapEncoder(tags)
    out = {k: [0] * size for k, (_, size) in enc.spans.items()}
    for tag, v in zip(tags, row.tolist(), strict=True):
        img, off = out[tag.kind], tag.address - enc.spans[tag.kind][0]
        regs = encode_clamped(tag, v)
        if tag.bit is not None:
            img[off] = (img[off] & ~bit_mask(tag) & 0xFFFF) | regs[0]
        else:
            img[off : off + len(regs)] = regs
    return out


def test_register_map_images_equal_the_per_tag_loop():
    rng = np.random.default_rng(3)
    for st in MODBUS[:4]:
        tags = list(st.tags.values())
        cols = np.stack([sample_values(t, rng, 60)[:60] for t in tags], axis=1)
        cols[rng.random(cols.shape) < 0.05] = np.nan
        images = RegisterMapEncoder(tags).encode(cols)
        for i in range(cols.shape[0]):
            want = reference_image(tags, cols[i])
            assert {k: v[i].tolist() for k, v in images.items()} == want, (st.id, i)


def plant_like(n: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    values = rng.uniform(0, 90, size=(n, signals.K))
    for name in ("circ_pump_running", "makeup_pump_running", "mains_power"):
        values[:, signals.idx(name)] = rng.integers(0, 2, size=n)
    return values, {"circ_pump_current": rng.uniform(5, 100, size=n)}


async def read_back(servers: ModbusServers) -> dict[tuple[int, str], list[int]]:
    """Every unit's blocks through pymodbus' own store access, as a request reads them."""
    out: dict[tuple[int, str], list[int]] = {}
    for p in servers.ports:
        assert p.server is not None
        for u in p.units.values():
            for kind, b in u.blocks.items():
                got = await p.server.async_getValues(
                    u.unit_id, _KINDS[kind][1], b.start, len(b.image)
                )
                out[u.plant_index, kind] = [int(x) for x in got]
    return out


async def test_published_registers_are_what_the_server_serves():
    stations = list(enumerate(MODBUS))
    port_map = {p: free_port() for p in {st.modbus.port for st in MODBUS}}
    servers = ModbusServers(stations, port_map)
    await servers.start()
    try:
        rng = np.random.default_rng(5)
        answering = np.ones(len(MODBUS), dtype=bool)
        prev_values, prev_extras = plant_like(len(MODBUS), rng)
        for step in range(3):
            values, extras = plant_like(len(MODBUS), rng)
            if step == 2:  # only one station changes: only its blocks are pushed
                values = prev_values.copy()
                values[1, signals.idx("primary_supply_temp")] += 1.0
                extras = prev_extras
            await servers.publish(values, extras, answering)
            served = await read_back(servers)
            for i, st in stations:
                cols = np.asarray(
                    [
                        values[i, signals.INDEX[s]] if s in signals.INDEX else extras[s][i]
                        for s in st.tags
                    ]
                )
                for kind, want in reference_image(list(st.tags.values()), cols).items():
                    assert served[i, kind] == want, (step, st.id, kind)
            assert await servers.collect_writes() == []  # our own pushes are not client writes
            prev_values, prev_extras = values, extras
    finally:
        await servers.stop()
