"""Fleet findings: heat_source_shortfall (6.1), primary_leak (6.2), extreme_cold."""

from __future__ import annotations

from stationd.detect.thresholds import Thresholds
from tests.synth import SIG, T0, at, first, fleet_static, raised, run

TPS = SIG["primary_supply_temp"]
PS, PR = SIG["primary_supply_pressure"], SIG["primary_return_pressure"]


def test_heat_source_shortfall_at_many_stations_raises_one_source_finding():
    st = fleet_static(20, sources=2)  # 热源0: even stations, 热源1: odd

    def unit_trip(k, t, v):
        if k >= 60:
            v[0::2, TPS] -= 15.0  # every station of 热源0 runs cold

    h = run(st, 1200, interval=10.0, inject=unit_trip)
    t_raise = first(h, "heat_source_shortfall", "热源0")
    delay = Thresholds().shortfall_delay_s
    assert t_raise == T0 + 600 + delay
    assert raised(h) == {("heat_source_shortfall", "热源0")}
    f = at(h, t_raise, "heat_source_shortfall", "热源0")
    assert f.scope == "source" and f.severity == "critical"
    assert len(f.stations) == 10 and abs(f.value - 15.0) < 1.0
    assert "6.1" in f.message_en


def test_one_station_with_cold_primary_supply_is_not_a_source_shortfall():
    st = fleet_static(20, sources=2)

    def valve(k, t, v):
        if k >= 60:
            v[4, TPS] -= 25.0

    h = run(st, 1200, interval=10.0, inject=valve)
    assert raised(h) == set()


def test_primary_pressure_falling_along_a_branch_raises_primary_leak_ranked_by_onset():
    st = fleet_static(20, per_branch=5)  # 支线001 = hs00005..hs00009
    falls = {7: (300, 0.15), 6: (320, 0.10), 8: (320, 0.08), 5: (340, 0.02), 9: (340, 0.02)}

    def leak(k, t, v):
        for i, (k0, size) in falls.items():
            if k >= k0:
                v[i, PS] -= size * min(1.0, (k - k0 + 1) / 20)
                v[i, PR] -= size * min(1.0, (k - k0 + 1) / 20)

    h = run(st, 900, interval=1.0, inject=leak)
    assert raised(h) == {("primary_leak", "支线001")}
    t_raise = first(h, "primary_leak", "支线001")
    assert T0 + 320 <= t_raise <= T0 + 340
    f = at(h, T0 + 600, "primary_leak", "支线001")
    assert f.scope == "branch"
    ranked = [r["station"] for r in f.evidence["ranked"]]
    assert ranked == ["hs00007", "hs00006", "hs00008"]  # onset first, then size
    assert f.stations == tuple(ranked)
    assert f.evidence["ranked"][0]["fall_mpa"] > 0.14
    # the pressures stay down: the leak stays raised long after the 300 s window
    assert at(h, T0 + 899, "primary_leak", "支线001") is not None


def test_one_station_primary_pressure_fall_is_not_a_leak_and_is_forgotten():
    st = fleet_static(20, per_branch=5)

    def valve(k, t, v):
        if k >= 100:
            v[7, PS] -= 0.1
        if k >= 1000:
            v[8, PS] -= 0.1  # much later, an unrelated fall on the same branch

    h = run(st, 1300, interval=1.0, inject=valve)
    assert raised(h) == set()


def test_extreme_cold_raises_after_sustained_cold_and_not_on_a_dip():
    st = fleet_static(10, thresholds=Thresholds(extreme_cold_sustain_s=1800))

    def weather(k, t, v):
        if 30 <= k < 50:  # a 20 min dip: not sustained
            v[:, SIG["outdoor_temp"]] = -14.0
        if k >= 100:
            v[:, SIG["outdoor_temp"]] = -14.0

    h = run(st, 4 * 3600, interval=60.0, inject=weather)
    assert first(h, "extreme_cold", "demo") == T0 + 6000 + 1800
    f = at(h, T0 + 6000 + 1800, "extreme_cold", "demo")
    assert f.scope == "site" and f.value == -14.0
