"""What the forwarder delivers batches to, and how a failed delivery is classified.

A sink either takes a batch, or raises `RetryableError` (the database is down, slow,
or refusing us for a reason that a person can fix: keep the batch and retry) or
`RejectedError` (the database says this batch can never be written: retrying would
block the queue forever, so the forwarder drops it, counts it and logs it).
"""

from __future__ import annotations

from typing import Protocol


class SinkError(Exception):
    pass


class RetryableError(SinkError):
    """Keep the batch; try again after a backoff."""


class RejectedError(SinkError):
    """The batch itself is bad (HTTP 400/413/422): drop it, count it, log it."""


class Sink(Protocol):
    name: str

    def write(self, payload: bytes) -> None:
        """Deliver one batch of line protocol (ms timestamps). Blocking: the forwarder
        calls it on its worker thread, never on the event loop."""
        ...

    def close(self) -> None: ...
