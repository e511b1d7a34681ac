"""The `alarms:` and `mqtt:` sections of stations.yaml, validated by the alarm side.

stationd/config.py keeps these sections as plain mappings; they are checked here at
start-up with the same strictness (unknown keys refused, the key named in the error).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from alarms.control import ControlSettings
from alarms.mqtt import MqttSettings
from alarms.tuning import AlarmTuning
from stationd.findings import FINDING_KINDS


class AlarmsSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # who may command alarms over MQTT; None = anyone who can reach the command topic
    operators: list[str] | None = None
    # per finding kind: on_delay_s / off_delay_s / rearm_s (alarms/tuning.py has defaults)
    tuning: dict[str, AlarmTuning] = Field(default_factory=dict)
    # a site's own playbooks instead of the shipped set (all kinds must still be covered)
    playbook_dir: Path | None = None
    # select-before-operate writes of playbook control actions; off unless enabled here
    control: ControlSettings = ControlSettings()

    @field_validator("tuning")
    @classmethod
    def _known_kinds(cls, v: dict[str, AlarmTuning]) -> dict[str, AlarmTuning]:
        bad = sorted(set(v) - set(FINDING_KINDS))
        if bad:
            raise ValueError(f"unknown finding kind(s) {bad}; known: {', '.join(FINDING_KINDS)}")
        return v


def _section(model: type[BaseModel], name: str, data: Mapping[str, Any], where: str) -> Any:
    try:
        return model.model_validate(dict(data))
    except ValidationError as e:
        lines = [
            f"{where}: {name}.{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
            for err in e.errors()
        ]
        raise ValueError("\n".join(lines)) from e


def alarms_section(data: Mapping[str, Any] | None, where: str = "config") -> AlarmsSection:
    return _section(AlarmsSection, "alarms", data or {}, where)


def mqtt_section(data: Mapping[str, Any] | None, where: str = "config") -> MqttSettings | None:
    """None when the section is absent or empty: MQTT is then off."""
    if not data:
        return None
    return _section(MqttSettings, "mqtt", data, where)
