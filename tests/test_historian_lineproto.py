"""Line protocol: escaping against influxdb-client's own Point, and the fleet encoder."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import Point

from stationd import signals
from stationd.historian.lineproto import (
    DECIMALS,
    FleetEncoder,
    StationTags,
    encode_point,
    parse_line,
    split_line,
)

# Text that stresses the escaping: Chinese, the LP separators, quotes, backslashes, tabs.
nasty = st.text(
    alphabet=st.sampled_from(list("ab换热站一支线 ,=\"'\\\t\n\r#_-.0")), min_size=0, max_size=12
)
keys = nasty.filter(lambda s: s != "")
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


def point_line(measurement, tags, fields, ts) -> str:
    p = Point(measurement)
    for k, v in tags.items():
        p.tag(k, v)
    for k, v in fields.items():
        p.field(k, v)
    p.time(ts)
    return p.to_line_protocol()


@settings(max_examples=400, deadline=None)
@given(
    measurement=keys.filter(lambda s: not s.startswith("#")),
    tags=st.dictionaries(keys, nasty, max_size=4),
    fields=st.dictionaries(keys, st.one_of(finite, st.just(math.nan)), min_size=0, max_size=4),
    ts=st.integers(min_value=0, max_value=2**62),
)
def test_escaping_matches_influxdb_client_point(measurement, tags, fields, ts):
    assert encode_point(measurement, tags, fields, ts) == point_line(measurement, tags, fields, ts)


# Names without the characters Point itself cannot round-trip (a trailing backslash is
# padded with a space; newlines become the two characters `\n`).
clean = st.text(alphabet=st.sampled_from(list('ab换热站 ,="_.')), min_size=1, max_size=10)


@settings(max_examples=300, deadline=None)
@given(
    tags=st.dictionaries(clean, clean, max_size=4),
    fields=st.dictionaries(clean, finite, min_size=1, max_size=4),
    ts=st.integers(min_value=0, max_value=2**62),
)
def test_parse_reads_back_what_encode_wrote(tags, fields, ts):
    pl = parse_line(encode_point("station", tags, fields, ts))
    assert pl.measurement == "station"
    assert pl.tags == tags
    assert pl.fields == fields
    assert pl.ts == ts


def fleet(n: int, with_indoor_every: int = 2) -> list[StationTags]:
    no_indoor = tuple(s for s in signals.NAMES if s != "indoor_temp")
    return [
        StationTags(
            f"hs{i:03d}",
            f"幸福里 {i}号站",
            "东线,一支=A" if i % 2 else "西线",
            signals.NAMES if i % with_indoor_every == 0 else (*no_indoor, "pump2_current"),
        )
        for i in range(n)
    ]


def plc_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """What a poller hands over: register integers times the tag scale, some negative."""
    dec = np.array([DECIMALS[s] for s in signals.NAMES])
    raw = rng.integers(-3000, 90000, size=(n, signals.K))
    return raw * (10.0 ** -dec.astype(float))


def test_fleet_tick_tags_match_point_and_values_read_back():
    stations = fleet(40)
    enc = FleetEncoder("测试站点 1", stations)
    rng = np.random.default_rng(7)
    v = plc_values(rng, 40)
    v[1::2, signals.idx("indoor_temp")] = np.nan  # those stations have no indoor sensor
    v[3, signals.idx("primary_flow")] = np.nan  # a bad-quality read
    v[5, signals.idx("outdoor_temp")] = -0.25  # small negative: sign must survive
    v[7, signals.idx("heat_energy")] = 1e19  # beyond the integer path
    v[9, :] = np.nan  # a station that delivered nothing writes no line
    extras = {1: {"pump2_current": 12.5}, 3: {"pump2_current": -1.0, "odd name,=": 2.0}}
    payload, lines, n_fields = enc.station_tick(v, 1_700_000_000_123, extras)
    text = payload.decode("utf-8").splitlines()
    assert lines == len(text) == 39
    total = 0
    for line in text:
        pl = parse_line(line)
        i = int(pl.tags["station"][2:])
        st_ = stations[i]
        # tags byte-identical to Point's encoding of the same tags
        ref = point_line(
            "station",
            {"site": "测试站点 1", "station": st_.id, "name": st_.name, "branch": st_.branch},
            {"x": 1.0},
            1,
        )
        assert split_line(line)[0] == split_line(ref)[0]
        assert pl.ts == 1_700_000_000_123
        expected = {
            s: float(v[i, j])
            for j, s in enumerate(signals.NAMES)
            if np.isfinite(v[i, j]) and s in st_.signals
        }
        expected.update(extras.get(i, {}))
        assert set(pl.fields) == set(expected)
        for k, x in pl.fields.items():
            assert x == expected[k] or math.isclose(x, expected[k], rel_tol=1e-12), (i, k)
        total += len(pl.fields)
    assert n_fields == total


def test_fleet_fast_path_equals_slow_path_for_the_same_values():
    # The one-call whole-fleet template and the per-row path must agree line for line.
    stations = fleet(10, with_indoor_every=1)
    enc = FleetEncoder("s", stations)
    v = plc_values(np.random.default_rng(3), 10)
    fast, n1, f1 = enc.station_tick(v, 5)
    # forcing the per-row path: a loose extra on one station only
    slow, n2, f2 = enc.station_tick(v, 5, {0: {"zz_extra": 1.0}})
    fast_lines = fast.decode().splitlines()
    slow_lines = slow.decode().splitlines()
    assert fast_lines[1:] == slow_lines[1:]
    assert slow_lines[0] == fast_lines[0].replace(" 5", ",zz_extra=1 5")
    assert (n1, f1 + 1) == (n2, f2)


def test_derived_named_arrays():
    enc = FleetEncoder("s", fleet(3))
    payload, lines, n = enc.derived(
        {"loss_ratio": np.array([0.0049, np.nan, 0.02]), "expected_flow_ratio": np.ones(3)},
        1000,
    )
    rows = [parse_line(x) for x in payload.decode().splitlines()]
    assert [r.measurement for r in rows] == ["derived"] * 3
    assert rows[0].fields == {"expected_flow_ratio": 1.0, "loss_ratio": 0.0049}
    assert rows[1].fields == {"expected_flow_ratio": 1.0}
    assert (lines, n) == (3, 5)


def test_extras_as_read_arrays_equal_the_named_extras():
    # the poller hands a station's extras over as one array in its read order (no names
    # per tick); the lines must be the same as for {name: value}
    stations = [
        StationTags("s0", "零号", "东线", (*signals.NAMES, "a_extra", "b_extra")),
        StationTags("s1", "一号", "东线", signals.NAMES),
        StationTags("s2", "二号", "西线", (*signals.NAMES, "b_extra")),
    ]
    enc = FleetEncoder("site1", stations)
    v = np.full((3, signals.K), 1.5)
    named = {0: {"a_extra": 2.25, "b_extra": -3.0}, 2: {"b_extra": 7.0}}
    arrays = {0: np.array([2.25, -3.0]), 2: np.array([7.0])}
    assert enc.station_tick(v, 1_700_000_000_000, arrays) == enc.station_tick(
        v, 1_700_000_000_000, named
    )
