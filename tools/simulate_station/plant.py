"""The plant model: every simulated station's physics as numpy arrays, no I/O.

`Plant` steps all stations at once with a fixed internal step (1 s of plant time by
default) and answers with canonical values in `stationd.signals` order. It is pure and
deterministic for a seed: the servers, the control API and the offline evaluation suite
all drive the same object, and sensor noise at a plant step depends only on (seed, step),
not on how often `values()` is called.

The model is simple but each number follows from the others:
- outdoor temperature: base ± amplitude over the day (coldest at 03:00 local), per-station
  offsets of a few tenths; `extreme_cold` pulls it down through a slow lag.
- secondary supply temperature tracks the station's own heating curve, limited by what the
  primary side can deliver (primary supply temperature x the valve's flow capacity, which
  follows the primary differential pressure); the return sits at 60 % of the supply's lift
  above the indoor temperature, so the loop's heat is 0.4 x flow x (supply - indoor).
- primary supply temperature follows the heat source's `primary_curve` (shared by all the
  source's stations); primary return is 5 K above the secondary return; primary flow is what
  carries the secondary's heat, capped by the valve; the heat meter integrates it.
- circulating flow is 10 t/h per 10,000 m² (x a seeded balance factor of ±8 %) x pump speed.
- secondary pressures follow the pump (affinity laws: head ~ speed²): ~0.45/0.30 MPa with
  the pump on, the static ~0.25 MPa with it off, minus the water the loop is short of
  (deficit / loop compliance). The loop loses 0.1-0.3 % of its flow; the make-up pump
  (intermittent on a pressure band, or continuous on a proportional speed) puts it back from
  a tank that a float valve refills. A leak beyond the make-up pump's capacity (2.5 % of
  flow) makes the pressure fall.

Faults act on the model, never on its outputs, so every signal tells the same story:
a secondary leak or pipe burst adds to the loop's loss (size in % of circulating flow; a
burst defaults to 30 %); a power loss stops both pumps (the valve freezes where it was),
and without UPS the PLC also stops answering; a comm loss only stops answering; a heat
source shortfall lowers that source's supply temperature through a 15-minute lag; a
primary leak lowers primary pressure along its branch (size / (1 + 3 x distance along the
branch), so most at the nearest station) through a 20 s lag, which also cuts what the
valves can pass; a stuck sensor freezes one reading; extreme cold lowers the outdoor
temperature through a 30-minute lag. Clearing a power loss restarts the pumps (the
operator's restart in plan 7.2). Control writes (`set_point`) are what the PLC is told.

Offline use (the evaluation suite), one sample per second:

    plant = Plant(cfg.stations, seed=1, start_time=t0)
    plant.inject(Fault(kind="secondary_leak", station="hs001", size=1.0, at=3600))
    for k in range(1, 86_400):
        plant.advance(t0 + k)
        readings, answering = plant.values(), plant.answering()   # [S, K], [S]
    plant.truth()  # what happened, where, since when
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stationd import signals
from stationd.detect.thresholds import HeatingCurve, Thresholds
from tools.simulate_station.faults import DEFAULT_SIZE, Fault, FaultTruth

# Control points a daemon may write (select-before-operate); anything else is read-only.
CONTROL_POINTS = (
    "circ_pump_running",
    "makeup_pump_running",
    "circ_pump_freq",
    "primary_valve_position",
)

KW_PER_M3H_K = 1000.0 / 3600.0 * 4.186  # water: m³/h x K -> kW
RETURN_SHARE = 0.6  # return = indoor + 0.6 x (supply - indoor)
HX_APPROACH_K = 5.0  # primary return above secondary return
MAKEUP_CAPACITY = 0.025  # of nominal circulating flow
MAKEUP_BAND_MPA = (0.001, 0.008)  # intermittent make-up: off below, on above this deficit
MAKEUP_FULL_MPA = 0.01  # continuous make-up: full speed at this deficit
TANK_REFILL = (0.6, 1.8)  # m: float valve opens below, closes above
TANK_REFILL_M3H = 6.0

_I = signals.INDEX


@dataclass(frozen=True, slots=True)
class StationMeta:
    """What the plant needs to know about one station (a light view of config.Station)."""

    id: str
    heated_area_m2: float
    branch: str = "main"
    power_feeder: str = "main"
    heat_source: str = "main"
    curve: HeatingCurve = field(default_factory=HeatingCurve)
    primary_curve: HeatingCurve = field(default_factory=lambda: Thresholds().primary_curve)
    has: tuple[str, ...] = signals.NAMES  # canonical signals the station reports

    @classmethod
    def from_station(cls, st: Any) -> StationMeta:
        """From a `stationd.config` station (or anything with the same attributes)."""
        tags = getattr(st, "tags", None)
        has = tuple(n for n in signals.NAMES if n in tags) if tags else signals.NAMES
        return cls(
            id=st.id,
            heated_area_m2=float(st.heated_area_m2),
            branch=st.branch,
            power_feeder=st.power_feeder,
            heat_source=st.heat_source,
            curve=st.curve,
            primary_curve=st.thresholds.primary_curve,
            has=has,
        )


def _curve_arrays(curves: Sequence[HeatingCurve]) -> np.ndarray:
    """[5, n]: room, slope, shift, min, max."""
    return np.array([[c.room_c, c.slope, c.shift, c.min_c, c.max_c] for c in curves]).T.copy()


def _curve_at(c: np.ndarray, outdoor: np.ndarray | float) -> np.ndarray:
    t = c[0] + c[1] * (c[0] - outdoor) + c[2]
    return np.clip(t, c[3], c[4])


class Plant:
    """All stations' physics, vectorised. Times are plant seconds (epoch-like floats)."""

    def __init__(
        self,
        stations: Sequence[Any],
        seed: int = 0,
        start_time: float = 0.0,
        outdoor_base_c: float = -5.0,
        outdoor_amp_c: float = 4.0,
        dt: float = 1.0,
        utc_offset_h: float = 8.0,
        site: str = "site",
    ) -> None:
        metas = [s if isinstance(s, StationMeta) else StationMeta.from_station(s) for s in stations]
        if not metas:
            raise ValueError("a plant needs at least one station")
        self.meta = metas
        self.ids = [m.id for m in metas]
        self.index = {sid: i for i, sid in enumerate(self.ids)}
        if len(self.index) != len(self.ids):
            raise ValueError("station ids must be unique")
        self.site = site
        self.seed = int(seed)
        self.dt = float(dt)
        self.start_time = float(start_time)
        self.t = float(start_time)
        self.outdoor_base_c = float(outdoor_base_c)
        self.outdoor_amp_c = float(outdoor_amp_c)
        self.utc_offset_s = utc_offset_h * 3600.0
        S = self.n = len(metas)
        rng = np.random.default_rng(self.seed)

        # -- topology ------------------------------------------------------------------
        self.sources = sorted({m.heat_source for m in metas})
        self.src = np.array([self.sources.index(m.heat_source) for m in metas])
        src_first = {}
        for m in metas:
            src_first.setdefault(m.heat_source, m.primary_curve)
        self.src_curve = _curve_arrays([src_first[s] for s in self.sources])
        self.branches: dict[str, list[int]] = {}
        for i, m in enumerate(metas):
            self.branches.setdefault(m.branch, []).append(i)
        # position along the branch, 0 at the source end, 1 at the far end (config order)
        self.pos = np.zeros(S)
        for members in self.branches.values():
            if len(members) > 1:
                self.pos[members] = np.arange(len(members)) / (len(members) - 1)
        self.feeders: dict[str, list[int]] = {}
        for i, m in enumerate(metas):
            self.feeders.setdefault(m.power_feeder, []).append(i)
        self.curve = _curve_arrays([m.curve for m in metas])
        self.has = np.zeros((S, signals.K), dtype=bool)
        for i, m in enumerate(metas):
            self.has[i, [signals.INDEX[n] for n in m.has]] = True
        self._any_missing = not bool(self.has.all())
        noise_rng = np.random.default_rng((self.seed, 0x5E5))
        self._noise_tables = tuple(
            noise_rng.standard_normal((n, _NOISY.size, S), dtype=np.float32) for n in (17, 13, 11)
        )

        # -- fixed per-station parameters (seeded) ---------------------------------------
        area = np.array([m.heated_area_m2 for m in metas])
        # plan 000 方案2 一.8: 10 t/h of circulating flow per 10,000 m²
        self.g_nom = area / 1e4 * 10.0 * rng.uniform(0.92, 1.08, S)
        self.f_nom = rng.uniform(42.0, 48.0, S)
        self.p_static = rng.uniform(0.23, 0.27, S)
        self.p_ref = self.p_static + 0.125  # mean of supply and return with the pump on
        self.compliance = np.maximum(0.3, 2.0 * area / 120_000.0)  # m³ per MPa
        self.base_loss = rng.uniform(0.001, 0.003, S)  # of nominal flow: under 0.5 %
        self.makeup_cap = np.maximum(1.0, MAKEUP_CAPACITY * self.g_nom)
        self.makeup_continuous = rng.random(S) < 0.5
        self.tank_area = np.maximum(2.0, area / 40_000.0)
        self.out_offset = rng.uniform(-0.5, 0.5, S)
        # rooms run a little warm (20.5-22 °C): the standard is 20 °C (plan 001 方案1)
        self.room_target = self.curve[0] + rng.uniform(0.5, 2.0, S)
        self.pp_s0 = 1.00 - 0.12 * self.pos
        self.pp_r0 = 0.58 + 0.04 * self.pos
        self.dp0 = self.pp_s0 - self.pp_r0
        design_out = -9.0
        ts_d = _curve_at(self.curve, design_out)
        tp_d = _curve_at(self.src_curve, design_out)[self.src]
        tr_d = 20.0 + RETURN_SHARE * (ts_d - 20.0)
        gp_d = (
            self.g_nom
            * (1 - RETURN_SHARE)
            * (ts_d - 20.0)
            / np.maximum(tp_d - tr_d - HX_APPROACH_K, 5.0)
        )
        self.gp_max0 = 1.4 * gp_d  # valve sized with 40 % reserve at the design point

        # -- control state (what the PLC is told) -----------------------------------------
        self.circ_cmd = np.ones(S, dtype=bool)
        self.makeup_enabled = np.ones(S, dtype=bool)
        self.f_set = self.f_nom.copy()
        self.valve_manual = np.full(S, np.nan)

        # -- fault effects (rebuilt on every fault event) and their slow actual values -----
        self.leak_pct = np.zeros(S)
        self.power_off = np.zeros(S, dtype=bool)
        self.no_ups = np.zeros(S, dtype=bool)
        self.comm_off = np.zeros(S, dtype=bool)
        self.shortfall_target = np.zeros(len(self.sources))
        self.shortfall = np.zeros(len(self.sources))
        self.pdrop_target = np.zeros(S)
        self.pdrop = np.zeros(S)
        self.cold_target = 0.0
        self.cold = 0.0
        self.stuck = np.zeros((S, signals.K), dtype=bool)
        self.stuck_values = np.zeros((S, signals.K))
        self._any_stuck = False
        self._faults: dict[str, tuple[Fault, FaultTruth]] = {}
        self._events: list[tuple[float, int, str, str]] = []  # (time, seq, "on"|"off", id)
        self._seq = 0  # event order for faults scheduled at the same time
        self._n_faults = 0

        # -- physical state, started at the steady state of the start time ----------------
        t_out = self._outdoor_site(self.t) + self.out_offset
        self.tin = self.room_target.copy()
        self.phi = np.ones(S)  # pump speed / nominal speed
        self.ts = _curve_at(self.curve, t_out)
        self.tr_lag = self.ts.copy()
        self.deficit = rng.uniform(0.0, MAKEUP_BAND_MPA[1], S) * self.compliance
        self.makeup_on = np.zeros(S, dtype=bool)
        self.tank = rng.uniform(1.0, 1.8, S)
        self.refilling = np.zeros(S, dtype=bool)
        self.heat_energy = rng.uniform(1_000.0, 50_000.0, S)
        self.makeup_total = rng.uniform(100.0, 5_000.0, S)
        self.valve_hold = np.full(S, 50.0)
        # constants of the tick path, folded once
        self._curve_a = self.curve[0] * (1.0 + self.curve[1]) + self.curve[2]
        self._curve_b = -self.curve[1]
        self._pos_loss = 1.5 * self.pos
        self._inv_compliance = 1.0 / self.compliance
        self._q_need_k = self.g_nom * (1 - RETURN_SHARE)
        self._intermittent = ~self.makeup_continuous
        # readings signal-major [K, S]: rows are contiguous, which halves the cost of noise
        self._out = np.zeros((signals.K, S))
        self._out_time = math.nan  # plant time _out was assembled for
        self._controls_changed = True  # faults or set-points changed: re-derive _prepare()
        self._primary_changed = True
        self._lagging = False  # a fault effect is still travelling through its lag
        self._step(0.0, integrate=False)

    # -- time and weather ------------------------------------------------------------------
    def _outdoor_site(self, t: float) -> float:
        hour = ((t + self.utc_offset_s) % 86400.0) / 3600.0
        return self.outdoor_base_c + self.outdoor_amp_c * math.cos(
            2 * math.pi * (hour - 15.0) / 24.0
        )

    @property
    def time(self) -> float:
        return self.t

    # -- the step ----------------------------------------------------------------------------
    def advance(self, to_time: float) -> None:
        """Step the physics in fixed steps until plant time reaches `to_time` (never back)."""
        dt = self.dt
        while self.t + dt <= to_time + 1e-9:
            while self._events and self._events[0][0] <= self.t + 1e-9:
                self._fire_event()
            self.t += dt
            self._step(dt, integrate=True)
        while self._events and self._events[0][0] <= self.t + 1e-9:
            self._fire_event()

    def _prepare(self) -> None:
        """Quantities that change only with faults and control writes, not with time."""
        powered = ~self.power_off
        self._powered = powered
        self._all_powered = bool(powered.all())
        self._manual = ~np.isnan(self.valve_manual)
        self._pump_on = self.circ_cmd & powered
        self._all_pumps = bool(self._pump_on.all())
        self._phi_target = np.where(self._pump_on, self.f_set / self.f_nom, 0.0)
        self._inv_tau_ts = np.where(self._pump_on, 1 / 300.0, 1 / 1800.0)
        self._makeup_ok = powered & self.makeup_enabled
        self._cont_ok = self._makeup_ok & self.makeup_continuous
        # leaks lose more water at higher pressure: loss ~ sqrt(mean pressure / nominal)
        self._loss_k = (self.base_loss + self.leak_pct / 100.0) * self.g_nom / np.sqrt(self.p_ref)
        self._controls_changed = False
        self._primary_changed = True

    def _prepare_primary(self) -> None:
        """Primary pressures and what the valve can pass (they move with a primary leak)."""
        self._pp_s = self.pp_s0 - self.pdrop
        self._pp_r = self.pp_r0 - 0.3 * self.pdrop
        dp = np.maximum(self._pp_s - self._pp_r, 0.0)
        self._gp_max = self.gp_max0 * np.sqrt(dp / self.dp0)
        limit = np.where(self._manual, self.valve_manual, 100.0)
        # without power the electric valve stays where it was
        limit = np.where(self._powered, limit, self.valve_hold)
        self._gp_avail = self._gp_max * limit / 100.0
        self._lift_den = RETURN_SHARE * self._gp_avail + 1e-9
        self._primary_changed = False

    def _step(self, dt: float, integrate: bool) -> None:
        """One step: slow lags, controllers, hydraulics, meters (outputs assembled lazily)."""
        if self._controls_changed:
            self._prepare()
        if dt > 0:
            if self._lagging:
                self._step_fault_lags(dt)
            a_phi = min(1.0, dt / 5.0)
        else:
            a_phi = 0.0
        if self._primary_changed:
            self._prepare_primary()
        t_site = self._outdoor_site(self.t) - self.cold
        t_out = t_site + self.out_offset
        ts_curve = np.clip(self._curve_a + self._curve_b * t_out, self.curve[3], self.curve[4])

        # primary supply: the source's curve, less any shortfall, less the branch's losses
        tp_src = np.clip(
            self.src_curve[0]
            + self.src_curve[1] * (self.src_curve[0] - t_site)
            + self.src_curve[2],
            self.src_curve[3],
            self.src_curve[4],
        )
        tp_s = (tp_src - self.shortfall)[self.src] - self._pos_loss

        # circulation
        if a_phi:
            self.phi += (self._phi_target - self.phi) * a_phi
        phi = self.phi
        g = self.g_nom * phi

        # secondary temperatures: the curve, unless the primary cannot deliver it
        tin = self.tin
        d = tp_s - tin
        d -= HX_APPROACH_K
        np.maximum(d, 0.0, out=d)
        lift = self._gp_avail * d / ((1 - RETURN_SHARE) * g + self._lift_den)
        ts_target = np.minimum(ts_curve, tin + lift)
        if not self._all_pumps:
            ts_target = np.where(self._pump_on, ts_target, tin)
        if dt > 0:
            self.ts += (ts_target - self.ts) * np.minimum(1.0, dt * self._inv_tau_ts)
            self.tr_lag += (self.ts - self.tr_lag) * min(1.0, dt / 600.0)
        tr = tin + RETURN_SHARE * (self.tr_lag - tin)
        q = self.ts - tr
        np.maximum(q, 0.0, out=q)
        q *= g  # m³/h·K delivered to the estates
        lift_p = tp_s - tr
        lift_p -= HX_APPROACH_K
        np.maximum(lift_p, 0.0, out=lift_p)
        tp_r = tp_s - np.minimum(phi, 1.0) * lift_p
        gp = np.minimum(q / np.maximum(tp_s - tp_r, 0.5), self._gp_avail)
        if not self._all_powered:  # no power: water passes the open valve uncooled
            gp = np.where(self._powered, gp, self._gp_avail)

        # secondary pressures: pump head ~ speed², minus the water the loop is short of
        head = phi * phi
        p_inv = self.deficit * self._inv_compliance
        p_r = self.p_static + 0.05 * head
        p_r -= p_inv
        np.maximum(p_r, 0.0, out=p_r)
        p_s = self.p_static + 0.20 * head
        p_s -= p_inv
        np.maximum(p_s, 0.0, out=p_s)

        # make-up: intermittent on a pressure band, or continuous on a proportional speed
        can = self._makeup_ok & (self.tank > 0.05)
        on = (self.makeup_on & (p_inv > MAKEUP_BAND_MPA[0])) | (p_inv > MAKEUP_BAND_MPA[1])
        on &= can
        on &= self._intermittent
        self.makeup_on = on
        cont = np.minimum(p_inv * (1.0 / MAKEUP_FULL_MPA), 1.0)
        cont *= self.makeup_cap
        cont *= can & self.makeup_continuous
        makeup = on * self.makeup_cap
        makeup += cont

        if integrate:
            h = dt / 3600.0
            loss = self._loss_k * np.sqrt(p_s + p_r)
            loss *= math.sqrt(0.5)
            loss -= makeup
            loss *= h
            self.deficit += loss
            np.maximum(self.deficit, 0.0, out=self.deficit)
            self.refilling = (self.refilling & (self.tank < TANK_REFILL[1])) | (
                self.tank < TANK_REFILL[0]
            )
            self.tank += (self.refilling * TANK_REFILL_M3H - makeup) * (h / self.tank_area)
            self.makeup_total += makeup * h
            self.heat_energy += gp * (tp_s - tp_r) * (KW_PER_M3H_K * dt * 1e-6)  # kJ -> GJ
            # indoor: towards the room target in proportion to the heat the curve asks for
            q_need = self._q_need_k * np.maximum(ts_curve - self.room_target, 1.0)
            tin_eq = (self.room_target - t_out) * q / q_need
            tin_eq += t_out
            self.tin += (tin_eq - self.tin) * min(1.0, dt / 14_400.0)

        # kept for the lazy assembly of readings (references, no copies)
        self._last = (tp_s, tp_r, gp, tr, p_s, p_r, g, makeup, can, t_out)
        self._out_time = math.nan

    def _step_fault_lags(self, dt: float) -> None:
        """Fault effects arrive through lags: heat transport, pressure waves, weather."""
        self.shortfall += (self.shortfall_target - self.shortfall) * min(1.0, dt / 900.0)
        self.cold += (self.cold_target - self.cold) * min(1.0, dt / 1800.0)
        if np.any(self.pdrop != self.pdrop_target):
            self.pdrop += (self.pdrop_target - self.pdrop) * min(1.0, dt / 20.0)
            self._primary_changed = True
        # snap once close: a lag never arrives exactly, and "still moving" costs every step
        if np.max(np.abs(self.shortfall - self.shortfall_target), initial=0.0) < 1e-6:
            self.shortfall[:] = self.shortfall_target
        if abs(self.cold - self.cold_target) < 1e-6:
            self.cold = self.cold_target
        if np.max(np.abs(self.pdrop - self.pdrop_target), initial=0.0) < 1e-7:
            self.pdrop[:] = self.pdrop_target
        self._lagging = bool(
            self.cold != self.cold_target
            or np.any(self.shortfall != self.shortfall_target)
            or np.any(self.pdrop != self.pdrop_target)
        )

    def _valve(self) -> np.ndarray:
        """Valve opening the PLC reports: manual set-point, the controller's, or frozen."""
        gp = self._last[2]
        valve = np.where(
            self._manual, self.valve_manual, 100.0 * gp / np.maximum(self._gp_max, 1e-9)
        )
        np.minimum(valve, 100.0, out=valve)
        return np.where(self._powered, valve, self.valve_hold)

    def _assemble(self) -> np.ndarray:
        """[K, S] noise-free readings of the current step (signal-major)."""
        if self._controls_changed:
            # a fault or a control write acts at once on what the PLC reports (mains, pump
            # states), not only from the next step on: recompute without time passing
            self._step(0.0, integrate=False)
        if self._out_time == self.t:
            return self._out
        tp_s, tp_r, gp, tr, p_s, p_r, g, makeup, can, t_out = self._last
        out = self._out
        out[_I["primary_supply_temp"]] = tp_s
        out[_I["primary_return_temp"]] = tp_r
        out[_I["primary_supply_pressure"]] = self._pp_s
        out[_I["primary_return_pressure"]] = self._pp_r
        out[_I["primary_flow"]] = gp
        out[_I["heat_energy"]] = self.heat_energy
        out[_I["secondary_supply_temp"]] = self.ts
        out[_I["secondary_return_temp"]] = tr
        out[_I["secondary_supply_pressure"]] = p_s
        out[_I["secondary_return_pressure"]] = p_r
        out[_I["secondary_flow"]] = g
        out[_I["makeup_flow"]] = makeup
        out[_I["makeup_total"]] = self.makeup_total
        out[_I["makeup_tank_level"]] = self.tank
        out[_I["circ_pump_running"]] = self._pump_on
        out[_I["makeup_pump_running"]] = np.where(self.makeup_continuous, can, self.makeup_on)
        out[_I["circ_pump_freq"]] = self.phi * self.f_nom
        out[_I["primary_valve_position"]] = self._valve()
        out[_I["mains_power"]] = self._powered
        out[_I["outdoor_temp"]] = t_out
        out[_I["indoor_temp"]] = self.tin
        self._out_time = self.t
        return out

    # -- readings ------------------------------------------------------------------------------
    def true_values(self) -> np.ndarray:
        """[S, K] noise-free physical values (NaN where a station has no such signal)."""
        return np.where(self.has, self._assemble().T, np.nan)

    def values(self) -> np.ndarray:
        """[S, K] what the sensors read now: physics + seeded noise, stuck sensors frozen."""
        out = self._assemble()
        step = round((self.t - self.start_time) / self.dt)
        # only the analog signals are noisy; booleans and meters read exactly. Drawing
        # fresh normals costs more than a plant step, so each step sums one frame of three
        # seeded tables of co-prime lengths: still N(0, 1), repeating only every 2,431 steps
        a, b, c = self._noise_tables
        z = a[step % len(a)] + b[step % len(b)]
        z += c[step % len(c)]
        sub = out[_NOISY]
        sigma = np.abs(sub)
        sigma *= _NOISE_REL[_NOISY, None]
        sigma += _NOISE_ABS[_NOISY, None]
        sigma *= z
        sigma *= 1.0 / math.sqrt(3.0)
        sub += sigma
        vt = out.copy()
        vt[_NOISY] = np.maximum(sub, _READ_MIN[_NOISY, None])
        v = np.ascontiguousarray(vt.T)
        if self._any_stuck:
            v = np.where(self.stuck, self.stuck_values, v)
        if self._any_missing:
            v[~self.has] = np.nan
        return v

    def extras(self) -> dict[str, np.ndarray]:
        """Extra (non-canonical) signals the plant models, by name: [S] arrays.

        circ_pump_current (A): hydraulic power flow x head (affinity laws) at 70 % pump
        efficiency, drawn at 380 V three-phase, power factor 0.85.
        """
        g = self._assemble()[_I["secondary_flow"]]
        kw = g * 0.15 * self.phi * self.phi * 1000.0 / 3600.0 / 0.7
        return {"circ_pump_current": kw / (math.sqrt(3.0) * 0.38 * 0.85)}

    def answering(self) -> np.ndarray:
        """bool [S]: stations whose PLC answers requests now."""
        return ~(self.comm_off | (self.power_off & self.no_ups))

    # -- control writes ---------------------------------------------------------------------
    def set_point(self, station: int | str, signal: str, value: float) -> None:
        """A control write reaching the PLC (e.g. the daemon stopping the circulation pump)."""
        i = self.index[station] if isinstance(station, str) else int(station)
        v = float(value)
        self._controls_changed = True
        if signal == "circ_pump_running":
            self.circ_cmd[i] = v >= 0.5
        elif signal == "makeup_pump_running":
            self.makeup_enabled[i] = v >= 0.5
        elif signal == "circ_pump_freq":
            self.f_set[i] = min(max(v, 0.0), 50.0)
        elif signal == "primary_valve_position":
            self.valve_manual[i] = min(max(v, 0.0), 100.0)
        else:
            raise ValueError(
                f"{signal} is not a control point (writable: {', '.join(CONTROL_POINTS)})"
            )

    def release_valve(self, station: int | str) -> None:
        """Hand the primary valve back to the station's automatic curve control."""
        i = self.index[station] if isinstance(station, str) else int(station)
        self.valve_manual[i] = np.nan
        self._controls_changed = True

    # -- faults ------------------------------------------------------------------------------
    def inject(self, fault: Fault, wall_time: float | None = None) -> FaultTruth:
        """Schedule a fault (now, at `fault.onset`, or start + `fault.at`); returns its truth."""
        stations, subject = self._targets(fault)
        onset = (
            fault.onset
            if fault.onset is not None
            else self.start_time + fault.at
            if fault.at is not None
            else self.t
        )
        self._n_faults += 1
        fid = fault.id or f"f{self._n_faults}"
        if fid in self._faults:
            raise ValueError(f"fault id {fid!r} is already in use")
        params: dict[str, Any] = {}
        if fault.kind == "power_loss":
            params["ups"] = fault.ups
        if fault.signal:
            params["signal"] = fault.signal
        if fault.kind == "primary_leak" and fault.station:
            params["nearest_station"] = fault.station
        end = onset + fault.duration if fault.duration else None
        truth = FaultTruth(
            id=fid,
            kind=fault.kind,
            subject=subject,
            stations=tuple(self.ids[i] for i in stations),
            size=fault.magnitude,
            unit=DEFAULT_SIZE[fault.kind][1],
            onset=onset,
            end=end,
            onset_wall=wall_time if onset <= self.t else None,
            params=params,
        )
        self._faults[fid] = (fault, truth)
        self._push(onset, "on", fid)
        if end is not None:
            self._push(end, "off", fid)
        while self._events and self._events[0][0] <= self.t + 1e-9:
            self._fire_event()
        return truth

    def clear(self, fault_id: str, wall_time: float | None = None) -> FaultTruth:
        """End a fault now (KeyError if unknown)."""
        _, truth = self._faults[fault_id]
        if truth.end is None or truth.end > self.t:
            truth.end = self.t
            truth.end_wall = wall_time
        self._events = [e for e in self._events if e[3] != fault_id]
        self._rebuild()
        return truth

    def truth(self) -> list[FaultTruth]:
        """Every fault injected so far, in injection order, with `active` as of now."""
        return [tr for _, tr in self._faults.values()]

    def _push(self, when: float, what: str, fid: str) -> None:
        self._seq += 1
        self._events.append((when, self._seq, what, fid))
        self._events.sort()

    def _fire_event(self) -> None:
        when, _, what, fid = self._events.pop(0)
        fault, truth = self._faults[fid]
        if what == "on":
            truth.onset = when
            if fault.kind == "stuck_sensor":
                assert fault.signal is not None
                k = signals.INDEX[fault.signal]
                i = self.index[truth.stations[0]]
                self.stuck_values[i, k] = self.values()[i, k]
        elif truth.end is None or truth.end > when:
            truth.end = when
        self._rebuild()

    def _targets(self, f: Fault) -> tuple[list[int], str]:
        def station(sid: str) -> int:
            if sid not in self.index:
                raise ValueError(f"unknown station {sid!r}")
            return self.index[sid]

        if f.kind == "heat_source_shortfall":
            assert f.source is not None
            if f.source not in self.sources:
                raise ValueError(
                    f"unknown heat source {f.source!r} (known: {', '.join(self.sources)})"
                )
            return [i for i in range(self.n) if self.meta[i].heat_source == f.source], f.source
        if f.kind == "primary_leak":
            assert f.branch is not None
            if f.branch not in self.branches:
                raise ValueError(f"unknown branch {f.branch!r} (known: {', '.join(self.branches)})")
            if f.station is not None and station(f.station) not in self.branches[f.branch]:
                raise ValueError(f"station {f.station} is not on branch {f.branch}")
            return list(self.branches[f.branch]), f.branch
        if f.kind == "extreme_cold":
            return list(range(self.n)), self.site
        if f.kind == "power_loss" and f.station is None:
            assert f.feeder is not None
            if f.feeder not in self.feeders:
                raise ValueError(f"unknown power feeder {f.feeder!r}")
            return list(self.feeders[f.feeder]), f.feeder
        assert f.station is not None
        return [station(f.station)], f.station

    def _rebuild(self) -> None:
        """Recompute the fault effect arrays from the faults in effect now."""
        # the valve freezes where it is when power goes: remember where that is
        self.valve_hold = self._valve()
        self._controls_changed = True
        self._lagging = True
        self.leak_pct[:] = 0.0
        self.power_off[:] = False
        self.no_ups[:] = False
        self.comm_off[:] = False
        self.shortfall_target[:] = 0.0
        self.pdrop_target[:] = 0.0
        self.cold_target = 0.0
        self.stuck[:] = False
        for fault, truth in self._faults.values():
            truth.active = truth.onset <= self.t + 1e-9 and (
                truth.end is None or truth.end > self.t + 1e-9
            )
            if not truth.active:
                continue
            idx = [self.index[s] for s in truth.stations]
            size = truth.size
            kind = fault.kind
            if kind in ("secondary_leak", "pipe_burst"):
                self.leak_pct[idx] += size
            elif kind == "power_loss":
                self.power_off[idx] = True
                if not fault.ups:
                    self.no_ups[idx] = True
            elif kind == "comm_loss":
                self.comm_off[idx] = True
            elif kind == "heat_source_shortfall":
                self.shortfall_target[self.sources.index(truth.subject)] += size
            elif kind == "primary_leak":
                members = np.array(idx)
                at = self.pos[self.index[fault.station]] if fault.station else 0.5
                # the pressure loss is largest at the station nearest the leak
                self.pdrop_target[members] += size / (1.0 + 3.0 * np.abs(self.pos[members] - at))
            elif kind == "extreme_cold":
                self.cold_target += size
            elif kind == "stuck_sensor":
                assert fault.signal is not None
                self.stuck[idx[0], signals.INDEX[fault.signal]] = True
        self._any_stuck = bool(self.stuck.any())


