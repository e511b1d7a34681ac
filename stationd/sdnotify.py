"""systemd notify protocol (READY=1, WATCHDOG=1, STATUS=...): a datagram to $NOTIFY_SOCKET.

Does nothing when NOTIFY_SOCKET is unset (run by hand, in tests), like the sdnotify package.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        addr = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.enabled = bool(addr)
        self._addr = "\0" + addr[1:] if addr.startswith("@") else addr  # abstract namespace
        self._sock: socket.socket | None = None
        if self.enabled:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    def notify(self, **fields: str) -> None:
        if self._sock is None:
            return
        msg = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode("utf-8")
        try:
            self._sock.sendto(msg, self._addr)
        except OSError as exc:  # systemd gone or socket full: never fatal to the daemon
            log.debug("sd_notify failed: %s", exc)

    def ready(self, status: str) -> None:
        self.notify(ready="1", status=status)

    def watchdog(self) -> None:
        self.notify(watchdog="1")

    def status(self, status: str) -> None:
        self.notify(status=status)

    def stopping(self) -> None:
        self.notify(stopping="1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
