"""Pick the protocol driver for a station: the one place that maps `protocol:` to a class."""

from __future__ import annotations

from drivers.base import Driver
from stationd.config import AnyStation, Defaults, ModbusStation, OpcuaStation


def make_driver(station: AnyStation, defaults: Defaults) -> Driver:
    """A new, unconnected driver for `station` (its read plan compiled now, not per tick)."""
    if isinstance(station, ModbusStation):
        from drivers.modbus import ModbusDriver

        return ModbusDriver(station, defaults)
    if isinstance(station, OpcuaStation):
        # imported here: asyncua is heavy and a Modbus-only site never needs it
        from drivers.opcua import OpcuaDriver

        return OpcuaDriver(station, defaults)
    raise TypeError(f"no driver for protocol {getattr(station, 'protocol', '?')!r}")
