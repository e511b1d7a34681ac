"""Plant physics sanity: the simulator's numbers follow the heating plan and each other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stationd import signals
from stationd.config import load_config
from tools.simulate_station.faults import Fault, ScenarioError, load_scenario
from tools.simulate_station.plant import Plant, StationMeta

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000.0  # 2023-11-14 22:13 UTC = 06:13 in Shanghai
COL = signals.INDEX


@pytest.fixture(scope="module")
def config():
    return load_config(ROOT / "config" / "stations.yaml")


def make_plant(config, seed: int = 7) -> Plant:
    return Plant(config.stations, seed=seed, start_time=T0)


def col(p: Plant, name: str) -> np.ndarray:
    return p.true_values()[:, COL[name]]


def loss_ratio(p: Plant, seconds: float) -> np.ndarray:
    """Make-up volume over circulated volume across `seconds` of plant time."""
    m0 = col(p, "makeup_total").copy()
    p.advance(p.t + seconds)
    return (col(p, "makeup_total") - m0) / (col(p, "secondary_flow") * seconds / 3600.0)


def test_circulating_flow_is_10_t_h_per_10000_m2(config):
    p = make_plant(config)
    area = np.array([s.heated_area_m2 for s in config.stations])
    ratio = col(p, "secondary_flow") / (area / 1e4 * 10.0)
    assert np.all((ratio > 0.9) & (ratio < 1.1)), ratio


def test_pressures_follow_the_pumps(config):
    p = make_plant(config)
    ps, pr = col(p, "secondary_supply_pressure"), col(p, "secondary_return_pressure")
    assert np.all(np.abs(ps - 0.45) < 0.04), ps
    assert np.all(np.abs(pr - 0.30) < 0.04), pr
    assert np.all(np.abs(col(p, "primary_supply_pressure") - 0.95) < 0.08)
    assert np.all(np.abs(col(p, "primary_return_pressure") - 0.6) < 0.05)


def test_loop_loses_under_half_a_percent_without_faults(config):
    p = make_plant(config)
    p.advance(T0 + 1800)  # settle the make-up controllers
    ratio = loss_ratio(p, 3 * 3600)
    assert np.all(ratio < 0.005), ratio
    assert np.all(ratio > 0.0005), ratio  # but it does lose water: make-up runs


def test_one_percent_leak_raises_makeup_above_the_allowance(config):
    p = make_plant(config)
    p.advance(T0 + 1800)
    p.inject(Fault(kind="secondary_leak", station="hs001", size=1.0))
    ratio = loss_ratio(p, 3 * 3600)
    assert ratio[0] > 0.005, ratio
    assert np.all(ratio[1:] < 0.005)
    # within the make-up pump's capacity: the pressure holds
    assert col(p, "secondary_return_pressure")[0] > 0.25


def test_leak_beyond_makeup_capacity_lets_pressure_fall(config):
    p = make_plant(config)
    p.inject(Fault(kind="secondary_leak", station="hs004", size=5.0))
    p0 = col(p, "secondary_supply_pressure")[3]
    p.advance(T0 + 600)
    assert col(p, "secondary_supply_pressure")[3] < p0 - 0.1


def test_pipe_burst_drops_pressure_fast(config):
    p = make_plant(config)
    p.advance(T0 + 60)
    p0 = col(p, "secondary_supply_pressure").copy()
    p.inject(Fault(kind="pipe_burst", station="hs002"))
    p.advance(p.t + 60)
    drop = p0 - col(p, "secondary_supply_pressure")
    assert drop[1] > 0.05  # plan 7.1's "sudden and sharp" within a minute
    assert np.all(np.abs(np.delete(drop, 1)) < 0.02)


@pytest.mark.parametrize("ups", [True, False])
def test_power_loss_stops_pumps_and_pressures_fall_to_static(config, ups):
    p = make_plant(config)
    p.advance(T0 + 60)
    p.inject(Fault(kind="power_loss", station="hs005", ups=ups))
    p.advance(p.t + 60)
    v = p.true_values()[4]
    assert v[COL["mains_power"]] == 0 and v[COL["circ_pump_running"]] == 0
    assert v[COL["makeup_pump_running"]] == 0 and v[COL["secondary_flow"]] < 1.0
    ps, pr = v[COL["secondary_supply_pressure"]], v[COL["secondary_return_pressure"]]
    assert abs(ps - pr) < 0.02 and 0.2 < pr < 0.3  # the static pressure
    assert p.answering()[4] == ups
    assert p.answering().sum() == len(config.stations) - (0 if ups else 1)


def test_power_loss_on_a_feeder_takes_all_its_stations(config):
    p = make_plant(config)
    p.inject(Fault(kind="power_loss", feeder="城东10kV-3", ups=False))
    assert list(~p.answering()) == [s.power_feeder == "城东10kV-3" for s in config.stations]


def test_comm_loss_silences_the_plc_but_the_plant_runs_on(config):
    p = make_plant(config)
    t = p.inject(Fault(kind="comm_loss", station="hs003"))
    p.advance(T0 + 30)
    assert not p.answering()[2] and p.answering().sum() == 7
    assert col(p, "circ_pump_running")[2] == 1 and col(p, "mains_power")[2] == 1
    p.clear(t.id)
    assert p.answering().all()
    assert p.truth()[0].end == p.t and not p.truth()[0].active


def test_meters_are_monotonic(config):
    p = make_plant(config)
    p.inject(Fault(kind="power_loss", station="hs001", at=600, duration=600))
    p.inject(Fault(kind="pipe_burst", station="hs002", at=900))
    prev = p.values()
    for k in range(1, 40):
        p.advance(T0 + 60 * k)
        v = p.values()
        for name in ("heat_energy", "makeup_total"):
            assert np.all(v[:, COL[name]] >= prev[:, COL[name]]), name
        prev = v
    assert np.all(col(p, "heat_energy") > 0)


def test_heat_source_shortfall_cools_every_station_of_that_source(config):
    p = make_plant(config)
    before = col(p, "primary_supply_temp").copy()
    p.inject(Fault(kind="heat_source_shortfall", source="北郊热源厂", size=20.0))
    p.advance(T0 + 3600)
    after = col(p, "primary_supply_temp")
    curve = config.stations[0].thresholds.primary_curve
    t_out = col(p, "outdoor_temp")
    deficit = np.array([curve.at(x) for x in t_out]) - after
    north = np.array([s.heat_source == "北郊热源厂" for s in config.stations])
    assert np.all(deficit[north] > 12) and np.all(deficit[~north] < 4), deficit
    # the secondary follows: below its own curve where the primary cannot deliver
    assert np.all(
        col(p, "secondary_supply_temp")[north] < col(p, "secondary_supply_temp")[~north].min()
    )
    assert before.shape == after.shape


def test_primary_leak_hits_the_nearest_station_hardest(config):
    p = make_plant(config)
    p0 = col(p, "primary_supply_pressure").copy()
    p.inject(Fault(kind="primary_leak", branch="东一支线", station="hs002", size=0.2))
    p.advance(T0 + 300)
    drop = p0 - col(p, "primary_supply_pressure")
    east = [0, 1, 2]
    assert drop[1] == max(drop[east]) and drop[1] > 0.15
    assert np.all(drop[east] > 0.05) and np.all(np.abs(drop[3:]) < 1e-9)


def test_stuck_sensor_freezes_one_signal(config):
    p = make_plant(config)
    p.inject(Fault(kind="stuck_sensor", station="hs001", signal="secondary_supply_temp"))
    a = p.values()
    p.advance(T0 + 120)
    b = p.values()
    k = COL["secondary_supply_temp"]
    assert a[0, k] == b[0, k] and a[1, k] != b[1, k]


def test_extreme_cold_takes_outdoor_below_design(config):
    p = make_plant(config)
    p.inject(Fault(kind="extreme_cold", size=15.0))
    p.advance(T0 + 2 * 3600)
    assert np.all(col(p, "outdoor_temp") < config.thresholds.design_outdoor_temp_c)
    assert p.truth()[0].subject == config.site.id or p.truth()[0].subject == "site"


def test_stopping_the_pump_by_control_write(config):
    p = make_plant(config)
    p.set_point("hs001", "circ_pump_running", 0)
    p.advance(T0 + 60)
    assert col(p, "circ_pump_running")[0] == 0 and col(p, "secondary_flow")[0] < 1.0
    p.set_point("hs001", "circ_pump_running", 1)
    p.advance(T0 + 120)
    assert col(p, "secondary_flow")[0] > 100
    with pytest.raises(ValueError, match="not a control point"):
        p.set_point(0, "mains_power", 0)


def test_deterministic_for_a_seed(config):
    a, b, c = make_plant(config, 3), make_plant(config, 3), make_plant(config, 4)
    for p in (a, b, c):
        p.inject(Fault(kind="secondary_leak", station="hs002", size=2.0, at=100))
        p.advance(T0 + 900)
    np.testing.assert_array_equal(a.values(), b.values())
    assert not np.allclose(a.values(), c.values(), equal_nan=True)


def test_readings_stay_within_the_signals_physical_ranges(config):
    p = make_plant(config)
    p.inject(Fault(kind="pipe_burst", station="hs001"))
    p.inject(Fault(kind="power_loss", station="hs002"))
    for k in range(12):
        p.advance(T0 + 300 * k)
        v = p.values()
        for spec in signals.SIGNALS:
            x = v[:, COL[spec.name]]
            x = x[~np.isnan(x)]
            assert np.all((x >= spec.lo) & (x <= spec.hi)), (spec.name, x)


def test_signals_a_station_lacks_are_nan(config):
    p = make_plant(config)
    v = p.values()
    hs003 = config.station("hs003")
    assert "makeup_tank_level" not in hs003.tags
    assert np.isnan(v[2, COL["makeup_tank_level"]]) and not np.isnan(v[0, COL["makeup_tank_level"]])


def test_scenario_file_schedules_faults(tmp_path, config):
    f = tmp_path / "s.yaml"
    f.write_text(
        "faults:\n"
        "  - {at: 60, kind: comm_loss, station: hs001, duration: 120}\n"
        "  - {at: 90, kind: primary_leak, branch: 东一支线}\n",
        encoding="utf-8",
    )
    p = make_plant(config)
    for fault in load_scenario(f):
        p.inject(fault)
    assert p.answering().all()
    p.advance(T0 + 61)
    assert not p.answering()[0]
    p.advance(T0 + 200)
    truth = p.truth()
    assert p.answering()[0] and truth[0].end == T0 + 180 and not truth[0].active
    assert truth[1].active and truth[1].stations == ("hs001", "hs002", "hs003")


def test_bad_scenario_names_file_and_fault(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("faults:\n  - {at: 5, kind: pipe_burst}\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"bad\.yaml: faults\.0.*needs `station`"):
        load_scenario(f)


def test_a_thousand_stations_step_together():
    metas = [
        StationMeta(
            id=f"s{i}",
            heated_area_m2=50_000 + 100 * i,
            branch=f"b{i // 10}",
            heat_source=f"h{i % 2}",
        )
        for i in range(1000)
    ]
    p = Plant(metas, seed=1, start_time=T0)
    p.advance(T0 + 120)
    v = p.values()
    assert v.shape == (1000, signals.K) and not np.isnan(v).any()
