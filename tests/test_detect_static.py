"""FleetStatic: per-station metadata and thresholds compiled into arrays once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stationd.config import load_config
from stationd.detect.engine import Detector
from stationd.detect.static import FleetStatic
from stationd.detect.thresholds import HeatingCurve, Thresholds
from stationd.frame import FleetFrame

CONFIG = Path(__file__).resolve().parents[1] / "config" / "stations.yaml"


def test_build_compiles_groups_and_per_station_thresholds():
    st = FleetStatic.build(
        ids=["a", "b", "c"],
        heated_area_m2=[1e4, 2e4, 3e4],
        branches=["东线", "西线", "东线"],
        feeders=["F1", None, "F1"],
        sources=["main", "main", "main"],
        estates=[["一区"], ["二区", "三区"], ["一区"]],
        thresholds=[Thresholds(), Thresholds(pressure_drop_mpa=0.08), Thresholds()],
        site_id="demo",
        names=["一号站", "二号站", "三号站"],
    )
    assert st.branch_names == ("东线", "西线")
    assert st.branch_idx.tolist() == [0, 1, 0]
    assert st.feeder_idx.tolist() == [0, -1, 0]
    assert st.th.pressure_drop_mpa.tolist() == [0.05, 0.08, 0.05]
    assert st.th.comm_loss_ticks.dtype == np.float64
    # a station serving two estates does not guess which one its room sensor is in
    assert st.indoor_estate_idx.tolist() == [0, -1, 0]
    assert st.estate_pair_station.tolist() == [0, 1, 1, 2]
    assert st.label(1) == "b 二号站"
    curve = HeatingCurve()
    assert st.secondary_curve.at(np.full(3, -5.0)).tolist() == [curve.at(-5.0)] * 3
    primary = Thresholds().primary_curve
    assert st.th.primary_curve.at(np.full(3, -20.0))[0] == primary.at(-20.0)


def test_build_refuses_mismatched_columns():
    with pytest.raises(ValueError, match="heated_area_m2 has 1 entries for 2 stations"):
        FleetStatic.build(
            ["a", "b"], [1.0], ["x", "x"], ["f", "f"], ["s", "s"], [[], []], [Thresholds()] * 2, "d"
        )
    with pytest.raises(ValueError, match="unique"):
        FleetStatic.build(
            ["a", "a"],
            [1.0, 1.0],
            ["x", "x"],
            ["f", "f"],
            ["s", "s"],
            [[], []],
            [Thresholds()] * 2,
            "d",
        )


def test_from_config_takes_the_fleet_in_config_order_with_overrides():
    cfg = load_config(CONFIG)
    st = FleetStatic.from_config(cfg)
    assert st.ids == tuple(s.id for s in cfg.stations)
    assert st.site_id == cfg.site.id
    for i, s in enumerate(cfg.stations):
        assert st.th.pressure_drop_mpa[i] == s.thresholds.pressure_drop_mpa
        assert st.secondary_curve.slope[i] == s.curve.slope
        assert st.heated_area_m2[i] == s.heated_area_m2
    assert set(st.source_names) == {s.heat_source for s in cfg.stations}


def test_detector_refuses_a_frame_of_other_stations():
    st = FleetStatic.build(
        ["a", "b"],
        [1e4, 1e4],
        ["x", "x"],
        ["f", "f"],
        ["s", "s"],
        [["e"], ["e"]],
        [Thresholds()] * 2,
        "d",
    )
    frame = FleetFrame(["b", "a"], window=2)
    frame.commit(1.0)
    with pytest.raises(ValueError, match="different stations"):
        Detector(st).step(frame)
