"""History: line protocol into InfluxDB through a disk-backed queue, or an embedded store.

Public entry points: `Historian` (the daemon's writer), `HistorianConfig` (the
`historian:` section), `open_reader` (history back from whichever store holds it) and
`export_main` (`stationd export`).
"""

from stationd.historian.config import HistorianConfig
from stationd.historian.embedded import EmbeddedStore
from stationd.historian.export import export, export_main
from stationd.historian.reader import Chunk, HistoryReader, Point
from stationd.historian.readers import open_reader
from stationd.historian.service import Historian

__all__ = [
    "Chunk",
    "EmbeddedStore",
    "Historian",
    "HistorianConfig",
    "HistoryReader",
    "Point",
    "export",
    "export_main",
    "open_reader",
]
