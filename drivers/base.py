"""The driver seam: one small async interface that every protocol implements.

A driver reads one station. It never reconnects by itself and never sleeps: the station
supervisor (stationd.poller) owns the reconnect policy and the timeouts, so there is
exactly one of each (cf. home-assistant-libs/modbus-connection: "reconnecting is the
owner's job").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class DriverError(Exception):
    """Base of driver failures; carries the station id for the log line."""

    def __init__(self, station: str, message: str) -> None:
        super().__init__(f"{station}: {message}")
        self.station = station


class TransientError(DriverError):
    """The connection broke or timed out: reconnect with backoff and try again."""


class PermanentError(DriverError):
    """Retrying cannot help (bad endpoint, rejected certificate, unknown node): say so."""


@dataclass(slots=True)
class ReadResult:
    """One station's read, in the order of the station plan's `signals`.

    values are engineering units after scale/offset; quality True means good. A bad
    quality value is NaN in `values` as well, so nothing downstream can use it by mistake.
    """

    values: np.ndarray  # float64 [n_signals]
    quality: np.ndarray  # bool [n_signals]


class Driver(Protocol):
    """What the poller needs from a protocol. Implementations: drivers.modbus, drivers.opcua."""

    station_id: str

    async def connect(self) -> None:
        """Open the connection. Raises TransientError or PermanentError."""
        ...

    async def read(self) -> ReadResult:
        """Read every planned signal once. A dead link raises TransientError; a single
        bad register or node becomes bad quality for that signal only."""
        ...

    async def write(self, signal: str, value: float) -> None:
        """Write one point (control; only ever called through select-before-operate)."""
        ...

    async def close(self) -> None:
        """Close; never raises."""
        ...
