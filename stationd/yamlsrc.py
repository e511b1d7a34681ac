"""YAML with source positions: load a file into plain data plus a key-path -> line map.

A config error is only useful at 3 a.m. if it names the file and line. PyYAML's composer
gives every node its start mark, so we build the data ourselves from the node tree and
remember where each key path came from. Duplicate keys, which PyYAML silently overwrites,
are refused here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class SourceError:
    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} {self.key}: {self.message}"


class YamlSourceError(Exception):
    def __init__(self, errors: list[SourceError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def key_path(loc: Loc) -> str:
    """('stations', 3, 'tags', 'primary_flow') -> 'stations[3].tags.primary_flow'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top)"


@dataclass(slots=True)
class SourcedYaml:
    file: str
    data: Any
    lines: dict[Loc, int]

    def line_of(self, loc: Loc) -> int:
        """Line of the longest prefix of loc that exists in the file (1-based)."""
        for n in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:n]))
            if line is not None:
                return line
        return 1

    def error(self, loc: Loc, message: str) -> SourceError:
        return SourceError(self.file, self.line_of(loc), key_path(loc), message)


def _construct(
    node: yaml.Node,
    loc: Loc,
    lines: dict[Loc, int],
    file: str,
    errors: list[SourceError],
    parents: frozenset[int] = frozenset(),
) -> Any:
    lines.setdefault(loc, node.start_mark.line + 1)
    if id(node) in parents:
        # `a: &x [*x]` is legal YAML but an endless structure: refuse, don't recurse forever
        errors.append(
            SourceError(file, node.start_mark.line + 1, key_path(loc), "recursive YAML alias")
        )
        return None
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        parents = parents | {id(node)}
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                errors.append(
                    SourceError(
                        file,
                        key_node.start_mark.line + 1,
                        key_path(loc),
                        "YAML merge keys (<<) are not supported; use `template:`",
                    )
                )
                continue
            key = yaml.SafeLoader.construct_object(_LOADER, key_node, deep=True)  # type: ignore[arg-type]
            if not isinstance(key, str | int | float | bool):
                errors.append(
                    SourceError(
                        file,
                        key_node.start_mark.line + 1,
                        key_path(loc),
                        "mapping key must be a scalar",
                    )
                )
                continue
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                errors.append(
                    SourceError(
                        file,
                        key_node.start_mark.line + 1,
                        key_path((*loc, key)),
                        f"duplicate key (first at line {lines[(*loc, key)]})",
                    )
                )
                continue
            lines[(*loc, key)] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, (*loc, key), lines, file, errors, parents)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _construct(item, (*loc, i), lines, file, errors, parents)
            for i, item in enumerate(node.value)
        ]
    return yaml.SafeLoader.construct_object(_LOADER, node, deep=True)  # type: ignore[arg-type]


# One loader instance serves scalar construction (no stream needed for scalars).
_LOADER = yaml.SafeLoader("")


def load_sourced(path: str | Path) -> SourcedYaml:
    """Parse a YAML file; raise YamlSourceError with file:line on syntax or duplicate keys."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise YamlSourceError(
            [SourceError(file, 0, "(file)", f"cannot read: {exc.strerror}")]
        ) from exc
    except UnicodeDecodeError as exc:
        raise YamlSourceError([SourceError(file, 1, "(file)", f"not UTF-8: {exc}")]) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        msg = str(exc.problem or exc)
        if exc.context and exc.context_mark is not None:
            msg += f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise YamlSourceError([SourceError(file, line, "(syntax)", msg)]) from exc
    except yaml.YAMLError as exc:
        raise YamlSourceError([SourceError(file, 1, "(syntax)", str(exc))]) from exc
    except RecursionError as exc:
        raise YamlSourceError([SourceError(file, 1, "(syntax)", "nested too deeply")]) from exc
    lines: dict[Loc, int] = {}
    errors: list[SourceError] = []
    if node is None:
        return SourcedYaml(file, {}, {(): 1})
    try:
        data = _construct(node, (), lines, file, errors)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise YamlSourceError(
            [SourceError(file, (mark.line + 1) if mark else 1, "(value)", str(exc.problem))]
        ) from exc
    except RecursionError as exc:
        raise YamlSourceError([SourceError(file, 1, "(value)", "nested too deeply")]) from exc
    if errors:
        raise YamlSourceError(errors)
    return SourcedYaml(file, data, lines)
