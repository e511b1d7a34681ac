"""One real asyncua server hosting every simulated OPC UA station, fed from the plant.

An asyncua server costs ~2 s and ~100 MB to start, so all OPC UA stations of an endpoint
share one (DESIGN.md): namespace `urn:stationd:simulator` is registered first and so gets
index 2, which the config's node ids (`ns=2;s=<id>.<signal>`) assume. Each station is an
object (`ns=2;s=<id>`, display name its Chinese name) holding one Double variable per tag,
with exactly the node id the config names; control points are writable.

A station whose PLC does not answer keeps its nodes, but every read returns status
`BadNoCommunication` (0x80310000: "communication with the data source is defined but not
established, and there is no last known value") with no value, as a gateway server does
for a device behind it that went silent; subscribers get that status as a data change.

Control writes: before each update, the writable nodes' current values are compared with
what the simulator last wrote; a difference is a client's write and becomes a plant
set-point.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from asyncua import Server, ua

from stationd import signals
from stationd.config import OpcuaStation, OpcuaTag
from tools.simulate_station.plant import CONTROL_POINTS

log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:stationd:simulator"
NOT_ANSWERING = ua.StatusCode(ua.StatusCodes.BadNoCommunication)


@dataclass
class _Var:
    signal: str
    column: int  # plant column, or -1 for an extra signal
    tag: OpcuaTag
    nodeid: ua.NodeId
    writable: bool
    last: float | None = None  # raw value last written by the simulator


@dataclass
class _Station:
    plant_index: int
    station: OpcuaStation
    vars: list[_Var] = field(default_factory=list)
    answering: bool = True


def rewrite_port(url: str, port_map: dict[int, int]) -> str:
    """opc.tcp://host:PORT/path with PORT replaced through `port_map` (unchanged if absent)."""
    head, _, rest = url.partition("://")
    hostport, slash, path = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return url
    return f"{head}://{host}:{port_map.get(int(port), int(port))}{slash}{path}"


class OpcuaServer:
    """One asyncua server at `url` for the given stations."""

    def __init__(self, url: str, stations: Sequence[tuple[int, OpcuaStation]]) -> None:
        self.url = url
        self.stations = [_Station(idx, st) for idx, st in stations]
        self.server: Server | None = None

    async def start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name("stationd simulated stations 模拟换热站")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await server.register_namespace(NAMESPACE_URI)
        if ns != 2:
            raise RuntimeError(f"simulator namespace got index {ns}, the config expects 2")
        objects = server.nodes.objects
        for s in self.stations:
            st = s.station
            obj = await objects.add_object(ua.NodeId(st.id, ns), ua.QualifiedName(st.id, ns))
            await obj.write_attribute(
                ua.AttributeIds.DisplayName,
                ua.DataValue(ua.Variant(ua.LocalizedText(st.name, "zh-CN"))),
            )
            for sig, tag in st.tags.items():
                nodeid = ua.NodeId.from_string(tag.node)
                if nodeid.NamespaceIndex != ns:
                    raise ValueError(
                        f"station {st.id} signal {sig}: node {tag.node} is not in ns={ns}, "
                        "the simulator's namespace"
                    )
                var = await obj.add_variable(
                    nodeid, ua.QualifiedName(sig, ns), 0.0, varianttype=ua.VariantType.Double
                )
                writable = sig in CONTROL_POINTS
                if writable:
                    await var.set_writable()
                s.vars.append(_Var(sig, signals.INDEX.get(sig, -1), tag, nodeid, writable))
        await server.start()
        self.server = server

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def collect_writes(self) -> list[tuple[int, str, float]]:
        """Control points clients wrote since the last update: (plant index, signal, value)."""
        assert self.server is not None
        writes: list[tuple[int, str, float]] = []
        for s in self.stations:
            for v in s.vars:
                if not v.writable or v.last is None:
                    continue
                dv = self.server.read_attribute_value(v.nodeid)
                raw = dv.Value.Value if dv.Value is not None else None
                if isinstance(raw, int | float) and float(raw) != v.last:
                    value = float(raw) * v.tag.scale + v.tag.offset
                    writes.append((s.plant_index, v.signal, value))
                    log.info(
                        "control write station=%s signal=%s value=%s", s.station.id, v.signal, value
                    )
        return writes

    async def publish(
        self, values: np.ndarray, extras: dict[str, np.ndarray], answering: np.ndarray
    ) -> None:
        """Write the plant's readings (or the not-answering status) into every variable."""
        assert self.server is not None
        write = self.server.write_attribute_value
        for s in self.stations:
            i = s.plant_index
            ok = bool(answering[i])
            s.answering = ok
            for v in s.vars:
                if not ok:
                    v.last = None  # nothing of ours to compare a client's write against
                    await write(v.nodeid, ua.DataValue(StatusCode=NOT_ANSWERING))
                    continue
                if v.column >= 0:
                    value = float(values[i, v.column])
                else:
                    arr = extras.get(v.signal)
                    value = float(arr[i]) if arr is not None else 0.0
                raw = (value - v.tag.offset) / v.tag.scale
                v.last = raw
                await write(v.nodeid, ua.DataValue(ua.Variant(raw, ua.VariantType.Double)))


class OpcuaServers:
    """Every OPC UA station of the config, one server per distinct endpoint URL."""

    def __init__(
        self, stations: Sequence[tuple[int, OpcuaStation]], port_map: dict[int, int]
    ) -> None:
        by_url: dict[str, list[tuple[int, OpcuaStation]]] = {}
        for idx, st in stations:
            by_url.setdefault(rewrite_port(st.opcua.url, port_map), []).append((idx, st))
        self.servers = [OpcuaServer(url, sts) for url, sts in sorted(by_url.items())]

    async def start(self) -> None:
        for s in self.servers:
            await s.start()

    async def stop(self) -> None:
        for s in self.servers:
            await s.stop()

    async def collect_writes(self) -> list[tuple[int, str, float]]:
        out: list[tuple[int, str, float]] = []
        for s in self.servers:
            out.extend(await s.collect_writes())
        return out

    async def publish(
        self, values: np.ndarray, extras: dict[str, np.ndarray], answering: np.ndarray
    ) -> None:
        for s in self.servers:
            await s.publish(values, extras, answering)

    def describe(self) -> list[str]:
        return [
            f"opcua {s.url} stations {','.join(x.station.id for x in s.stations)}"
            for s in self.servers
        ]
