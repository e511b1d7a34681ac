"""Property tests (hypothesis): hostile inputs get an answer, never a crash.

- The config loader, fed the example stations.yaml with keys dropped, values replaced by
  values of the wrong shape, unknown keys added, stations duplicated: it returns a Config
  or raises ConfigError whose every line names FILE:LINE — no other exception escapes.
- The MQTT command handler (`AlarmService.command`), fed arbitrary bytes, text and JSON
  built from command-like pieces: every input is answered with a cmd_result document,
  and every input the parser refuses is answered ok=false with an error.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alarms.commands import CommandRejected, parse_command
from alarms.service import AlarmService, StationInfo
from stationd.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = yaml.safe_load((ROOT / "config" / "stations.yaml").read_text(encoding="utf-8"))
FILE_LINE = re.compile(r"^\S.*:\d+ ")

# --- the config loader --------------------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["modbus", "opcua", "hx-plc-a", "float32", "holding", "coil", "ns=2;s=x"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=8), inner, max_size=3),
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path of a YAML document (mapping keys and list indices)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


PATHS = sorted(_paths(EXAMPLE), key=repr)
# the document's skeleton (sections, stations, a station's keys, templates) is where a
# wrong shape hurts most: draw from it as often as from all ~700 paths
SKELETON = [p for p in PATHS if len(p) <= 3]

mutation = st.tuples(
    st.sampled_from(["delete", "replace", "add_key", "duplicate"]),
    st.sampled_from(SKELETON) | st.sampled_from(PATHS),
    values,
    st.text(min_size=1, max_size=10),
)


def _apply(doc: Any, op: str, path: tuple[Any, ...], value: Any, key: str) -> None:
    parent = doc
    for p in path[:-1]:
        try:
            parent = parent[p]
        except (KeyError, IndexError, TypeError):
            return  # an earlier mutation removed or reshaped this branch
    last = path[-1]
    try:
        if op == "delete":
            del parent[last]
        elif op == "replace":
            parent[last] = value
        elif op == "add_key" and isinstance(parent[last], dict):
            parent[last][key] = value
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
    except (KeyError, IndexError, TypeError):
        return


def _check_load(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "stations.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            assert exc.errors, "a refused config names at least one problem"
            for err in exc.errors:
                assert FILE_LINE.match(str(err)), f"no FILE:LINE in {err!r}"
                assert str(path) in str(err)
        else:
            assert cfg.stations


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutated_stations_yaml_loads_or_is_refused_with_file_and_line(
    mutations: list[tuple[str, tuple[Any, ...], Any, str]],
) -> None:
    doc = copy.deepcopy(EXAMPLE)
    for op, path, value, key in mutations:
        _apply(doc, op, path, value, key)
    _check_load(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(
        st.text(max_size=200),
        st.sampled_from(["", "---\n", "[]", "site: [", "a: &x [*x]", "stations:\n  - *u", "\t"]),
    )
)
def test_arbitrary_text_as_stations_yaml_is_refused_not_a_crash(text: str) -> None:
    _check_load(text)


# --- the MQTT command handler ---------------------------------------------------------------
COMMANDS = ["ack", "shelve", "unshelve", "step_done", "step_skip", "note", "field_reading"]
COMMANDS += ["select", "operate"]
CMD_KEYS = [
    "alarm_id",
    "incident_id",
    "incident",
    "step",
    "minutes",
    "reason",
    "text",
    "station",
    "signal",
    "value",
    "note",
    "schema",
]
command_docs = st.fixed_dictionaries(
    {},
    optional={
        "schema": st.sampled_from(["stationd.cmd/1", "stationd.cmd/2", ""]) | values,
        "command": st.sampled_from(COMMANDS) | values,
        "request_id": st.text(max_size=12) | values,
        "operator": st.sampled_from(["王工", "dispatch1", ""]) | values,
        "alarm_id": st.sampled_from(["hs001/secondary_pressure_drop", "x"]) | values,
    },
).flatmap(
    lambda base: st.dictionaries(st.sampled_from(CMD_KEYS), values, max_size=4).map(
        lambda extra: {**extra, **base}
    )
)
raw_inputs = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    command_docs.map(lambda d: json.dumps(d, ensure_ascii=False)),
    command_docs.map(lambda d: json.dumps(d).encode("utf-8")),
    values.map(json.dumps),
    st.sampled_from([b"\xff\xfe", b"null", b"[]", b'"ack"', b"{" * 500, b"1e999"]),
)
RESULT_SCHEMA = json.loads((ROOT / "alarms" / "schemas" / "cmd_result.json").read_text())


class _Service:
    """One started AlarmService (no MQTT) on its own loop, shared by the examples."""

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.loop = asyncio.new_event_loop()
        self.svc = AlarmService(
            "fuzz", Path(self.dir.name), stations=[StationInfo("hs001", "阳光花园换热站")]
        )
        self.loop.run_until_complete(self.svc.start())

    def command(self, raw: Any) -> dict[str, Any]:
        return self.loop.run_until_complete(self.svc.command(raw))

    def close(self) -> None:
        self.loop.run_until_complete(self.svc.stop())
        self.loop.close()
        self.dir.cleanup()


def test_command_handler_answers_every_input_and_refuses_bad_ones() -> None:
    service = _Service()

    @settings(max_examples=300, deadline=None)
    @given(raw_inputs)
    def run(raw: bytes | str) -> None:
        answer = service.command(raw)
        jsonschema.validate(answer, RESULT_SCHEMA)
        try:
            parse_command(raw)
        except CommandRejected:
            assert answer["ok"] is False
        if answer["ok"] is False:
            assert isinstance(answer["error"], str) and answer["error"].strip()

    try:
        run()
    finally:
        service.close()
