"""The daemon's state directory: one rule for every subcommand, and what lives in it.

Which directory (first that applies):

1. `--state-dir DIR` on the command line;
2. `state_dir:` in stations.yaml, for subcommands that read a config;
3. `$STATE_DIRECTORY`, which systemd sets from the unit's `StateDirectory=` (the shipped
   unit: /var/lib/stationd);
4. `./state`.

`stationd run` and the readers beside it (`log`, `kpi`, `report`, `reload`, `export`)
therefore agree on the directory as long as they get the same flags and environment:
by hand next to a systemd daemon, export STATE_DIRECTORY=/var/lib/stationd (or pass
--state-dir). Layout inside it:

| path | holds | written by |
|---|---|---|
| `stationd.pid` | the running daemon's pid (`stationd reload`) | stationd/reload.py |
| `history.db`, `historian-queue.db` | embedded history, the store-and-forward queue | stationd/historian |
| `alarms/` | alarm state, the dispatch log, the MQTT outbox | alarms/ |
| `reports/` | the daily reports | stationd/report |
"""

from __future__ import annotations

import os
from pathlib import Path

#: when nothing else says where
DEFAULT = Path("state")
#: the alarm side's files, under the state dir
ALARMS_SUBDIR = "alarms"
#: the daily reports, under the state dir
REPORTS_SUBDIR = "reports"


def resolve(explicit: Path | str | None = None, configured: Path | str | None = None) -> Path:
    """The state dir by the rule above: `explicit` (--state-dir), then `configured`
    (stations.yaml `state_dir:`), then $STATE_DIRECTORY, then ./state."""
    if explicit:
        return Path(explicit)
    if configured:
        return Path(configured)
    env = os.environ.get("STATE_DIRECTORY", "")
    if env:
        # systemd may list several directories separated by ':'; ours is the first
        return Path(env.split(":")[0])
    return DEFAULT
