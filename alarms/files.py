"""The alarm side's files and where they are: one place for their names.

The daemon gives the alarm service `<state_dir>/alarms` (stationd/state.py); an alarm
service run on its own (tests, tools) may be given any directory. Readers beside a
running daemon (`stationd log`, `kpi`, `report`) find the files with `alarm_dir()`.
"""

from __future__ import annotations

from pathlib import Path

from stationd.state import ALARMS_SUBDIR

#: alarm records, open playbook instances, page marks (alarms/store.py)
STATE_FILE = "alarms.sqlite"
#: the append-only dispatch log (alarms/dispatch_log.py)
LOG_FILE = "dispatch_log.sqlite"
#: MQTT messages not yet acknowledged by the broker (alarms/outbox.py)
OUTBOX_FILE = "mqtt_outbox.sqlite"


def alarm_dir(state_dir: Path | str) -> Path:
    """The directory holding the alarm files for a daemon's state dir: its `alarms/`,
    or the directory itself when the files are there (an alarm service run alone)."""
    state = Path(state_dir)
    sub = state / ALARMS_SUBDIR
    if not sub.is_dir() and ((state / LOG_FILE).exists() or (state / STATE_FILE).exists()):
        return state
    return sub
