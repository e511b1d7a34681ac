"""Suppression by design: which alarms another active alarm already explains.

A station that lost power also loses pressure, stops talking and freezes its sensors;
paging all of those buries the one alarm that matters (plan 7.2). Likewise a monitoring
outage (plan 6.3) explains every station's comm loss. The rules are a small table so the
dispatch room can read them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from stationd.findings import Finding

#: a set of suppression rules: (active finding, alarm ids known) -> {explained id: by id}
Suppression = Callable[[Finding, Iterable[str]], dict[str, str]]

#: per-station consequences of a station losing its power supply
POWER_LOSS_EXPLAINS: tuple[str, ...] = (
    "secondary_pressure_drop",  # pumps stop, pressure falls to static
    "station_comm_loss",  # the PLC and its modem go dark with the station
    "sensor_fault",  # frozen or zero readings on a dead station
    "flow_allocation",  # no circulation
    "supply_below_curve",
    "supply_above_curve",
)


def explained_by(finding: Finding, known_alarm_ids: Iterable[str]) -> dict[str, str]:
    """Alarm ids this active finding explains, each mapped to the explaining alarm id."""
    out: dict[str, str] = {}
    me = finding.alarm_id
    if finding.kind == "station_power_loss":
        if finding.scope == "station":
            stations: tuple[str, ...] = (finding.subject,)
        else:
            # a feeder-level power loss explains each of its stations' own power loss too
            stations = finding.stations
            for s in stations:
                out[f"{s}/station_power_loss"] = me
        for s in stations:
            for kind in POWER_LOSS_EXPLAINS:
                out[f"{s}/{kind}"] = me
    elif finding.kind == "monitoring_loss":
        if finding.stations:
            for s in finding.stations:
                out[f"{s}/station_comm_loss"] = me
        else:
            # no list of stations: the whole system is blind, every comm loss is explained
            for alarm_id in known_alarm_ids:
                if alarm_id.endswith("/station_comm_loss"):
                    out[alarm_id] = me
    out.pop(me, None)
    return out
