"""Operator commands (MQTT `<prefix>/cmd`, or the CLI): parsing and validation only.

A command is JSON naming `command`, `operator` and `request_id`; anything malformed,
unknown or with extra keys is refused before it can touch alarm state. Executing a
command is alarms/handlers.py's job (alarms/control.py for select and operate).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

CMD_SCHEMA = "stationd.cmd/1"
RESULT_SCHEMA = "stationd.cmd_result/1"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a command, and how that is known. Today `via` is "payload": the operator
    the command names, allowed by `alarms.operators`. An identity learned from the
    transport (the broker account, a client certificate) arrives as another Caller."""

    operator: str
    via: str = "payload"


class _Cmd(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["stationd.cmd/1"] | None = Field(None, alias="schema")
    request_id: str = Field(min_length=1, max_length=128)
    operator: str = Field(min_length=1, max_length=64)


class Ack(_Cmd):
    command: Literal["ack"]
    alarm_id: str | None = None
    incident_id: str | None = None
    reason: str = Field("", max_length=500)

    @model_validator(mode="after")
    def _target(self) -> Ack:
        if not (self.alarm_id or self.incident_id):
            raise ValueError("ack needs alarm_id or incident_id")
        return self


class Shelve(_Cmd):
    command: Literal["shelve"]
    alarm_id: str = Field(min_length=3)
    minutes: float = Field(gt=0)
    reason: str = Field("", max_length=500)


class Unshelve(_Cmd):
    command: Literal["unshelve"]
    alarm_id: str = Field(min_length=3)
    reason: str = Field("", max_length=500)


class StepDone(_Cmd):
    command: Literal["step_done"]
    incident: str = Field(min_length=1)
    step: str = Field(min_length=1)
    note: str = Field("", max_length=500)


class StepSkip(_Cmd):
    command: Literal["step_skip"]
    incident: str = Field(min_length=1)
    step: str = Field(min_length=1)
    reason: str = Field(min_length=1, max_length=500)


class Note(_Cmd):
    command: Literal["note"]
    text: str = Field(min_length=1, max_length=2000)
    incident: str = ""
    station: str = ""


class FieldReadingCmd(_Cmd):
    command: Literal["field_reading"]
    station: str = Field(min_length=1)
    signal: str = Field(min_length=1)
    value: float
    note: str = Field("", max_length=500)


class Select(_Cmd):
    """Select-before-operate, first half: what would be written (alarms/control.py)."""

    command: Literal["select"]
    incident: str = Field(min_length=1)
    step: str = Field(min_length=1)


class Operate(_Cmd):
    """Second half: write the selection named by `select_id`, within its window."""

    command: Literal["operate"]
    incident: str = Field(min_length=1)
    step: str = Field(min_length=1)
    select_id: str = Field(min_length=1, max_length=64)


Command = Annotated[
    Ack | Shelve | Unshelve | StepDone | StepSkip | Note | FieldReadingCmd | Select | Operate,
    Field(discriminator="command"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(Command)


class CommandRejected(ValueError):
    def __init__(self, message: str, request_id: str = "", operator: str = "", command: str = ""):
        super().__init__(message)
        self.request_id = request_id
        self.operator = operator
        self.command = command


def parse_command(raw: bytes | str | dict[str, Any]) -> Any:
    """A validated command model, or CommandRejected naming what is wrong."""
    if isinstance(raw, dict):
        data: Any = raw
    else:
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CommandRejected(f"not JSON: {e}") from e
    if not isinstance(data, dict):
        raise CommandRejected("a command is a JSON object")
    rid = data.get("request_id") if isinstance(data.get("request_id"), str) else ""
    op = data.get("operator") if isinstance(data.get("operator"), str) else ""
    cmd = data.get("command") if isinstance(data.get("command"), str) else ""
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as e:
        errs = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or 'command'}: {err['msg']}"
            for err in e.errors()
        )
        raise CommandRejected(f"invalid command: {errs}", rid, op, cmd) from e


def result(
    request_id: str,
    command: str,
    operator: str,
    ok: bool,
    now: float,
    error: str | None = None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "schema": RESULT_SCHEMA,
        "request_id": request_id,
        "command": command,
        "operator": operator,
        "ok": ok,
        "error": error,
        "time": now,
        "result": detail or {},
    }
