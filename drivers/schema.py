"""The drivers' part of stations.yaml: tag maps, endpoints, timing, template tag defaults.

As a Telegraf plugin owns its `configuration.go`, the drivers own these models;
stationd/config assembles them into a station and the whole file. A driver reads a
station through the small protocols at the bottom (`ModbusStationSpec`,
`OpcuaStationSpec`), so nothing here depends on the daemon's config.

Models forbid unknown keys and are frozen. Where a value is a common near-miss the error
says what was meant (`word_order: CDAB` is a byte pattern: `word_order: little`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from drivers.registers import BIT_KINDS, DataType, RegisterKind, width


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- byte and word order ------------------------------------------------------------------
#: byte patterns as PLC manuals write them -> (byte_order, word_order)
BYTE_PATTERNS: dict[str, tuple[str, str]] = {
    "ABCD": ("big", "big"),
    "CDAB": ("big", "little"),
    "BADC": ("little", "big"),
    "DCBA": ("little", "little"),
}
_SYNONYMS = {
    "le": "little",
    "little-endian": "little",
    "little_endian": "little",
    "lsw": "little",
    "swap": "little",
    "swapped": "little",
    "be": "big",
    "big-endian": "big",
    "big_endian": "big",
    "msw": "big",
}


def _order_hint(field: str) -> Any:
    """A validator for byte_order/word_order that names what a near-miss meant."""
    pos = 0 if field == "byte_order" else 1

    def check(value: Any) -> Any:
        if not isinstance(value, str) or value in ("big", "little"):
            return value
        pattern = BYTE_PATTERNS.get(value.upper())
        if pattern is not None:
            raise ValueError(
                f"{value!r} is a byte pattern: {value.upper()} is byte_order: {pattern[0]}, "
                f"word_order: {pattern[1]} (did you mean {field}: {pattern[pos]!r}?)"
            )
        meant = _SYNONYMS.get(value.lower())
        if meant is not None:
            raise ValueError(f"{field} is 'big' or 'little' (did you mean {meant!r}?)")
        return value

    return BeforeValidator(check)


ByteOrder = Annotated[Literal["big", "little"], _order_hint("byte_order")]
WordOrder = Annotated[Literal["big", "little"], _order_hint("word_order")]


# --- tag maps -------------------------------------------------------------------------------
class ModbusTag(_Model):
    """One signal in a Modbus register map (Telegraf/Home Assistant style)."""

    kind: RegisterKind = "holding"
    address: int = Field(ge=0, le=65535)  # 0-based protocol address
    type: DataType = "float32"
    byte_order: ByteOrder = "big"
    word_order: WordOrder = "big"
    scale: float = 1.0
    offset: float = 0.0
    bit: int | None = Field(None, ge=0, le=15)  # one bit of a 16-bit status word
    unit: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ModbusTag:
        if self.kind in BIT_KINDS and self.type != "bool":
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
        """Registers the value spans (drivers/registers.py)."""
        return width(self.type)


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


class ModbusTagDefaults(_Model):
    """A template's `tag_defaults:` for Modbus: what most of its tags share (a PLC model's
    register kind, type and word order), so each tag line says only what differs."""

    kind: RegisterKind | None = None
    type: DataType | None = None
    byte_order: ByteOrder | None = None
    word_order: WordOrder | None = None
    scale: float | None = None
    offset: float | None = None
    unit: str | None = None


class OpcuaTagDefaults(_Model):
    """A template's `tag_defaults:` for OPC UA."""

    scale: float | None = None
    offset: float | None = None
    unit: str | None = None


TAG_DEFAULTS: dict[str, type[_Model]] = {"modbus": ModbusTagDefaults, "opcua": OpcuaTagDefaults}


# --- endpoints ------------------------------------------------------------------------------
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


# --- timing ---------------------------------------------------------------------------------
class DriverTiming(_Model):
    """The part of `defaults:` a driver works to; stationd/config extends it with the
    poller's own settings (backoff, window, poll spread)."""

    interval: float = Field(1.0, gt=0, le=3600)  # seconds between ticks
    timeout: float = Field(0.8, gt=0)  # every network call; must be < interval
    connect_timeout: float = Field(2.0, gt=0)
    max_gap_registers: int = Field(8, ge=0, le=120)  # read across gaps up to this size
    max_block_registers: int = Field(125, ge=1, le=125)  # Modbus limit per request

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> DriverTiming:
        if self.timeout >= self.interval:
            raise ValueError(
                f"timeout {self.timeout}s must be shorter than interval {self.interval}s "
                "(a slow station would otherwise delay the next tick)"
            )
        return self


# --- what a driver reads of a station --------------------------------------------------------
class ModbusStationSpec(Protocol):
    """A Modbus station as the driver sees it (stationd.config.ModbusStation fits)."""

    @property
    def id(self) -> str: ...

    @property
    def protocol(self) -> Literal["modbus"]: ...

    @property
    def modbus(self) -> ModbusEndpoint: ...

    @property
    def tags(self) -> Mapping[str, ModbusTag]: ...

    @property
    def signals(self) -> tuple[str, ...]:
        """Read order: the order of the values a read returns."""
        ...

    @property
    def endpoint_label(self) -> str: ...


class OpcuaStationSpec(Protocol):
    """An OPC UA station as the driver sees it (stationd.config.OpcuaStation fits)."""

    @property
    def id(self) -> str: ...

    @property
    def protocol(self) -> Literal["opcua"]: ...

    @property
    def opcua(self) -> OpcuaEndpoint: ...

    @property
    def tags(self) -> Mapping[str, OpcuaTag]: ...

    @property
    def signals(self) -> tuple[str, ...]: ...

    @property
    def endpoint_label(self) -> str: ...


StationSpec = ModbusStationSpec | OpcuaStationSpec
