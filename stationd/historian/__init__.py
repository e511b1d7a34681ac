"""History: line protocol into InfluxDB through a disk-backed queue, or an embedded store.

Public entry points: `Historian` (the daemon's writer), `HistorianConfig` (the
`historian:` section) and `export_main` (`stationd export`).
"""

from stationd.historian.config import HistorianConfig
from stationd.historian.embedded import EmbeddedStore, export, export_main
from stationd.historian.service import Historian

__all__ = ["EmbeddedStore", "Historian", "HistorianConfig", "export", "export_main"]
