"""Read stations.yaml: parse with source lines, merge templates, validate, cross-check.

Three steps, as Telegraf's Init() does: parse with source lines (stationd.yamlsrc), merge
each station onto its template (the template's `tag_defaults:` first, then its tags,
then the station's own tags), validate the whole document against `Config` (every
section typed, extra keys forbidden), then cross-check what one model cannot see alone
(unique ids and endpoints, overlapping registers, allow-lists, shards). Nothing is ever
silently "fixed": a bad file is refused with every problem as `FILE:LINE key.path: what`.

Secrets never live here: the models only accept *_env / *_file references.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drivers.schema import TAG_DEFAULTS
from stationd import signals
from stationd.config.errors import ConfigError, did_you_mean, pydantic_errors, remap
from stationd.config.model import SIGNAL_RE, Config, ModbusStation, OpcuaStation
from stationd.yamlsrc import Loc, SourcedYaml, SourceError, YamlSourceError, load_sourced


class _RawTemplate(BaseModel):
    """A template as written: one register map per PLC model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: Literal["modbus", "opcua"]
    description: str = ""
    # what the template's tags share (kind, type, byte/word order, scale, unit): each tag
    # line then says only what differs (drivers/schema.py ModbusTagDefaults)
    tag_defaults: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, dict[str, Any]] = Field(min_length=1)


TOP_KEYS: frozenset[str] = frozenset(set(Config.model_fields) - {"path"} | {"templates"})
STATION_KEYS: frozenset[str] = frozenset(
    (set(ModbusStation.model_fields) | set(OpcuaStation.model_fields) | {"template"}) - {"extras"}
)


def _templates(
    data: dict[str, Any], src: SourcedYaml, errors: list[SourceError]
) -> dict[str, dict[str, Any]]:
    """Templates by name ({} for one refused here), with their tag defaults apart."""
    raw_templates = data.get("templates") or {}
    if not isinstance(raw_templates, dict):
        errors.append(src.error(("templates",), "templates must be a mapping of name -> template"))
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, tpl in raw_templates.items():
        loc: Loc = ("templates", name)
        try:
            raw = _RawTemplate.model_validate(tpl)
        except ValidationError as exc:
            errors.extend(pydantic_errors(exc, _RawTemplate, loc, src, {}))
            out[str(name)] = {}  # known, but refused: its stations add no second error
            continue
        model = TAG_DEFAULTS[raw.protocol]
        try:
            defaults = model.model_validate(raw.tag_defaults).model_dump(exclude_none=True)
        except ValidationError as exc:
            errors.extend(pydantic_errors(exc, model, (*loc, "tag_defaults"), src, {}))
            out[str(name)] = {}
            continue
        out[str(name)] = {"protocol": raw.protocol, "defaults": defaults, "tags": raw.tags}
    return out


def _merge_station(
    raw: Any,
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
    for key in raw:
        if key not in STATION_KEYS:
            errors.append(src.error((*loc, key), "unknown key" + did_you_mean(key, STATION_KEYS)))
    out = {k: v for k, v in raw.items() if k in STATION_KEYS}
    tname = out.pop("template", None)
    tags: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    if tname is not None:
        tpl = templates.get(str(tname))
        if tpl is None:
            known = ", ".join(sorted(templates)) or "none defined"
            hint = did_you_mean(str(tname), templates)
            errors.append(
                src.error((*loc, "template"), f"unknown template {tname!r} (known: {known}){hint}")
            )
            return None
        if not tpl:
            return None  # the template itself was refused (and reported)
        out.setdefault("protocol", tpl["protocol"])
        if out["protocol"] != tpl["protocol"]:
            errors.append(
                src.error(
                    (*loc, "protocol"),
                    f"station says {out['protocol']}, template {tname} is {tpl['protocol']}",
                )
            )
        defaults = tpl["defaults"]
        for sig, tag in tpl["tags"].items():
            tags[sig] = tag
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
    sid = str(out.get("id", ""))
    for sig, tag in tags.items():
        if isinstance(tag, dict):
            # the template's shared settings, under what each tag says for itself
            tag = {**defaults, **tag}
            if out.get("protocol") == "opcua" and isinstance(tag.get("node"), str):
                tag["node"] = tag["node"].replace("{id}", sid)
            tags[sig] = tag
    out["tags"] = tags
    out["extras"] = tuple(sorted(s for s in tags if s not in signals.INDEX))
    own_th = out.get("thresholds") or {}
    if not isinstance(own_th, dict):
        errors.append(src.error((*loc, "thresholds"), "thresholds must be a mapping"))
        return None
    out["thresholds"] = {**site_thresholds, **own_th}
    # Station thresholds inherit the site's: an error in an inherited key points at the site.
    for key in site_thresholds:
        if key not in own_th:
            origin[(*loc, "thresholds", key)] = ("thresholds", key)
    return out


def _cross_checks(cfg: Config, src: SourcedYaml, origin: dict[Loc, Loc]) -> list[SourceError]:
    errors: list[SourceError] = []

    def where(loc: Loc) -> Loc:
        return remap(loc, origin)

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
                    src.error(
                        (*loc, "control", "allow"),
                        f"{point!r} is not a tag of this station" + did_you_mean(point, st.tags),
                    )
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
    st: ModbusStation, loc: Loc, src: SourcedYaml, where: Callable[[Loc], Loc]
) -> Iterable[SourceError]:
    # Bits of one status word may share a register; anything else sharing is a typo.
    owner: dict[tuple[str, int], tuple[str, bool]] = {}
    for sig, tag in st.tags.items():
        is_bit = tag.bit is not None
        for a in range(tag.address, tag.address + tag.width):
            k = (tag.kind, a)
            prev = owner.get(k)
            if prev is not None and not (prev[1] and is_bit):
                yield src.error(
                    where((*loc, "tags", sig, "address")),
                    f"{tag.kind} register {a} overlaps signal {prev[0]!r}",
                )
                break
            owner.setdefault(k, (sig, is_bit))


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
        if key not in TOP_KEYS:
            errors.append(
                src.error(
                    (key,),
                    f"unknown key (allowed: {', '.join(sorted(TOP_KEYS))})"
                    + did_you_mean(key, TOP_KEYS),
                )
            )
    templates = _templates(data, src, errors)
    raw_stations = data.get("stations")
    if not isinstance(raw_stations, list) or not raw_stations:
        errors.append(src.error(("stations",), "stations must be a non-empty list"))
        raise ConfigError(errors)
    site_th = data.get("thresholds") or {}
    if not isinstance(site_th, dict):
        errors.append(src.error(("thresholds",), "thresholds must be a mapping"))
        site_th = {}
    origin: dict[Loc, Loc] = {}
    merged = [
        _merge_station(raw, i, templates, site_th, src, errors, origin)
        for i, raw in enumerate(raw_stations)
    ]
    if errors:
        raise ConfigError(errors)
    doc = {k: v for k, v in data.items() if k in TOP_KEYS and k != "templates"}
    doc["stations"] = merged
    doc["path"] = Path(path)
    try:
        cfg = Config.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(pydantic_errors(exc, Config, (), src, origin)) from exc
    errors = _cross_checks(cfg, src, origin)
    if errors:
        raise ConfigError(errors)
    return cfg
