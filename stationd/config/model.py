"""The whole stations.yaml as one typed model, assembled from the sections' owners.

Each part owns its section's model, as a Telegraf plugin owns its configuration:

| section | model | owner |
|---|---|---|
| `site:`, `defaults:`, `http:`, `state_dir:`, a station's facts | here | the daemon |
| a station's `modbus:`/`opcua:` endpoint and `tags:`, the driver part of `defaults:` | `drivers/schema.py` | drivers |
| `thresholds:`, a station's `curve:` | `stationd/detect/thresholds.py` | detection |
| `historian:` | `stationd/historian/config.py` | historian |
| `alarms:`, `mqtt:` | `alarms/settings.py` | alarms |
| `pager:` | `alarms/pager/config.py` | the pagers |

Because every section is typed here, `check-config` accepts exactly what `run` accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from alarms.pager.config import PagerConfig
from alarms.settings import AlarmsSection, MqttSection
from drivers.schema import DriverTiming, ModbusEndpoint, ModbusTag, OpcuaEndpoint, OpcuaTag
from stationd import signals
from stationd.detect.thresholds import HeatingCurve, Thresholds
from stationd.historian.config import HistorianConfig

ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Extra signal names become InfluxDB field names and MQTT JSON keys: keep them plain.
SIGNAL_RE = r"^[a-z][a-z0-9_]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(DriverTiming):
    """`defaults:`: the drivers' timing plus the poller's reconnect policy and frame."""

    backoff_initial: float = Field(1.0, gt=0)
    backoff_max: float = Field(30.0, gt=0)
    window: int = Field(600, ge=10, le=86400)  # ticks held in the fleet frame
    # Each station starts its read at a stable offset of up to poll_spread x timeout after
    # the tick (samples keep the tick's time), as SCADA pollers stagger scans: 1,000 reads
    # sent in one burst queue up in the gateways and PLCs and the last ones time out.
    poll_spread: float = Field(0.3, ge=0.0, le=0.5)

    @model_validator(mode="after")
    def _backoff_order(self) -> Defaults:
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be >= backoff_initial")
        return self


class Site(_Model):
    id: str = Field(pattern=ID_RE)
    name: str = Field(min_length=1)
    timezone: str = "Asia/Shanghai"
    shard: str | None = Field(None, pattern=r"^\d+/\d+$")  # k/n, 0 <= k < n


class HttpConfig(_Model):
    """`http:`: the health endpoint. Loopback by default: metrics are not for the open network."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9810, ge=0, le=65535)  # 0: any free port (tests)


class Control(_Model):
    """Points a playbook step may write (select-before-operate). Empty: nothing is written."""

    allow: tuple[str, ...] = ()


# --- stations ----------------------------------------------------------------------------
class StationBase(_Model):
    id: str = Field(pattern=ID_RE)
    name: str = Field(min_length=1)
    heated_area_m2: float = Field(gt=0)
    estates: tuple[str, ...] = Field(min_length=1)
    branch: str = Field(min_length=1)
    power_feeder: str = Field(min_length=1)
    heat_source: str = "main"
    # the service centre (服务中心) whose crews serve the station: a pager routing label
    service_centre: str | None = Field(None, min_length=1)
    extras: tuple[str, ...] = ()  # names in `tags` that are not canonical signals
    thresholds: Thresholds = Thresholds()
    curve: HeatingCurve = HeatingCurve()
    control: Control = Control()
    # the estate whose representative rooms this station's indoor_temp stands for
    indoor_estate: str | None = None

    @property
    def signals(self) -> tuple[str, ...]:
        """Canonical signals first (in the frame's order), then extras by name."""
        tags: dict[str, Any] = self.tags  # type: ignore[attr-defined]
        canon = tuple(n for n in signals.NAMES if n in tags)
        return canon + tuple(sorted(self.extras))


class ModbusStation(StationBase):
    protocol: Literal["modbus"]
    modbus: ModbusEndpoint
    tags: dict[str, ModbusTag] = Field(min_length=1)

    @property
    def endpoint_label(self) -> str:
        return f"modbus://{self.modbus.host}:{self.modbus.port}/{self.modbus.unit_id}"


class OpcuaStation(StationBase):
    protocol: Literal["opcua"]
    opcua: OpcuaEndpoint
    tags: dict[str, OpcuaTag] = Field(min_length=1)

    @property
    def endpoint_label(self) -> str:
        return self.opcua.url


Station = Annotated[ModbusStation | OpcuaStation, Field(discriminator="protocol")]
AnyStation = ModbusStation | OpcuaStation


class SectionError(ValueError):
    """Sections given in code (not from a file) that do not validate: `key.path: problem`."""


class Config(_Model):
    site: Site
    defaults: Defaults = Defaults()
    thresholds: Thresholds = Thresholds()
    stations: tuple[Station, ...]
    historian: HistorianConfig = HistorianConfig()
    mqtt: MqttSection = None
    pager: PagerConfig | None = None
    alarms: AlarmsSection = AlarmsSection()
    http: HttpConfig = HttpConfig()
    state_dir: Path | None = None
    path: Path | None = None  # where it was loaded from (for reload)

    def station(self, station_id: str) -> AnyStation:
        for st in self.stations:
            if st.id == station_id:
                return st
        raise KeyError(station_id)

    def with_sections(self, **sections: Any) -> Config:
        """A copy with top-level sections replaced, each validated as if read from the
        file (`model_copy` alone would take a plain dict unchecked). For the demo and
        tests: `cfg.with_sections(mqtt={"port": 1884}, http={"port": 0})`."""
        update: dict[str, Any] = {}
        problems: list[str] = []
        for name, value in sections.items():
            field = type(self).model_fields.get(name)
            if field is None or name == "stations":
                raise SectionError(f"{name}: not a section with_sections() replaces")
            try:
                update[name] = TypeAdapter(field.annotation).validate_python(value)
            except ValidationError as exc:
                for err in exc.errors():
                    path = ".".join(str(p) for p in (name, *err["loc"]))
                    problems.append(f"{path}: {err['msg']}")
        if problems:
            raise SectionError("\n".join(problems))
        return self.model_copy(update=update)
