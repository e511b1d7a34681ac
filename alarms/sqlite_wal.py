"""One SQLite file in WAL mode, shared by worker threads behind one lock.

The alarm side keeps three such files (alarm state, dispatch log, MQTT outbox); they
open, configure and close the same way, so that lives here once.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class WalDb:
    def __init__(self, path: Path, schema: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # one connection shared by worker threads (asyncio.to_thread), serialised by our lock
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(schema)

    def close(self) -> None:
        with self._lock:
            self._db.close()
