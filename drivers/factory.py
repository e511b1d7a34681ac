"""Pick the protocol driver for a station: the one place that maps `protocol:` to a class."""

from __future__ import annotations

from drivers.base import Driver
from drivers.schema import DriverTiming, StationSpec


def make_driver(station: StationSpec, timing: DriverTiming) -> Driver:
    """A new, unconnected driver for `station` (its read plan compiled now, not per tick)."""
    if station.protocol == "modbus":
        from drivers.modbus import ModbusDriver

        return ModbusDriver(station, timing)
    if station.protocol == "opcua":
        # imported here: asyncua is heavy and a Modbus-only site never needs it
        from drivers.opcua import OpcuaDriver

        return OpcuaDriver(station, timing)
    raise TypeError(f"no driver for protocol {getattr(station, 'protocol', '?')!r}")
