"""Whole-fleet helpers over a loaded config: shards, summary, endpoint ports."""

from __future__ import annotations

import hashlib
import re

from stationd.config.model import AnyStation, Config, ModbusStation


def shard_of(station_id: str, n: int) -> int:
    """Stable shard of a station (like Prometheus' hashmod): md5 of the id, mod n."""
    digest = hashlib.md5(station_id.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % n


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
