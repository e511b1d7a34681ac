"""Config errors as `FILE:LINE key.path: problem`, with "did you mean" for near misses.

pydantic reports where in the *merged* document a value failed; this module maps that
back to the line of the file it came from (a template's tag, the site's thresholds) and
words the problem for a person: an unknown key names the key it was probably meant to be
(`mqtt.hots` -> `host`), an enum value the value (`kind: holdng` -> `holding`). The
suggestions come from the models themselves, so every section gets them.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Sequence
from difflib import get_close_matches
from typing import Any

from pydantic import BaseModel, ValidationError

from stationd.yamlsrc import Loc, SourcedYaml, SourceError


class ConfigError(Exception):
    """A refused config: every problem with file, line and key path."""

    def __init__(self, errors: list[SourceError]) -> None:
        # A template error shows up once per station using it: report each place once.
        unique = list({(e.file, e.line, e.key): e for e in reversed(errors)}.values())[::-1]
        super().__init__("\n".join(str(e) for e in unique))
        self.errors = unique


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the closest choice, or "" when none is close."""
    if not isinstance(word, str) or not word:
        return ""
    options = sorted(set(choices))
    lowered = {c.lower(): c for c in options}
    match = get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f"; did you mean {lowered[match[0]]!r}?" if match else ""


# --- where in the model tree a pydantic loc points -----------------------------------------
def _members(tp: Any) -> list[Any]:
    """The concrete types behind Annotated / Optional / Union."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _members(typing.get_args(tp)[0])
    if origin is typing.Union or isinstance(tp, types.UnionType):
        return [m for a in typing.get_args(tp) for m in _members(a)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _is_label(part: object) -> bool:
    """A union branch label pydantic adds to a loc ('function-after[...]', 'ModbusTag')."""
    return isinstance(part, str) and ("[" in part or part[:1].isupper())


def models_at(root: type[BaseModel], loc: Sequence[str | int]) -> list[type[BaseModel]]:
    """The model class(es) a raw pydantic loc (below `root`) ends in."""
    current: list[Any] = [root]
    for part in loc:
        if _is_label(part):
            continue
        found: list[Any] = []
        members = [m for t in current for m in _members(t)]
        tagged = [
            m
            for m in members
            if _is_model(m)
            and "protocol" in m.model_fields
            and part in typing.get_args(m.model_fields["protocol"].annotation)
        ]
        if len(tagged) == 1 and len(members) > 1:
            # a discriminated union's tag (`stations[0].modbus...` names the branch)
            current = tagged
            continue
        for m in members:
            origin = typing.get_origin(m)
            if _is_model(m) and isinstance(part, str) and part in m.model_fields:
                found.append(m.model_fields[part].annotation)
            elif origin is dict:
                found.append(typing.get_args(m)[1])
            elif origin in (list, tuple, Sequence) and isinstance(part, int):
                args = [a for a in typing.get_args(m) if a is not Ellipsis]
                found.extend(args[:1])
        current = found
    return [m for t in current for m in _members(t) if _is_model(m)]


def known_keys(root: type[BaseModel], loc: Sequence[str | int]) -> set[str]:
    return {name for m in models_at(root, loc) for name in m.model_fields}


# --- pydantic errors -> file lines --------------------------------------------------------------
def _clean(loc: Loc) -> Loc:
    # union branch labels (e.g. 'dict[str,ModbusTag]') are not keys of the file
    loc = tuple(p for p in loc if not _is_label(p))
    # the discriminated union inserts the protocol after the station index: drop it
    if len(loc) > 2 and loc[0] == "stations" and loc[2] in ("modbus", "opcua"):
        loc = (*loc[:2], *loc[3:])
    return loc


def remap(loc: Loc, origin: dict[Loc, Loc]) -> Loc:
    """Where a merged key came from: a template's tag, the site's thresholds, or itself."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in origin:
            return (*origin[loc[:n]], *loc[n:])
    return loc


def _message(err: Any, root: type[BaseModel], raw_loc: Loc) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key" + did_you_mean(raw_loc[-1], known_keys(root, raw_loc[:-1]))
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    given = err.get("input")
    if kind == "value_error" or not isinstance(given, str | int | float):
        return msg
    msg = f"{msg} (got {given!r})"
    if kind in ("literal_error", "enum"):
        expected = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
        msg += did_you_mean(given, expected)
    return msg


def pydantic_errors(
    exc: ValidationError,
    root: type[BaseModel],
    prefix: Loc,
    src: SourcedYaml,
    origin: dict[Loc, Loc],
) -> list[SourceError]:
    """Every error of `exc` (raised validating `root` at `prefix` of the file) as a
    FILE:LINE error at the key the value came from."""
    out = []
    for err in exc.errors():
        raw: Loc = tuple(err["loc"])
        loc = remap(_clean((*prefix, *raw)), origin)
        out.append(src.error(loc, _message(err, root, raw)))
    return out
