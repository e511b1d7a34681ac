"""stations.yaml -> validated, immutable config (pydantic v2) with FILE:LINE errors.

Three steps, as Telegraf's Init() does: parse with source lines (stationd.yamlsrc), merge
each station onto its template, validate the models (extra keys forbidden), then
cross-check what one model cannot see alone (unique ids and endpoints, overlapping
registers, timeout < interval). Nothing is ever silently "fixed": a bad file is refused
with every problem named as `FILE:LINE key.path: what is wrong`.

Secrets never live here: the models only accept *_env / *_file references.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stationd import signals
from stationd.detect.thresholds import HeatingCurve, Thresholds
from stationd.yamlsrc import Loc, SourcedYaml, SourceError, YamlSourceError, load_sourced

ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Extra signal names become InfluxDB field names and MQTT JSON keys: keep them plain.
SIGNAL_RE = r"^[a-z][a-z0-9_]{0,63}$"

RegisterKind = Literal["holding", "input", "coil", "discrete"]
DataType = Literal["bool", "int16", "uint16", "int32", "uint32", "float32", "float64"]
REGISTER_WIDTH: dict[str, int] = {
    "bool": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "float64": 4,
}


class ConfigError(Exception):
    """A refused config: every problem with file, line and key path."""

    def __init__(self, errors: list[SourceError]) -> None:
        # A template error shows up once per station using it: report each place once.
        unique = list({(e.file, e.line, e.key): e for e in reversed(errors)}.values())[::-1]
        super().__init__("\n".join(str(e) for e in unique))
        self.errors = unique


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- tag maps ----------------------------------------------------------------------------
class ModbusTag(_Model):
    """One signal in a Modbus register map (Telegraf/Home Assistant style)."""

    kind: RegisterKind = "holding"
    address: int = Field(ge=0, le=65535)  # 0-based protocol address
    type: DataType = "float32"
    byte_order: Literal["big", "little"] = "big"
    word_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    offset: float = 0.0
    bit: int | None = Field(None, ge=0, le=15)  # one bit of a 16-bit status word
    unit: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ModbusTag:
        if self.kind in ("coil", "discrete") and self.type != "bool":
            raise ValueError(
                f"{self.kind} points are single bits: type must be bool, not {self.type}"
            )
        if self.kind in ("holding", "input") and self.type == "bool" and self.bit is None:
            raise ValueError("a bool in a register needs `bit:` (0-15)")
        if self.bit is not None and self.type not in ("bool", "int16", "uint16"):
            raise ValueError("`bit:` applies to 16-bit registers only (bool, int16, uint16)")
        if self.address + self.width - 1 > 65535:
            raise ValueError(f"address {self.address} + {self.width} registers runs past 65535")
        if self.scale == 0:
            raise ValueError("scale 0 would turn every value into the offset")
        return self

    @property
    def width(self) -> int:
        return REGISTER_WIDTH[self.type]


class OpcuaTag(_Model):
    """One signal as an OPC UA node id; `{id}` is replaced by the station id."""

    node: str = Field(min_length=3)
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""

    @field_validator("node")
    @classmethod
    def _node_syntax(cls, v: str) -> str:
        if not re.match(r"^(ns=\d+;)?[isgb]=.+$", v):
            raise ValueError(f"not an OPC UA node id (expected e.g. ns=2;s=Name or i=2258): {v!r}")
        return v


# --- endpoints ---------------------------------------------------------------------------
class ModbusEndpoint(_Model):
    host: str = "127.0.0.1"
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=247)


class OpcuaSecurity(_Model):
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    policy: Literal["Basic256Sha256"] = "Basic256Sha256"
    certificate: Path | None = None  # client certificate (DER or PEM)
    private_key: Path | None = None
    server_certificate: Path | None = None  # trust: the one server certificate accepted
    private_key_password_env: str | None = None

    @model_validator(mode="after")
    def _needs_certs(self) -> OpcuaSecurity:
        if self.mode != "None" and (self.certificate is None or self.private_key is None):
            raise ValueError(f"security mode {self.mode} needs `certificate` and `private_key`")
        return self


class OpcuaEndpoint(_Model):
    url: str = Field(pattern=r"^opc\.tcp://[^/\s]+(:\d+)?(/.*)?$")
    security: OpcuaSecurity = OpcuaSecurity()
    mode: Literal["poll", "subscribe"] = "poll"
    username_env: str | None = None
    password_env: str | None = None


# --- defaults ----------------------------------------------------------------------------
class Defaults(_Model):
    interval: float = Field(1.0, gt=0, le=3600)  # seconds between ticks
    timeout: float = Field(0.8, gt=0)  # every network call; must be < interval
    connect_timeout: float = Field(2.0, gt=0)
    backoff_initial: float = Field(1.0, gt=0)
    backoff_max: float = Field(30.0, gt=0)
    window: int = Field(600, ge=10, le=86400)  # ticks held in the fleet frame
    max_gap_registers: int = Field(8, ge=0, le=120)  # read across gaps up to this size
    max_block_registers: int = Field(125, ge=1, le=125)  # Modbus limit per request
    # Each station starts its read at a stable offset of up to poll_spread x timeout after
    # the tick (samples keep the tick's time), as SCADA pollers stagger scans: 1,000 reads
    # sent in one burst queue up in the gateways and PLCs and the last ones time out.
    poll_spread: float = Field(0.3, ge=0.0, le=0.5)

    @model_validator(mode="after")
    def _timeouts(self) -> Defaults:
        if self.timeout >= self.interval:
            raise ValueError(
                f"timeout {self.timeout}s must be shorter than interval {self.interval}s "
                "(a slow station would otherwise delay the next tick)"
            )
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be >= backoff_initial")
        return self


class Site(_Model):
    id: str = Field(pattern=ID_RE)
    name: str = Field(min_length=1)
    timezone: str = "Asia/Shanghai"
    shard: str | None = Field(None, pattern=r"^\d+/\d+$")  # k/n, 0 <= k < n


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


class Config(_Model):
    site: Site
    defaults: Defaults = Defaults()
    thresholds: Thresholds = Thresholds()
    stations: tuple[Station, ...]
    # Sections that other parts validate with their own models (alarms, historian, pager,
    # mqtt, http): kept as plain mappings here and checked by those parts at start-up.
    historian: dict[str, Any] = Field(default_factory=dict)
    mqtt: dict[str, Any] = Field(default_factory=dict)
    pager: dict[str, Any] = Field(default_factory=dict)
    alarms: dict[str, Any] = Field(default_factory=dict)
    http: dict[str, Any] = Field(default_factory=dict)
    state_dir: Path | None = None
    path: Path | None = None  # where it was loaded from (for reload)

    def station(self, station_id: str) -> AnyStation:
        for st in self.stations:
            if st.id == station_id:
                return st
        raise KeyError(station_id)


# --- raw file layout (before merge) --------------------------------------------------------
class _RawTemplate(_Model):
    protocol: Literal["modbus", "opcua"]
    description: str = ""
    tags: dict[str, dict[str, Any]] = Field(min_length=1)


_TOP_KEYS = {
    "site",
    "defaults",
    "thresholds",
    "templates",
    "stations",
    "historian",
    "mqtt",
    "pager",
    "alarms",
    "http",
    "state_dir",
}
_STATION_KEYS = (
    set(ModbusStation.model_fields) | set(OpcuaStation.model_fields) | {"template"}
) - {"extras"}


def _merge_station(
    raw: dict[str, Any],
    i: int,
    templates: dict[str, dict[str, Any]],
    site_thresholds: dict[str, Any],
    src: SourcedYaml,
    errors: list[SourceError],
    origin: dict[Loc, Loc],
) -> dict[str, Any] | None:
    """Station dict with its template's tags merged in; records where merged keys came from."""
    loc: Loc = ("stations", i)
    if not isinstance(raw, dict):
        errors.append(src.error(loc, "a station must be a mapping"))
        return None
    out = dict(raw)
    tname = out.pop("template", None)
    tags: dict[str, Any] = {}
    if tname is not None:
        tpl = templates.get(str(tname))
        if tpl is None:
            known = ", ".join(sorted(templates)) or "none defined"
            errors.append(
                src.error((*loc, "template"), f"unknown template {tname!r} (known: {known})")
            )
            return None
        out.setdefault("protocol", tpl["protocol"])
        if out["protocol"] != tpl["protocol"]:
            errors.append(
                src.error(
                    (*loc, "protocol"),
                    f"station says {out['protocol']}, template {tname} is {tpl['protocol']}",
                )
            )
        for sig, tag in tpl["tags"].items():
            tags[sig] = dict(tag)
            origin[(*loc, "tags", sig)] = ("templates", str(tname), "tags", sig)
    own_tags = out.get("tags") or {}
    if not isinstance(own_tags, dict):
        errors.append(
            src.error((*loc, "tags"), "tags must be a mapping of signal -> register/node")
        )
        return None
    for sig, tag in own_tags.items():
        # A station's own entry replaces the template's entry for that signal whole.
        tags[sig] = tag
        origin.pop((*loc, "tags", sig), None)
    if out.get("protocol") == "opcua":
        sid = str(out.get("id", ""))
        for tag in tags.values():
            if isinstance(tag, dict) and isinstance(tag.get("node"), str):
                tag["node"] = tag["node"].replace("{id}", sid)
    out["tags"] = tags
    out["extras"] = tuple(sorted(s for s in tags if s not in signals.INDEX))
    th = dict(site_thresholds)
    own_th = out.get("thresholds") or {}
    if not isinstance(own_th, dict):
        errors.append(src.error((*loc, "thresholds"), "thresholds must be a mapping"))
        return None
    th.update(own_th)
    out["thresholds"] = th
    return out