def _noise_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per-signal sensor noise: absolute sigma and sigma relative to the value."""
    a = np.zeros(signals.K)
    r = np.zeros(signals.K)
    for name in (
        "primary_supply_temp",
        "primary_return_temp",
        "secondary_supply_temp",
        "secondary_return_temp",
        "outdoor_temp",
        "indoor_temp",
    ):
        a[_I[name]] = 0.05
    for name in (
        "primary_supply_pressure",
        "primary_return_pressure",
        "secondary_supply_pressure",
        "secondary_return_pressure",
    ):
        a[_I[name]] = 0.002
    for name in ("primary_flow", "secondary_flow", "makeup_flow"):
        r[_I[name]] = 0.003
    a[_I["makeup_tank_level"]] = 0.003
    r[_I["circ_pump_freq"]] = 0.0005
    r[_I["primary_valve_position"]] = 0.002
    return a, r


_NOISE_ABS, _NOISE_REL = _noise_tables()
_NOISY = np.flatnonzero((_NOISE_ABS > 0) | (_NOISE_REL > 0))
# gauges and meters of these kinds cannot read below zero (a 4-20 mA transmitter clamps)
_READ_MIN = np.full(signals.K, -np.inf)
for _name in (
    "primary_supply_pressure",
    "primary_return_pressure",
    "secondary_supply_pressure",
    "secondary_return_pressure",
    "primary_flow",
    "secondary_flow",
    "makeup_flow",
    "makeup_tank_level",
    "circ_pump_freq",
    "primary_valve_position",
):
    _READ_MIN[_I[_name]] = 0.0
