"""The historian's `indoor_at_standard` derived field: 1/0 per station against the standard
in force at the tick's local hour (with the site's night set-back), NaN without a reading."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from stationd.derived import DerivedWriter
from stationd.detect.engine import Detector
from stationd.detect.thresholds import Thresholds
from stationd.frame import FleetFrame
from stationd.historian.service import DERIVED_FIELDS
from tests.synth import SIG, SynthFleet, feed, fleet_static

SETBACK = Thresholds(indoor_day_start_h=6, indoor_day_end_h=22, indoor_night_setback_c=2.0)


def _at(hour: int, indoor: list[float]) -> np.ndarray:
    st = fleet_static(len(indoor), thresholds=SETBACK)
    t = datetime(2023, 11, 15, hour, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    frame = FleetFrame(list(st.ids), window=4)
    det = Detector(st)
    v = SynthFleet(st).values(t)
    v[:, SIG["indoor_temp"]] = indoor
    feed(frame, t, v)
    det.step(frame)
    return DerivedWriter().fields(det, st, frame)["indoor_at_standard"]


def test_indoor_at_standard_by_day_and_with_the_night_setback():
    rooms = [21.0, 20.0, 19.0, 18.5, 17.0, np.nan]
    day = _at(14, rooms)
    night = _at(2, rooms)
    np.testing.assert_array_equal(day, [1.0, 1.0, 0.0, 0.0, 0.0, np.nan])
    np.testing.assert_array_equal(night, [1.0, 1.0, 1.0, 1.0, 0.0, np.nan])
    assert "indoor_at_standard" in DERIVED_FIELDS
