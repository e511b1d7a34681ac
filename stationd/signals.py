"""The canonical signal table: names, units and physical ranges every part agrees on.

Detectors use only these names (DESIGN.md, "Canonical signals"). The fleet frame holds
exactly these columns, in this order; a station's extra signals are polled and stored but
never enter the frame.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SignalSpec:
    name: str
    unit: str
    zh: str
    # Physically possible range; a value outside it is a sensor fault, not a process event.
    lo: float
    hi: float
    boolean: bool = False
    cumulative: bool = False
    optional: bool = False


SIGNALS: tuple[SignalSpec, ...] = (
    SignalSpec("primary_supply_temp", "°C", "一次供水温度", -20.0, 180.0),
    SignalSpec("primary_return_temp", "°C", "一次回水温度", -20.0, 150.0),
    SignalSpec("primary_supply_pressure", "MPa", "一次供水压力", -0.1, 2.5),
    SignalSpec("primary_return_pressure", "MPa", "一次回水压力", -0.1, 2.5),
    SignalSpec("primary_flow", "m³/h", "一次流量", -5.0, 5000.0),
    SignalSpec("heat_energy", "GJ", "累计热量", 0.0, 1e9, cumulative=True),
    SignalSpec("secondary_supply_temp", "°C", "二次供水温度", -20.0, 120.0),
    SignalSpec("secondary_return_temp", "°C", "二次回水温度", -20.0, 110.0),
    SignalSpec("secondary_supply_pressure", "MPa", "二次供水压力", -0.1, 1.6),
    SignalSpec("secondary_return_pressure", "MPa", "二次回水压力", -0.1, 1.6),
    SignalSpec("secondary_flow", "m³/h", "二次循环流量", -5.0, 5000.0),
    SignalSpec("makeup_flow", "m³/h", "补水流量", -1.0, 200.0),
    SignalSpec("makeup_total", "m³", "累计补水量", 0.0, 1e9, cumulative=True),
    SignalSpec("makeup_tank_level", "m", "补水箱液位", -0.1, 10.0, optional=True),
    SignalSpec("circ_pump_running", "", "循环泵运行", 0.0, 1.0, boolean=True),
    SignalSpec("makeup_pump_running", "", "补水泵运行", 0.0, 1.0, boolean=True),
    SignalSpec("circ_pump_freq", "Hz", "循环泵频率", 0.0, 60.0),
    SignalSpec("primary_valve_position", "%", "一次电调阀开度", -1.0, 101.0),
    SignalSpec("mains_power", "", "市电状态", 0.0, 1.0, boolean=True),
    SignalSpec("outdoor_temp", "°C", "室外温度", -50.0, 50.0),
    SignalSpec("indoor_temp", "°C", "室内温度", -10.0, 40.0, optional=True),
)

NAMES: tuple[str, ...] = tuple(s.name for s in SIGNALS)
INDEX: dict[str, int] = {name: i for i, name in enumerate(NAMES)}
BY_NAME: dict[str, SignalSpec] = {s.name: s for s in SIGNALS}
K: int = len(SIGNALS)


def idx(name: str) -> int:
    """Column of a canonical signal in the fleet frame."""
    return INDEX[name]
