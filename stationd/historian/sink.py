"""What the forwarder delivers batches to, and how a failed delivery is classified.

A sink either takes a batch, or raises one of:
- `RetryableError`: the database is unreachable (network error, timeout, HTTP 5xx, 429):
  keep the batch and retry;
- `ConfigurationError` (a RetryableError): the server answered but refuses our settings
  (wrong API, credentials, database, bucket or retention policy): keep the batch, report
  a configuration error once with the server's answer, retry until a person fixes it;
- `RejectedError`: the database says this batch can never be written: retrying would
  block the queue forever, so the forwarder drops it, counts it and logs it.

A sink may also offer `check() -> str`: ask the server, at start, whether it speaks the
configured API and accepts our credentials and target (a description when it does, one
of the errors above when not).
"""

from __future__ import annotations

from typing import Protocol


class SinkError(Exception):
    pass


class RetryableError(SinkError):
    """Keep the batch; try again after a backoff."""


class ConfigurationError(RetryableError):
    """The server is up and says our config is wrong (4xx): a person must fix it."""


class RejectedError(SinkError):
    """The batch itself is bad (HTTP 400/413/422): drop it, count it, log it."""


class Sink(Protocol):
    name: str

    def write(self, payload: bytes) -> None:
        """Deliver one batch of line protocol (ms timestamps). Blocking: the forwarder
        calls it on its worker thread, never on the event loop."""
        ...

    def close(self) -> None: ...
