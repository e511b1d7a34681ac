"""The alarm side's sections of stations.yaml: `alarms:` (with `control:`) and `mqtt:`.

The alarm side owns these models; stationd/config assembles them into the whole file, so
`stationd check-config` refuses a typo here with FILE:LINE before `run` ever starts.
Secrets are never in the YAML: the broker password is an env var or a file path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from alarms.tuning import AlarmTuning
from stationd.findings import FINDING_KINDS


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ControlSettings(_Model):
    """`alarms: {control: ...}` in stations.yaml."""

    # off unless the site says so: nothing is ever written otherwise (DESIGN.md, Control)
    enabled: bool = False
    # how long a selection may be operated; short, so a stale screen cannot operate
    window_s: float = Field(30.0, gt=0, le=300)
    # how long to wait for the written value to show in the polled data
    readback_s: float = Field(10.0, gt=0, le=120)


class MqttSettings(_Model):
    """Broker connection. The password is never in YAML: an env var or a file path."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    prefix: str | None = None  # default heating/<site>
    client_id: str | None = None  # default stationd-<site>-<pid>
    keepalive: int = Field(30, ge=5, le=3600)
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    max_inflight: int = Field(100, ge=1, le=65535)
    reconnect_min_s: int = Field(1, ge=1, le=60)
    reconnect_max_s: int = Field(30, ge=1, le=600)
    outbox_max_rows: int = Field(200_000, ge=100)

    @model_validator(mode="after")
    def _one_password_source(self) -> MqttSettings:
        if self.password_env and self.password_file:
            raise ValueError("give password_env or password_file, not both")
        return self

    def password(self) -> str | None:
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ValueError(f"mqtt: environment variable {self.password_env} is not set")
            return value
        if self.password_file:
            return self.password_file.read_text(encoding="utf-8").strip()
        return None


def _empty_is_off(value: Any) -> Any:
    # `mqtt: {}` and a bare `mqtt:` both mean "no broker", as an absent section does
    return None if value == {} else value


#: the `mqtt:` section: absent, empty or null means MQTT is off
MqttSection = Annotated[MqttSettings | None, BeforeValidator(_empty_is_off)]


class AlarmsSection(_Model):
    """`alarms:` in stations.yaml."""

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
            said = []
            for kind in bad:
                hint = get_close_matches(kind, FINDING_KINDS, n=1)
                said.append(f"{kind!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
            raise ValueError(
                f"unknown finding kind {', '.join(said)}; known: {', '.join(FINDING_KINDS)}"
            )
        return v


# --- what the alarm side reads of the daemon's config -----------------------------------
class _Allow(Protocol):
    @property
    def allow(self) -> Sequence[str]: ...


class StationFacts(Protocol):
    """A configured station as the alarm side sees it (stationd.config's stations fit)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def branch(self) -> str: ...
    @property
    def power_feeder(self) -> str: ...
    @property
    def heat_source(self) -> str: ...
    @property
    def estates(self) -> Sequence[str]: ...
    @property
    def service_centre(self) -> str | None: ...
    @property
    def control(self) -> _Allow: ...


class _Site(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...


class SiteConfig(Protocol):
    """The daemon's whole config as the alarm side reads it (stationd.config.Config fits)."""

    @property
    def site(self) -> _Site: ...
    @property
    def stations(self) -> Sequence[StationFacts]: ...
    @property
    def alarms(self) -> AlarmsSection: ...
    @property
    def mqtt(self) -> MqttSettings | None: ...
    @property
    def state_dir(self) -> Path | None: ...
    @property
    def path(self) -> Path | None: ...


@dataclass(frozen=True, slots=True)
class StationInfo:
    """What the alarm side knows of a station: names for messages, the control allow-list."""

    id: str
    name: str = ""
    branch: str = ""
    power_feeder: str = ""
    heat_source: str = ""
    estates: tuple[str, ...] = ()
    service_centre: str = ""  # the crews serving the station (a pager routing label)
    # points a playbook step may write here (stations.yaml `control: {allow: [...]}`)
    control_allow: tuple[str, ...] = ()

    @classmethod
    def of(cls, station: StationFacts) -> StationInfo:
        """From a configured station (stationd.config's station models fit)."""
        return cls(
            id=station.id,
            name=station.name,
            branch=station.branch,
            power_feeder=station.power_feeder,
            heat_source=station.heat_source,
            estates=tuple(station.estates),
            service_centre=station.service_centre or "",
            control_allow=tuple(station.control.allow),
        )
