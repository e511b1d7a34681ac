"""Per-finding-kind alarm tuning: on/off delays and the re-arm deadband against chattering.

Detectors already debounce their own conditions; these delays are the alarm system's
second line (ISA-18.2 5.5): an alarm raises only after its finding has been present for
`on_delay_s`, clears only after it has been absent for `off_delay_s`, and after an
incident closes the same alarm cannot open a new one for `rearm_s` (a time deadband:
a condition hovering at its limit produces one incident, not a page every few minutes).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from stationd.findings import FINDING_KINDS


class AlarmTuning(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    on_delay_s: float = Field(0.0, ge=0, le=86400)
    off_delay_s: float = Field(0.0, ge=0, le=86400)
    rearm_s: float = Field(0.0, ge=0, le=86400)


# Emergencies (7.1, 7.2, 6.x) raise at once: the detector's own window is the delay, and a
# minute lost to an on-delay is a minute of water lost. Slow, noisy conditions (curve,
# allocation, make-up ratio) get long delays and a re-arm deadband so they page once.
DEFAULT_TUNING: dict[str, AlarmTuning] = {
    "secondary_pressure_drop": AlarmTuning(on_delay_s=0, off_delay_s=60, rearm_s=0),
    "station_power_loss": AlarmTuning(on_delay_s=0, off_delay_s=60, rearm_s=0),
    "station_comm_loss": AlarmTuning(on_delay_s=0, off_delay_s=30, rearm_s=60),
    "monitoring_loss": AlarmTuning(on_delay_s=0, off_delay_s=60, rearm_s=60),
    "makeup_over_allowance": AlarmTuning(on_delay_s=300, off_delay_s=600, rearm_s=1800),
    "secondary_leak": AlarmTuning(on_delay_s=0, off_delay_s=300, rearm_s=0),
    "heat_source_shortfall": AlarmTuning(on_delay_s=0, off_delay_s=600, rearm_s=600),
    "primary_leak": AlarmTuning(on_delay_s=0, off_delay_s=300, rearm_s=0),
    "extreme_cold": AlarmTuning(on_delay_s=0, off_delay_s=3600, rearm_s=3600),
    "flow_allocation": AlarmTuning(on_delay_s=0, off_delay_s=3600, rearm_s=3600),
    "sensor_fault": AlarmTuning(on_delay_s=60, off_delay_s=300, rearm_s=600),
    "indoor_below_standard": AlarmTuning(on_delay_s=0, off_delay_s=1800, rearm_s=1800),
    "supply_below_curve": AlarmTuning(on_delay_s=300, off_delay_s=600, rearm_s=1800),
    "supply_above_curve": AlarmTuning(on_delay_s=300, off_delay_s=600, rearm_s=1800),
}
assert set(DEFAULT_TUNING) == set(FINDING_KINDS), "every finding kind needs a default tuning"


def merge_tuning(
    overrides: Mapping[str, AlarmTuning | Mapping[str, float]] | None,
) -> dict[str, AlarmTuning]:
    """Defaults with per-kind overrides applied; an unknown kind is refused, not ignored."""
    merged = dict(DEFAULT_TUNING)
    for kind, value in (overrides or {}).items():
        if kind not in DEFAULT_TUNING:
            raise ValueError(
                f"alarm tuning: unknown finding kind {kind!r}; known: {', '.join(FINDING_KINDS)}"
            )
        if isinstance(value, AlarmTuning):
            merged[kind] = value
        else:
            merged[kind] = AlarmTuning.model_validate({**merged[kind].model_dump(), **value})
    return merged