def _pydantic_errors(
    exc: ValidationError, prefix: Loc, src: SourcedYaml, origin: dict[Loc, Loc]
) -> list[SourceError]:
    out = []
    for err in exc.errors():
        loc: Loc = (*prefix, *err["loc"])
        # Union branches add the model name to the loc (e.g. 'dict[str,ModbusTag]'): drop them.
        loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p[:1].isupper())))
        # the discriminated union inserts the protocol after the station index: drop it
        if len(loc) > 2 and loc[0] == "stations" and loc[2] in ("modbus", "opcua"):
            loc = (*loc[:2], *loc[3:])
        for n in range(len(loc), 0, -1):
            if loc[:n] in origin:
                loc = (*origin[loc[:n]], *loc[n:])
                break
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif isinstance(err.get("input"), str | int | float) and err["type"] != "value_error":
            msg = f"{msg} (got {err['input']!r})"
        out.append(src.error(loc, msg.removeprefix("Value error, ")))
    return out


def _cross_checks(cfg: Config, src: SourcedYaml, origin: dict[Loc, Loc]) -> list[SourceError]:
    errors: list[SourceError] = []

    def where(loc: Loc) -> Loc:
        for n in range(len(loc), 0, -1):
            if loc[:n] in origin:
                return (*origin[loc[:n]], *loc[n:])
        return loc

    seen_ids: dict[str, int] = {}
    seen_ep: dict[tuple[Any, ...], str] = {}
    for i, st in enumerate(cfg.stations):
        loc: Loc = ("stations", i)
        if st.id in seen_ids:
            errors.append(
                src.error(
                    (*loc, "id"),
                    f"duplicate station id {st.id!r} (also stations[{seen_ids[st.id]}])",
                )
            )
        seen_ids.setdefault(st.id, i)
        key: tuple[Any, ...]
        if isinstance(st, ModbusStation):
            key = ("modbus", st.modbus.host, st.modbus.port, st.modbus.unit_id)
            errors.extend(_register_overlaps(st, loc, src, where))
        else:
            key = ("opcua", st.opcua.url, st.id)
        if key in seen_ep:
            errors.append(
                src.error(loc, f"same endpoint as station {seen_ep[key]} ({st.endpoint_label})")
            )
        seen_ep.setdefault(key, st.id)
        for sig in st.tags:
            if sig not in signals.INDEX and not re.match(SIGNAL_RE, sig):
                errors.append(
                    src.error(where((*loc, "tags", sig)), "extra signal names are lower_snake_case")
                )
        for point in st.control.allow:
            if point not in st.tags:
                errors.append(
                    src.error((*loc, "control", "allow"), f"{point!r} is not a tag of this station")
                )
        if st.indoor_estate is not None and st.indoor_estate not in st.estates:
            errors.append(
                src.error(
                    (*loc, "indoor_estate"),
                    f"{st.indoor_estate!r} is not one of this station's estates",
                )
            )
    if cfg.site.shard is not None:
        k, n = (int(x) for x in cfg.site.shard.split("/"))
        if not 0 <= k < n:
            errors.append(src.error(("site", "shard"), f"shard {k}/{n}: need 0 <= k < n"))
    return errors


