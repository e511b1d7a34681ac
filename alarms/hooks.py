"""Hooks out of the alarm service (the daemon's historian, the pagers, tests): called in
turn, sync or async, and a failing hook never stops the others or the alarm path."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

Hook = Callable[[Any], Any]


async def call_hooks(hooks: Sequence[Hook], arg: Any) -> None:
    for hook in hooks:
        try:
            r = hook(arg)
            if inspect.isawaitable(r):
                await r
        except Exception:
            log.exception("alarm hook %r failed", hook)
