"""Pager events and an HTTP receiver for the pager tests (shared by their modules)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from aiohttp import web

from alarms.model import PagerEvent

SCHEMAS = Path(__file__).resolve().parent.parent / "alarms" / "schemas"

#: a syntactically valid Events API v2 integration key (32 characters), not a real one
ROUTING_KEY = "R0ut1ngKeyForTests00000000000032"
assert len(ROUTING_KEY) == 32

FIRST_STEPS = [
    "调度/站长: 停循环泵，关闭换热器一次侧供回水阀 — operator: stop the circulation pump, "
    "close the exchanger's primary supply and return valves",
    "站长: 开启应急补水阀，检查补水泵 — operator: open the emergency make-up valve, check the "
    "make-up pump",
]


def pager_event(
    action: str = "trigger",
    *,
    incident_id: str = "hs001/secondary_pressure_drop/1795424400",
    kind: str = "secondary_pressure_drop",
    site: str = "北郊热网",
    station: str = "hs001",
    subject: str | None = None,
    severity: str = "critical",
    starts_at: float | None = None,
    ends_at: float | None = None,
    **extra: Any,
) -> PagerEvent:
    subject = station if subject is None else subject
    return PagerEvent(
        incident_id=incident_id,
        alarm_id=f"{subject}/{kind}",
        kind=kind,
        site=site,
        station=station,
        subject=subject,
        severity=severity,
        action=action,  # type: ignore[arg-type]
        summary_zh="幸福小区换热站二次网压力骤降 0.08 MPa（60 秒内）",
        summary_en="Secondary pressure at 幸福小区 station fell 0.08 MPa within 60 s",
        first_steps=FIRST_STEPS,
        starts_at=time.time() - 30 if starts_at is None else starts_at,
        ends_at=ends_at,
        playbook_id="7.1",
        station_name="幸福小区换热站" if station else "",
        **extra,
    )


def load_schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        load_schema(name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.raw.decode("utf-8"))


@dataclass
class Receiver:
    """A local HTTP pager: records every request, answers from a script of statuses.

    With `schema` set it checks each body like the real service would and answers 400
    with the validation errors (also kept in `invalid`) when a body does not match.
    """

    schema: jsonschema.Draft202012Validator | None = None
    script: list[int] = field(default_factory=list)  # statuses to answer, then `default`
    default: int = 202
    retry_after: str | None = None
    requests: list[Received] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    url: str = ""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.requests.append(Received(request.path, dict(request.headers), raw))
        self._changed.set()
        if self.schema is not None:
            errors = [e.message for e in self.schema.iter_errors(json.loads(raw))]
            if errors:
                self.invalid.extend(errors)
                return web.json_response(
                    {
                        "status": "invalid event",
                        "message": "Event object is invalid",
                        "errors": errors,
                    },
                    status=400,
                )
        status = self.script.pop(0) if self.script else self.default
        headers = {"Retry-After": self.retry_after} if status == 429 and self.retry_after else None
        return web.json_response(
            {"status": "success" if status < 300 else "error", "message": "Event processed"},
            status=status,
            headers=headers,
        )

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_requests(self, n: int, deadline_s: float = 10.0) -> list[Received]:
        async with asyncio.timeout(deadline_s):
            while len(self.requests) < n:
                self._changed.clear()
                await self._changed.wait()
        return self.requests


class HangingServer:
    """Accepts TCP connections and never answers: a pager that is up but stuck."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.connections = 0
        self.url = ""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        await reader.read()  # until the client gives up and closes

    async def start(self, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for w in self._writers:
            w.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def wait_until(predicate: Any, deadline_s: float = 10.0, step_s: float = 0.02) -> None:
    """Poll a cheap condition with a deadline (for counters updated by worker tasks)."""
    async with asyncio.timeout(deadline_s):
        # Counters are plain ints bumped by the sinks' worker tasks; nothing to await on.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(step_s)
