"""Offline evaluation: the simulator's plant through faults with known onsets, detectors scored.

Each case runs the plant model (tools/simulate_station/plant.py) at full speed from a
steady heating-season state, injects its faults at known plant times, feeds every tick
through a fleet frame and the detectors exactly as live (a station whose PLC does not
answer delivers nothing), and scores the raise transitions against the plant's truth:
- detected: the expected finding (kind and subject) raised within the case's deadline,
- latency: raise time − fault onset,
- false alarms: raises no fault explains (no overlap with a faulty station, branch, source
  or the site), counted per station-day over the whole suite; a fault-free day is part of
  the suite so the rate also covers day/night swings.
The suite is built from the config's own topology (its branches, feeders, sources), so it
runs on any fleet: `stationd evaluate --config config/stations.yaml`.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stationd.detect.engine import Detector
from stationd.detect.static import FleetStatic
from stationd.finding_stream import FindingStream
from stationd.findings import Finding
from stationd.frame import FleetFrame
from tools.simulate_station.faults import Fault, FaultTruth
from tools.simulate_station.plant import Plant, StationMeta

# 2026-01-10 00:00 Asia/Shanghai: mid-season, a cold night ahead
START = 1_767_974_400.0
HOUR = 3600.0
# a finding raised this long after its fault ended is still the fault's (slow recovery)
GRACE_S = 2 * HOUR

# fault kind -> (finding kinds that detect it, deadline after onset in seconds)
EXPECT: dict[str, tuple[tuple[str, ...], float]] = {
    "secondary_leak": (("makeup_over_allowance", "secondary_leak"), 1 * HOUR),
    "pipe_burst": (("secondary_pressure_drop",), 300.0),
    "power_loss": (("station_power_loss",), 300.0),
    "comm_loss": (("station_comm_loss",), 300.0),
    "heat_source_shortfall": (("heat_source_shortfall",), 2 * HOUR),
    "primary_leak": (("primary_leak",), 1800.0),
    "stuck_sensor": (("sensor_fault",), 1 * HOUR),
    "extreme_cold": (("extreme_cold",), 4 * HOUR),
}


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    faults: tuple[Fault, ...]
    duration_s: float
    # finding kinds that also count as detecting a fault of this case (e.g. a station without
    # a UPS going dark alone is indistinguishable from a comm loss)
    also: tuple[str, ...] = ()


@dataclass(slots=True)
class Score:
    case: str
    fault: str
    subject: str
    expected: tuple[str, ...]
    detected: bool
    latency_s: float | None
    finding: str | None = None
    note: str = ""


@dataclass(slots=True)
class CaseResult:
    case: str
    station_days: float
    scores: list[Score]
    false_alarms: list[dict[str, Any]] = field(default_factory=list)
    raised: Counter[str] = field(default_factory=Counter)


def default_suite(metas: Sequence[StationMeta], baseline_days: float = 1.0) -> list[Case]:
    """One case per fault kind, on targets picked from the fleet's own topology."""
    by_branch: dict[str, list[str]] = {}
    by_feeder: dict[str, list[str]] = {}
    by_source: dict[str, list[str]] = {}
    for m in metas:
        by_branch.setdefault(m.branch, []).append(m.id)
        by_feeder.setdefault(m.power_feeder, []).append(m.id)
        by_source.setdefault(m.heat_source, []).append(m.id)
    a = metas[0].id
    b = metas[min(1, len(metas) - 1)].id
    branch = max(by_branch, key=lambda k: len(by_branch[k]))
    members = by_branch[branch]
    feeder = max(by_feeder, key=lambda k: len(by_feeder[k]))
    source = max(by_source, key=lambda k: len(by_source[k]))
    at = 1 * HOUR
    cases = [
        Case("fault-free day", (), baseline_days * 24 * HOUR),
        # The plan's allowance is 0.5 % of circulating flow: leak sizes from just above it
        # (0.6 %, target: within 60 min) to a burst the make-up pump cannot keep up with.
        *(
            Case(
                f"leak {size:g} %",
                (Fault(kind="secondary_leak", station=st, size=size, at=at),),
                4 * HOUR,
            )
            for size, st in ((0.6, a), (1.0, a), (2.0, b), (5.0, b))
        ),
        Case("pipe burst", (Fault(kind="pipe_burst", station=a, at=at),), 2 * HOUR),
        Case(
            "station power loss on UPS",
            (Fault(kind="power_loss", station=b, ups=True, at=at, duration=HOUR),),
            3 * HOUR,
        ),
        Case(
            "feeder outage",
            (Fault(kind="power_loss", feeder=feeder, ups=False, at=at, duration=HOUR),),
            3 * HOUR,
            also=() if len(by_feeder[feeder]) > 1 else ("station_comm_loss",),
        ),
        Case("comm loss", (Fault(kind="comm_loss", station=a, at=at, duration=1800.0),), 2 * HOUR),
        Case(
            "heat source shortfall",
            (Fault(kind="heat_source_shortfall", source=source, at=at),),
            4 * HOUR,
        ),
        Case(
            "primary leak",
            (Fault(kind="primary_leak", branch=branch, station=members[len(members) // 2], at=at),),
            3 * HOUR,
        ),
        Case(
            "stuck sensor",
            (Fault(kind="stuck_sensor", station=b, signal="secondary_supply_temp", at=at),),
            4 * HOUR,
        ),
        Case("extreme cold", (Fault(kind="extreme_cold", at=at),), 10 * HOUR),
    ]
    return cases


def _explained(f: Finding, t: float, truths: Sequence[FaultTruth]) -> bool:
    for tr in truths:
        if t < tr.onset or (tr.end is not None and t > tr.end + GRACE_S):
            continue
        if f.subject == tr.subject or f.subject in tr.stations:
            return True
        if set(f.stations) & set(tr.stations):
            return True
    return False


def run_case(
    case: Case,
    metas: Sequence[StationMeta],
    static: FleetStatic,
    interval: float,
    seed: int,
) -> CaseResult:
    plant = Plant(metas, seed=seed, start_time=START, dt=interval, site=static.site_id)
    truths = [plant.inject(f) for f in case.faults]
    frame = FleetFrame(list(static.ids), window=2)
    det = Detector(static)
    n_ticks = round(case.duration_s / interval)
    stream = FindingStream()
    raises: list[tuple[float, Finding]] = []
    for k in range(1, n_ticks + 1):
        t = START + k * interval
        plant.advance(t)
        answering = plant.answering()
        frame.stage[answering] = plant.values()[answering]
        frame.staged[answering] = True
        frame.commit(t)
        raises += [(t, c.finding) for c in stream.update(t, det.step(frame)) if c.state == "raise"]

    scores: list[Score] = []
    for tr in truths:
        kinds, deadline = EXPECT[tr.kind]
        kinds = kinds + case.also
        station_level = kinds[0] not in ("heat_source_shortfall", "primary_leak", "extreme_cold")
        subjects = list(tr.stations) if station_level else [tr.subject]
        for subject in subjects:
            hit = next(
                (
                    (t, f)
                    for t, f in raises
                    if f.kind in kinds
                    and f.subject == subject
                    and tr.onset <= t <= tr.onset + deadline
                ),
                None,
            )
            note = ""
            if hit and tr.kind == "primary_leak" and "nearest_station" in tr.params:
                first = hit[1].evidence["ranked"][0]["station"]  # type: ignore[index]
                note = f"ranked first {first}, leak nearest {tr.params['nearest_station']}"
            scores.append(
                Score(
                    case=case.name,
                    fault=tr.kind,
                    subject=subject,
                    expected=kinds,
                    detected=hit is not None,
                    latency_s=None if hit is None else hit[0] - tr.onset,
                    finding=None if hit is None else hit[1].kind,
                    note=note,
                )
            )
    false = [
        {"time": t, "finding": f.kind, "subject": f.subject, "message_en": f.message_en}
        for t, f in raises
        if not _explained(f, t, truths)
    ]
    return CaseResult(
        case=case.name,
        station_days=static.n * case.duration_s / 86_400.0,
        scores=scores,
        false_alarms=false,
        raised=Counter(f.kind for _, f in raises),
    )


def evaluate(
    static: FleetStatic,
    metas: Sequence[StationMeta],
    *,
    interval: float = 10.0,
    seed: int = 0,
    cases: Sequence[Case] | None = None,
) -> dict[str, Any]:
    results = [run_case(c, metas, static, interval, seed) for c in cases or default_suite(metas)]
    scores = [s for r in results for s in r.scores]
    latencies = [s.latency_s for s in scores if s.latency_s is not None]
    station_days = sum(r.station_days for r in results)
    n_false = sum(len(r.false_alarms) for r in results)
    return {
        "interval_s": interval,
        "seed": seed,
        "stations": static.n,
        "detected": sum(s.detected for s in scores),
        "expected": len(scores),
        "median_latency_s": statistics.median(latencies) if latencies else None,
        "false_alarms": n_false,
        "station_days": round(station_days, 3),
        "false_alarms_per_station_day": round(n_false / station_days, 4) if station_days else None,
        "scores": [asdict(s) for s in scores],
        "cases": [
            {"case": r.case, "false_alarms": r.false_alarms, "raised": dict(r.raised)}
            for r in results
        ],
    }


def format_report(rep: dict[str, Any]) -> str:
    lines = [
        f"{'case':<28} {'fault':<22} {'subject':<14} {'result':<8} {'latency':>8}  finding / note"
    ]
    for s in rep["scores"]:
        lat = f"{s['latency_s']:.0f} s" if s["latency_s"] is not None else "-"
        lines.append(
            f"{s['case']:<28} {s['fault']:<22} {s['subject']:<14} "
            f"{'detected' if s['detected'] else 'MISSED':<8} {lat:>8}  {s['finding'] or ''} {s['note']}"
        )
    lines.append("")
    lines.append(f"{'per fault kind':<24} {'detected':>9} {'median':>8} {'worst':>8}")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for s in rep["scores"]:
        by_kind.setdefault(s["fault"], []).append(s)
    for kind, ss in by_kind.items():
        lats = [x["latency_s"] for x in ss if x["latency_s"] is not None]
        med = f"{statistics.median(lats):.0f} s" if lats else "-"
        worst = f"{max(lats):.0f} s" if lats else "-"
        found = sum(x["detected"] for x in ss)
        lines.append(f"{kind:<24} {f'{found}/{len(ss)}':>9} {med:>8} {worst:>8}")
    for c in rep["cases"]:
        for fa in c["false_alarms"]:
            lines.append(
                f"false alarm in {c['case']!r}: {fa['finding']} {fa['subject']}: {fa['message_en']}"
            )
    lines.append(
        f"detected {rep['detected']}/{rep['expected']}, median latency {rep['median_latency_s']} s, "
        f"{rep['false_alarms']} false alarms over {rep['station_days']} station-days "
        f"({rep['false_alarms_per_station_day']} per station-day), tick {rep['interval_s']} s"
    )
    return "\n".join(lines)


def evaluate_main(
    config_path: str | Path,
    output_path: str | Path | None = None,
    interval: float = 10.0,
    seed: int = 0,
    only: Sequence[str] | None = None,
    baseline_days: float = 1.0,
) -> int:
    """CLI body of `stationd evaluate --config FILE [--output report.json]`.

    `only` limits the suite to the named cases (see `default_suite`); `baseline_days` is the
    length of the fault-free run.

    Exit 0 when every fault was detected and nothing false was raised, 1 otherwise (so CI
    can gate on it), 2 when the config cannot be used.
    """
    from stationd.config import ConfigError, load_config

    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        print(f"stationd evaluate: {e}", file=sys.stderr)
        return 2
    static = FleetStatic.from_config(cfg)
    metas = [StationMeta.from_station(s) for s in cfg.stations]
    cases = default_suite(metas, baseline_days=baseline_days)
    if only is not None:
        unknown = set(only) - {c.name for c in cases}
        if unknown:
            names = ", ".join(c.name for c in cases)
            print(
                f"stationd evaluate: unknown case(s) {sorted(unknown)}; known: {names}",
                file=sys.stderr,
            )
            return 2
        cases = [c for c in cases if c.name in only]
    rep = evaluate(static, metas, interval=interval, seed=seed, cases=cases)
    print(format_report(rep))
    if output_path is not None:
        Path(output_path).write_text(
            json.dumps(rep, ensure_ascii=False, indent=2, default=_json), encoding="utf-8"
        )
    return 0 if rep["detected"] == rep["expected"] and rep["false_alarms"] == 0 else 1


def _json(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o))
