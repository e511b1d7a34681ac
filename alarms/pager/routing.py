"""What a page says about where the incident is, so a pager can route it to a crew.

Dispatch sends work by the network's structure: the primary branch (一次网支线), the 10 kV
feeder, the heat source, the estates (小区) and the service centre (服务中心) whose crews
serve the station, and by the plan's section for the playbook. `routing_labels()` gives
those for one incident: a station alarm takes its station's; a fleet alarm (a branch's
primary leak, a source's shortfall, a feeder's power loss) takes the values its stations
share, and leaves out what they do not. Every value comes from the config, so two
replica daemons give the same labels (Alertmanager's identity is the label set).

`page_summary()` words the one-line summary with the station named once: the finding
messages already begin with the station's id and name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: the routing labels, in the order they are documented
ROUTING_KEYS: tuple[str, ...] = (
    "branch",
    "feeder",
    "heat_source",
    "estate",
    "service_centre",
    "plan_section",
)


def _station_values(info: Any) -> dict[str, str]:
    estates = tuple(getattr(info, "estates", ()) or ())
    return {
        "branch": str(getattr(info, "branch", "") or ""),
        "feeder": str(getattr(info, "power_feeder", "") or ""),
        "heat_source": str(getattr(info, "heat_source", "") or ""),
        "estate": ",".join(estates),
        "service_centre": str(getattr(info, "service_centre", "") or ""),
    }


def routing_labels(
    station: str,
    stations: Iterable[str],
    infos: Mapping[str, Any],
    plan_section: str = "",
) -> dict[str, str]:
    """The routing labels of an incident at `station` (or, for a fleet alarm, at
    `stations`), from the configured station facts `infos` (id -> StationInfo)."""
    ids = [station] if station else list(dict.fromkeys(stations))
    known = [_station_values(infos[i]) for i in ids if i in infos]
    out: dict[str, str] = {}
    if known:
        for key in known[0]:
            values = {k[key] for k in known}
            if len(values) == 1 and (value := values.pop()):
                out[key] = value
    if plan_section:
        out["plan_section"] = plan_section
    return {k: out[k] for k in ROUTING_KEYS if k in out}


def strip_station(message: str, station: str, name: str) -> str:
    """`message` without the station id and name it starts with ("hs002 幸福里换热站 通讯
    中断：…" -> "通讯中断：…")."""
    text = message.lstrip()
    for part in (station, name):
        if part and text.startswith(part):
            text = text[len(part) :].lstrip(" ：:，,")
    return text


def page_summary(
    where: str, title: str, message: str, station: str, name: str, sep: str = "："
) -> str:
    """ "<where> <title>: <message>" with the station named once, in `where` (the
    finding messages begin with the station's id and name)."""
    detail = strip_station(message, station, name) if message else ""
    head = f"{where} {title}".strip()
    return f"{head}{sep}{detail}" if detail else head