def _register_overlaps(
    st: ModbusStation, loc: Loc, src: SourcedYaml, where: Any
) -> Iterable[SourceError]:
    # Bits of one status word may share a register; anything else sharing is a typo.
    owner: dict[tuple[str, int], tuple[str, bool]] = {}
    table = {"holding": "holding", "input": "input", "coil": "coil", "discrete": "discrete"}
    for sig, tag in st.tags.items():
        is_bit = tag.bit is not None
        for a in range(tag.address, tag.address + tag.width):
            k = (table[tag.kind], a)
            prev = owner.get(k)
            if prev is not None and not (prev[1] and is_bit):
                yield src.error(
                    where((*loc, "tags", sig, "address")),
                    f"{tag.kind} register {a} overlaps signal {prev[0]!r}",
                )
                break
            owner.setdefault(k, (sig, is_bit))


def shard_of(station_id: str, n: int) -> int:
    """Stable shard of a station (like Prometheus' hashmod): md5 of the id, mod n."""
    digest = hashlib.md5(station_id.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % n


def load_config(path: str | Path) -> Config:
    """Load and validate stations.yaml; raise ConfigError naming FILE:LINE key.path."""
    try:
        src = load_sourced(path)
    except YamlSourceError as exc:
        raise ConfigError(exc.errors) from exc
    data = src.data
    if not isinstance(data, dict):
        raise ConfigError(
            [src.error((), "the top level must be a mapping (site:, stations:, ...)")]
        )
    errors: list[SourceError] = []
    for key in data:
        if key not in _TOP_KEYS:
            errors.append(
                src.error((key,), f"unknown key (allowed: {', '.join(sorted(_TOP_KEYS))})")
            )
    templates: dict[str, dict[str, Any]] = {}
    raw_templates = data.get("templates") or {}
    if not isinstance(raw_templates, dict):
        errors.append(src.error(("templates",), "templates must be a mapping of name -> template"))
        raw_templates = {}
    for name, tpl in raw_templates.items():
        try:
            _RawTemplate.model_validate(tpl)
            templates[str(name)] = tpl
        except ValidationError as exc:
            errors.extend(_pydantic_errors(exc, ("templates", name), src, {}))
    raw_stations = data.get("stations")
    if not isinstance(raw_stations, list) or not raw_stations:
        errors.append(src.error(("stations",), "stations must be a non-empty list"))
        raise ConfigError(errors)
    site_th = data.get("thresholds") or {}
    if not isinstance(site_th, dict):
        errors.append(src.error(("thresholds",), "thresholds must be a mapping"))
        site_th = {}
    origin: dict[Loc, Loc] = {}
    merged = []
    for i, raw in enumerate(raw_stations):
        if isinstance(raw, dict):
            for key in raw:
                if key not in _STATION_KEYS:
                    errors.append(src.error(("stations", i, key), "unknown key"))
        m = _merge_station(raw, i, templates, site_th, src, errors, origin)
        if m is not None:
            for k in [k for k in m if k not in _STATION_KEYS and k != "extras"]:
                m.pop(k)
        merged.append(m)
    # Station thresholds inherit the site's: an error in an inherited key points at the site.
    for i in range(len(raw_stations)):
        own = (
            (raw_stations[i] or {}).get("thresholds") if isinstance(raw_stations[i], dict) else None
        )
        for key in site_th:
            if not (isinstance(own, dict) and key in own):
                origin[("stations", i, "thresholds", key)] = ("thresholds", key)
    if errors:
        raise ConfigError(errors)
    doc = {k: v for k, v in data.items() if k != "templates"}
    doc["stations"] = merged
    doc["path"] = Path(path)
    try:
        cfg = Config.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(_pydantic_errors(exc, (), src, origin)) from exc
    errors = _cross_checks(cfg, src, origin)
    if errors:
        raise ConfigError(errors)
    return cfg


def summary(cfg: Config) -> str:
    """A short human summary for `stationd check-config`."""
    n_mb = sum(1 for s in cfg.stations if s.protocol == "modbus")
    n_ua = len(cfg.stations) - n_mb
    branches = sorted({s.branch for s in cfg.stations})
    feeders = {s.power_feeder for s in cfg.stations}
    area = sum(s.heated_area_m2 for s in cfg.stations)
    n_sig = sum(len(s.tags) for s in cfg.stations)
    return (
        f"site {cfg.site.id} ({cfg.site.name}): {len(cfg.stations)} stations "
        f"({n_mb} modbus, {n_ua} opcua), {n_sig} signals, {len(branches)} branches "
        f"({', '.join(branches[:6])}{' …' if len(branches) > 6 else ''}), {len(feeders)} feeders, "
        f"{area / 1e4:.1f} 万m² heated, interval {cfg.defaults.interval}s, timeout {cfg.defaults.timeout}s"
    )


def remap_ports(cfg: Config, port_map: dict[int, int]) -> Config:
    """The same fleet with endpoint ports replaced (tests and the demo run on free ports)."""
    stations: list[AnyStation] = []
    for st in cfg.stations:
        if isinstance(st, ModbusStation):
            port = port_map.get(st.modbus.port, st.modbus.port)
            ep = st.modbus.model_copy(update={"port": port})
            stations.append(st.model_copy(update={"modbus": ep}))
        else:
            m = re.match(r"^(opc\.tcp://[^/:]+):(\d+)(.*)$", st.opcua.url)
            if m and int(m.group(2)) in port_map:
                url = f"{m.group(1)}:{port_map[int(m.group(2))]}{m.group(3)}"
                st = st.model_copy(update={"opcua": st.opcua.model_copy(update={"url": url})})
            stations.append(st)
    return cfg.model_copy(update={"stations": tuple(stations)})


def endpoint_ports(cfg: Config) -> list[int]:
    """Every TCP port the fleet's endpoints use, sorted."""
    ports: set[int] = set()
    for st in cfg.stations:
        if isinstance(st, ModbusStation):
            ports.add(st.modbus.port)
        else:
            m = re.match(r"^opc\.tcp://[^/:]+:(\d+)", st.opcua.url)
            ports.add(int(m.group(1)) if m else 4840)
    return sorted(ports)
