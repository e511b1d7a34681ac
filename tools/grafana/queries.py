"""The dashboards' queries, written once and rendered as PromQL or InfluxQL.

A `Q` names a measurement, an arithmetic expression over its fields (`{field}` marks a
field, `{field:increase}` gives it its own reduction), the dashboard variables that filter it (`Scope`) and how it is reduced:

- a time series (`window=None`): per step of the dashboard (`$__interval`) — PromQL
  `x`, `last_over_time(x[$__interval])`, `avg_over_time`, `increase`; InfluxQL
  `mean("x")`, `last`, `mean`, `spread` with `GROUP BY time($__interval), <by> fill(none)`;
- a value now (`window="2m"`, `"24h"`): over the window ending now — PromQL instant
  `last_over_time(x[2m])` …; InfluxQL `... WHERE time > now() - 2m GROUP BY <by>`;
- optionally across the group (`fleet="count"|"avg"|"max"|"sum"`, after an optional
  value filter `where="> 1"`): PromQL `count(x > 1)`; InfluxQL a subquery,
  `SELECT count("v") FROM (SELECT ... AS "v" ...) WHERE "v" > 1`.

The historian writes `measurement,tags field=value`; VictoriaMetrics stores that as
`<measurement>_<field>{tags}`, InfluxDB as is, so the two renderings ask for the same
numbers. Legends use `{tag}`: `{{tag}}` in PromQL, `$tag_tag` in InfluxQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Agg = Literal["raw", "last", "mean", "increase"]
Fleet = Literal["count", "avg", "max", "sum"]

#: `{field}` or `{field:agg}` (a per-field reduction overriding the query's)
_FIELD = re.compile(r"\{([a-z][a-z0-9_]*)(?::(raw|last|mean|increase))?\}")
_LEGEND_TAG = re.compile(r"\{([a-z][a-z0-9_]*)\}")


@dataclass(frozen=True)
class Scope:
    """Tag filters from dashboard variables: (tag, variable, multi-value)."""

    filters: tuple[tuple[str, str, bool], ...]

    def promql(self) -> str:
        parts = [
            f'{tag}=~"${var}"' if multi else f'{tag}="${var}"' for tag, var, multi in self.filters
        ]
        return ", ".join(parts)

    def influxql(self) -> str:
        # Grafana formats a regex-interpolated variable as an escaped value, or (a|b) for
        # several, or the variable's allValue (".*") for All.
        return " AND ".join(f'"{tag}" =~ /^${var}$/' for tag, var, _ in self.filters)


SITE = Scope((("site", "site", False),))
FLEET = Scope((("site", "site", False), ("branch", "branch", True)))
STATION = Scope((("site", "site", False), ("station", "station", False)))
ALARMS = Scope((("site", "site", False), ("station", "station", True)))


@dataclass(frozen=True)
class Q:
    measurement: str
    expr: str
    scope: Scope
    legend: str = "{name} {station}"
    by: tuple[str, ...] = ("station", "name")
    agg: Agg = "raw"
    window: str | None = None
    fleet: Fleet | None = None
    where: str | None = None

    @property
    def instant(self) -> bool:
        return self.window is not None

    @property
    def fields(self) -> list[str]:
        return [m.group(1) for m in _FIELD.finditer(self.expr)]

    # -- PromQL (VictoriaMetrics) --------------------------------------------------------
    def promql(self) -> str:
        sel = self.scope.promql()
        rng = self.window or "$__interval"

        def term(m: re.Match[str]) -> str:
            base = f"{self.measurement}_{m.group(1)}{{{sel}}}"
            agg = m.group(2) or self.agg
            if agg == "raw" and self.window is None:
                return base
            fn = {
                "raw": "last_over_time",
                "last": "last_over_time",
                "mean": "avg_over_time",
                "increase": "increase",
            }[agg]
            return f"{fn}({base}[{rng}])"

        q = _FIELD.sub(term, self.expr)
        if self.where:
            q = f"({q}) {self.where}" if _is_compound(self.expr) else f"{q} {self.where}"
        if self.fleet:
            q = f"{self.fleet}({q})"
        return q

    def promql_legend(self) -> str:
        return _LEGEND_TAG.sub(lambda m: "{{" + m.group(1) + "}}", self.legend)

    # -- InfluxQL (InfluxDB 1.x, 2.x/3.x through the v1 API) ------------------------------
    def influxql(self, name: str = "v") -> str:
        """The query; its value column is called `name` (table columns need their own)."""
        fns = {"raw": "mean", "last": "last", "mean": "mean", "increase": "spread"}
        value = _FIELD.sub(lambda m: f'{fns[m.group(2) or self.agg]}("{m.group(1)}")', self.expr)
        where = self.scope.influxql()
        tags = ", ".join(f'"{t}"' for t in self.by)
        if self.window is None:
            when = "$timeFilter"
            group = "GROUP BY time($__interval)" + (f", {tags}" if tags else "") + " fill(none)"
        else:
            when = f"time > now() - {self.window}"
            group = f"GROUP BY {tags}" if tags else ""
        inner = (
            f'SELECT {value} AS "{name}" FROM "{self.measurement}" WHERE {where} AND {when} {group}'
        )
        inner = inner.rstrip()
        if not (self.fleet or self.where):
            return inner
        outer_fn = {"count": "count", "avg": "mean", "max": "max", "sum": "sum", None: ""}[
            self.fleet
        ]
        outer = f'{outer_fn}("{name}")' if outer_fn else f'"{name}"'
        q = f'SELECT {outer} AS "{name}" FROM ({inner})'
        if self.where:
            q += f' WHERE "{name}" {self.where}'
        if not self.fleet and tags:
            q += f" GROUP BY {tags}"  # keep the series (and their tags) apart
        return q

    def influxql_alias(self) -> str:
        return _LEGEND_TAG.sub(lambda m: f"$tag_{m.group(1)}", self.legend)


def _is_compound(expr: str) -> bool:
    return bool(re.search(r"[-+*/]", _FIELD.sub("x", expr)))
