"""stations.yaml: the example loads, every golden bad case is refused with FILE:LINE key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stationd import signals
from stationd.config import ConfigError, ModbusStation, OpcuaStation, load_config, shard_of

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "stations.yaml"
CASES = sorted((Path(__file__).parent / "config_cases").glob("*.yaml"))


def test_example_fleet_loads_with_chinese_names_and_templates() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.site.name == "北城供热分公司"
    hs001 = cfg.station("hs001")
    assert isinstance(hs001, ModbusStation)
    assert hs001.name == "阳光花园换热站"
    assert hs001.estates == ("阳光花园", "阳光花园二期")
    assert hs001.extras == ("circ_pump_current",)
    assert hs001.signals[-1] == "circ_pump_current"
    # canonical signals come first, in the frame's order
    canon = [s for s in hs001.signals if s in signals.INDEX]
    assert canon == sorted(canon, key=signals.INDEX.__getitem__)
    hs007 = cfg.station("hs007")
    assert isinstance(hs007, OpcuaStation)
    assert hs007.tags["mains_power"].node == "ns=2;s=hs007.mains_power"
    assert hs007.opcua.mode == "subscribe"
    # station thresholds inherit the site's and override their own keys only
    assert cfg.station("hs005").thresholds.secondary_pressure_low_mpa == 0.12
    assert cfg.station("hs001").thresholds.secondary_pressure_low_mpa == 0.10
    assert cfg.station("hs001").thresholds.makeup_allowance_ratio == 0.005


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_config_is_refused_with_file_line_and_key(case: Path) -> None:
    expected = case.read_text(encoding="utf-8").splitlines()[0].split("expect: ", 1)[1]
    with pytest.raises(ConfigError) as err:
        load_config(case)
    lines = [str(e) for e in err.value.errors]
    assert any(line.startswith(f"{case}:{expected}") for line in lines), lines


def test_check_config_cli_exit_codes_and_output(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "stationd", "check-config", str(EXAMPLE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "8 stations (5 modbus, 3 opcua)" in ok.stdout
    bad_case = next(c for c in CASES if c.stem == "overlapping_registers")
    bad = subprocess.run(
        [sys.executable, "-m", "stationd", "check-config", str(bad_case)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert bad.returncode == 2
    assert f"{bad_case}:8 templates.plc.tags.secondary_flow.address:" in bad.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "stationd", "check-config", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_shards_split_a_fleet_with_no_overlap_and_few_moves() -> None:
    ids = [f"hs{i:05d}" for i in range(5000)]
    for n in (2, 3, 7):
        counts = [0] * n
        for sid in ids:
            counts[shard_of(sid, n)] += 1
        assert sum(counts) == len(ids)
        assert min(counts) > len(ids) / n * 0.85  # balanced within 15 %
    assert all(shard_of(s, 4) == shard_of(s, 4) for s in ids[:50])  # stable


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_config_loader_never_crashes_on_arbitrary_text(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "stations.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.errors and all(str(e).startswith(str(path)) for e in exc.errors)


def test_template_tag_defaults_apply_under_each_tag(tmp_path: Path) -> None:
    # PLC model B in the example: input registers, CDAB floats, said once for the template
    cfg = load_config(EXAMPLE)
    hs003 = cfg.station("hs003")
    assert isinstance(hs003, ModbusStation)
    flow = hs003.tags["primary_flow"]
    assert (flow.kind, flow.type, flow.word_order) == ("input", "float32", "little")
    # what a tag says for itself wins over the template's defaults
    heat = hs003.tags["heat_energy"]
    assert (heat.kind, heat.type, heat.word_order, heat.scale) == ("input", "uint32", "big", 0.1)
    assert hs003.tags["primary_valve_position"].kind == "holding"
    # a station's own tag on a templated station gets the template's defaults too
    path = tmp_path / "stations.yaml"
    path.write_text(
        """site: {id: t, name: 测试站点}
templates:
  plc:
    protocol: modbus
    tag_defaults: {kind: input, word_order: little, unit: °C}
    tags:
      secondary_supply_temp: {address: 0}
stations:
  - id: s1
    name: 一号站
    template: plc
    modbus: {port: 15020}
    heated_area_m2: 10000
    estates: [一号小区]
    branch: 东线
    power_feeder: F1
    tags:
      secondary_return_temp: {address: 2, unit: K}
""",
        encoding="utf-8",
    )
    s1 = load_config(path).station("s1")
    assert isinstance(s1, ModbusStation)
    ret = s1.tags["secondary_return_temp"]
    assert (ret.kind, ret.word_order, ret.unit) == ("input", "little", "K")
    assert s1.tags["secondary_supply_temp"].unit == "°C"
