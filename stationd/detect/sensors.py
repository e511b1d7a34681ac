"""sensor_fault: frozen, out-of-range or inconsistent signals, masked so they raise nothing else.

Runs first in every pass. A value outside its signal's physical range is masked at once (a
4-20 mA loop break reads as -25 °C or 0 MPa and must not look like a pressure collapse);
frozen and inconsistent values are masked once the fault is established. The finding itself
names each faulty signal and why.
"""

from __future__ import annotations

import numpy as np

from stationd import signals
from stationd.detect.kernels import Sustain, Tick
from stationd.detect.static import FleetStatic
from stationd.findings import Finding

_LO = np.array([s.lo for s in signals.SIGNALS])
_HI = np.array([s.hi for s in signals.SIGNALS])

# Analog signals whose transmitters always flicker in their last digit: an exactly repeated
# value for half an hour means a stuck transmitter or a PLC serving a stale register.
# Booleans, meters, setpoints (pump frequency, valve opening) legitimately hold still.
FROZEN_SIGNALS: tuple[str, ...] = (
    "primary_supply_temp",
    "primary_return_temp",
    "primary_supply_pressure",
    "primary_return_pressure",
    "primary_flow",
    "secondary_supply_temp",
    "secondary_return_temp",
    "secondary_supply_pressure",
    "secondary_return_pressure",
    "secondary_flow",
)
_FROZEN_COLS = np.array([signals.INDEX[n] for n in FROZEN_SIGNALS])
# a stopped pump reads exactly 0 flow for hours: that is not a stuck transmitter
_ZERO_OK = np.array([n.endswith("_flow") for n in FROZEN_SIGNALS])

# (supply, return, flow): a return hotter than its supply while water flows is impossible
_PAIRS = (
    ("primary_supply_temp", "primary_return_temp", "primary_flow"),
    ("secondary_supply_temp", "secondary_return_temp", "secondary_flow"),
)
_REASON = {
    "out_of_range": ("超出量程", "out of physical range"),
    "frozen": ("数值冻结", "frozen"),
    "inconsistent": ("回水温度高于供水温度", "return hotter than supply"),
}


class SensorFaults:
    def __init__(self, static: FleetStatic) -> None:
        n = static.n
        self.static = static
        self.range_timer = Sustain(n * signals.K)
        self.range_delay = np.repeat(static.th.out_of_range_s, signals.K)  # station-major
        self.last = np.full((n, len(FROZEN_SIGNALS)), np.nan)
        self.changed_at = np.full((n, len(FROZEN_SIGNALS)), np.nan)
        self.pair_timers = [Sustain(n) for _ in _PAIRS]
        self.faulty = np.zeros((n, signals.K), dtype=bool)  # after the last pass (for evidence)

    def step(self, tick: Tick) -> list[Finding]:
        """Mask faulty values in `tick.x` and return the sensor_fault findings."""
        st, th, t = self.static, self.static.th, tick.t
        raw = tick.raw
        n, k = raw.shape

        # out of range: masked now, reported once it persists (a single spike is noise)
        with np.errstate(invalid="ignore"):
            bad_range = (raw < _LO) | (raw > _HI)
        known = ~np.isnan(raw)
        range_active = self.range_timer.update(
            t,
            bad_range.ravel(),
            known.ravel(),
            self.range_delay,
        ).reshape(n, k)
        x = tick.x
        x[bad_range] = np.nan

        # frozen: time since the value last changed; a gap restarts the clock
        cur = x[:, _FROZEN_COLS]
        changed = (cur != self.last) | np.isnan(cur)
        self.changed_at[changed] = t
        self.last = cur
        with np.errstate(invalid="ignore"):
            frozen = ((t - self.changed_at) >= th.frozen_s[:, None]) & ~(_ZERO_OK & (cur == 0.0))
        fault = np.zeros((n, k), dtype=bool)
        fault[:, _FROZEN_COLS] = frozen
        fault |= range_active
        kind = np.full((n, k), "", dtype=object) if fault.any() else None

        pair_onsets = []
        for timer, (sup, ret, flow) in zip(self.pair_timers, _PAIRS, strict=True):
            ts, tr, q = (
                x[:, signals.INDEX[sup]],
                x[:, signals.INDEX[ret]],
                x[:, signals.INDEX[flow]],
            )
            with np.errstate(invalid="ignore"):
                flowing = q > 0
                bad = (tr - ts) > th.inconsistent_margin_c
            ok = ~(np.isnan(ts) | np.isnan(tr) | np.isnan(q))
            active = timer.update(t, bad & flowing, ok, th.inconsistent_s)
            pair_onsets.append(timer.onset)
            if active.any():
                fault[active, signals.INDEX[sup]] = True
                fault[active, signals.INDEX[ret]] = True
                if kind is None:
                    kind = np.full((n, k), "", dtype=object)
                kind[active, signals.INDEX[sup]] = "inconsistent"
                kind[active, signals.INDEX[ret]] = "inconsistent"

        x[fault] = np.nan
        self.faulty = fault
        if kind is None:
            return []
        kind[:, _FROZEN_COLS] = np.where(frozen, "frozen", kind[:, _FROZEN_COLS])
        kind[range_active] = "out_of_range"
        onset_all = self.range_timer.onset.reshape(n, k)
        out: list[Finding] = []
        for i in np.flatnonzero(fault.any(axis=1)):
            cols = np.flatnonzero(fault[i])
            faults = {signals.NAMES[c]: str(kind[i, c]) for c in cols}
            onsets = [onset_all[i, c] for c in cols if kind[i, c] == "out_of_range"]
            onsets += [self.changed_at[i, j] for j, c in enumerate(_FROZEN_COLS) if frozen[i, j]]
            onsets += [o[i] for o in pair_onsets if not np.isnan(o[i])]
            zh = "、".join(f"{signals.BY_NAME[s].zh}{_REASON[r][0]}" for s, r in faults.items())
            en = ", ".join(f"{s} {_REASON[r][1]}" for s, r in faults.items())
            out.append(
                Finding(
                    kind="sensor_fault",
                    subject=st.ids[i],
                    scope="station",
                    severity="notice",
                    onset=float(np.nanmin(onsets)) if onsets else t,
                    value=float(len(cols)),
                    message_zh=f"{st.label(i)} 传感器故障：{zh}；相关检测已屏蔽该信号",
                    message_en=f"{st.ids[i]} sensor fault: {en}; detectors ignore it",
                    evidence={
                        "faults": faults,
                        "raw": {s: _num(raw[i, signals.INDEX[s]]) for s in faults},
                    },
                    stations=(st.ids[i],),
                )
            )
        return out


def _num(v: float) -> float | None:
    return None if np.isnan(v) else round(float(v), 4)
