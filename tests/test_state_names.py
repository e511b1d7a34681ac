"""One table of alarm state names (alarms/model.py STATE_NAMES): the MQTT documents, the
dispatch log, the daily report, the historian's codes and the Grafana alarm timeline all
say what it says."""

from __future__ import annotations

import json
from pathlib import Path

from alarms.model import STATE_NAMES, AlarmState, state_code, state_zh

ROOT = Path(__file__).resolve().parents[1]


def test_every_state_has_one_name_and_one_code() -> None:
    assert set(STATE_NAMES) == set(AlarmState)
    codes = [n.code for n in STATE_NAMES.values()]
    assert sorted(codes) == list(range(len(AlarmState)))
    assert state_zh("unack") == "报警未确认" and state_code("rtn_unack") == 3
    assert state_zh("no-such-state") == "no-such-state" and state_code("x") == -1


def test_grafana_alarm_timeline_maps_the_codes_to_the_same_names() -> None:
    board = json.loads(
        (ROOT / "config/grafana/dashboards/alarm-timeline.json").read_text(encoding="utf-8")
    )
    mappings = [
        m["options"]
        for p in board["panels"]
        for m in p.get("fieldConfig", {}).get("defaults", {}).get("mappings", [])
        if m.get("type") == "value"
    ]
    assert mappings, "the alarm timeline maps state codes to names"
    for options in mappings:
        assert options == {
            str(n.code): {"text": f"{n.zh} {state.value}", "color": options[str(n.code)]["color"]}
            for state, n in STATE_NAMES.items()
        }
