"""Load and validate the emergency playbooks (alarms/playbooks/*.yaml) of the heating plan.

Each YAML file is one playbook: the finding kinds that trigger it, a severity, and ordered
steps by role with deadlines from PLAN.md. Validation happens once at start-up and refuses
bad files with the file and the key named (pydantic, extra=forbid); every finding kind
must be covered by exactly one playbook so no alarm arrives without instructions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stationd.findings import FINDING_KINDS
from stationd.yamlsrc import YamlSourceError, load_sourced

PLAYBOOK_DIR = Path(__file__).with_name("playbooks")

Role = Literal["dispatcher", "station_operator", "repair_team", "hotline", "manager", "electrician"]
ROLE_ZH: dict[str, str] = {
    "dispatcher": "调度员",
    "station_operator": "站运行工",
    "repair_team": "维修班",
    "hotline": "客服热线",
    "manager": "经理",
    "electrician": "电工",
}
#: points a step may name as its control action; writing them is select-before-operate
#: and off by default (DESIGN.md, Control) — the playbook only says what and to which value
ControlPoint = Literal[
    "circ_pump_running",
    "makeup_pump_running",
    "primary_supply_valve",
    "primary_return_valve",
    "primary_valve_position",
    "emergency_makeup_valve",
]


class Text(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


class Control(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    point: ControlPoint
    value: float


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=48)
    role: Role
    action: Text
    # minutes from activation (PLAN.md "Response times"); None where the plan sets none
    deadline_min: int | None = Field(None, gt=0, le=7 * 24 * 60)
    control: Control | None = None


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: Text
    plan_section: str = Field(min_length=1)
    triggers: list[str] = Field(min_length=1)
    severity: Literal["critical", "major", "minor", "notice"]
    steps: list[Step] = Field(min_length=1)

    @field_validator("triggers")
    @classmethod
    def _known_kinds(cls, v: list[str]) -> list[str]:
        bad = [k for k in v if k not in FINDING_KINDS]
        if bad:
            raise ValueError(f"unknown finding kind(s) {bad}; known: {', '.join(FINDING_KINDS)}")
        return v

    @model_validator(mode="after")
    def _unique_steps(self) -> Playbook:
        seen: set[str] = set()
        for s in self.steps:
            if s.id in seen:
                raise ValueError(f"step id {s.id!r} appears twice")
            seen.add(s.id)
        return self

    def first_steps(self, n: int = 3) -> list[str]:
        """The opening steps as one line each, for a page: '调度员: … / dispatcher: …'."""
        return [
            f"{ROLE_ZH[s.role]}：{s.action.zh} / {s.role}: {s.action.en}" for s in self.steps[:n]
        ]


class PlaybookError(ValueError):
    """A playbook file that cannot be used; the message names the file and the key."""


def load_playbook(path: Path) -> Playbook:
    """One playbook file; errors read `file:line key: message`, one line per problem."""
    try:
        src = load_sourced(path)
    except YamlSourceError as e:
        raise PlaybookError(f"not valid YAML: {e}") from e
    if not isinstance(src.data, dict):
        raise PlaybookError(f"{path}:1 (top): expected a mapping of playbook keys")
    try:
        pb = Playbook.model_validate(src.data)
    except ValidationError as e:
        raise PlaybookError(
            "\n".join(str(src.error(tuple(err["loc"]), err["msg"])) for err in e.errors())
        ) from e
    if pb.id != path.stem:
        raise PlaybookError(
            str(src.error(("id",), f"{pb.id!r} must match the file name {path.stem!r}"))
        )
    return pb


class PlaybookLibrary:
    """All playbooks, indexed by id and by triggering finding kind."""

    def __init__(self, playbooks: Mapping[str, Playbook]) -> None:
        self.by_id: dict[str, Playbook] = dict(playbooks)
        self.by_kind: dict[str, Playbook] = {}
        for pb in self.by_id.values():
            for kind in pb.triggers:
                other = self.by_kind.get(kind)
                if other is not None:
                    raise PlaybookError(
                        f"finding kind {kind!r} triggers two playbooks: {other.id} and {pb.id}"
                    )
                self.by_kind[kind] = pb

    def for_kind(self, kind: str) -> Playbook | None:
        return self.by_kind.get(kind)

    def severity_floor(self) -> dict[str, str]:
        return {k: pb.severity for k, pb in self.by_kind.items()}


def load_playbooks(directory: Path | None = None, require_all: bool = True) -> PlaybookLibrary:
    """Read every *.yaml under `directory` (default: the shipped set) and cross-check."""
    directory = directory or PLAYBOOK_DIR
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise PlaybookError(f"{directory}: no playbook files (*.yaml)")
    lib = PlaybookLibrary({p.stem: load_playbook(p) for p in files})
    missing = [k for k in FINDING_KINDS if k not in lib.by_kind]
    if require_all and missing:
        raise PlaybookError(f"{directory}: no playbook is triggered by {', '.join(missing)}")
    return lib
