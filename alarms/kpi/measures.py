"""The ISA-18.2 alarm-system KPIs, each a pure function of the alarm history and a period.

Every function takes what `history.build_history` produced plus the period
[since, until) and returns plain numbers and records; `compute_kpis` runs them all into
one `KpiReport`. Definitions and targets are in alarms/kpi/README.md.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from alarms.kpi.history import Activation, ActiveSpan, AlarmHistory, Incident
from alarms.playbooks import PlaybookLibrary

#: ISA-18.2 flood: begins at more than 10 annunciations in 10 minutes ...
FLOOD_WINDOW_S = 600.0
FLOOD_ENTER = 10  # more than this many in the window enters a flood
FLOOD_EXIT = 5  # fewer than this many in the window ends it
#: chattering: this many activations of one alarm within CHATTER_WINDOW_S (inclusive)
CHATTER_COUNT = 3
CHATTER_WINDOW_S = 60.0
#: stale: continuously active for longer than this
STALE_AFTER_S = 24 * 3600.0
TOP_N = 10


@dataclass(frozen=True, slots=True)
class FloodPeriod:
    start: float
    end: float  # clipped to the period; == until when the flood still runs
    alarms: int  # annunciations that built it (10 min before it began) or came during it
    peak_10min: int  # most annunciations in any 10-minute window of the flood
    ongoing: bool = False


@dataclass(frozen=True, slots=True)
class ChatteringAlarm:
    alarm_id: str
    activations: int  # in the period
    max_in_window: int  # most activations within CHATTER_WINDOW_S
    first_burst: float  # time of the first chattering burst's first activation


@dataclass(frozen=True, slots=True)
class StaleAlarm:
    alarm_id: str
    active_since: float
    active_h: float  # longest continuous active time, up to `until`
    still_active: bool
    since_known: bool = True  # False: active since before the look-back


@dataclass(frozen=True, slots=True)
class FrequentAlarm:
    alarm_id: str
    count: int
    share_pct: float


@dataclass(frozen=True, slots=True)
class AckTimes:
    acked: int  # incidents opened in the period and acknowledged before `until`
    unacked: int  # opened in the period and not acknowledged by `until`
    median_s: float | None
    p90_s: float | None
    mean_s: float | None


@dataclass(frozen=True, slots=True)
class StepOutcome:
    incident_id: str
    alarm_id: str
    step: str
    due: float
    outcome: str  # on_time / late / missed / waived / open
    at: float | None  # when it was reported (None: not reported)
    operator: str = ""
    status: str = ""  # as reported: done / skipped ("" when not reported)


@dataclass(frozen=True, slots=True)
class StepTimeliness:
    on_time: int
    late: int  # done after the deadline
    missed: int  # not done by the deadline and not done (or skipped after it) by `until`
    waived: int  # skipped with a reason before the deadline (not counted)
    open: int  # deadline after `until`, not yet reported (not counted)
    on_time_pct: float | None  # on_time / (on_time + late + missed)
    outcomes: list[StepOutcome] = field(default_factory=list)


@dataclass(slots=True)
class KpiReport:
    since: float
    until: float
    hours: float
    operators: int
    alarms_total: int
    alarms_per_operator_hour: float
    peak_10min: int
    floods: list[FloodPeriod]
    flood_time_pct: float
    chattering: list[ChatteringAlarm]
    stale: list[StaleAlarm]
    top: list[FrequentAlarm]
    top_share_pct: float
    priority_counts: dict[int, int]
    priority_pct: dict[int, float]
    ack: AckTimes
    steps: StepTimeliness


def in_period(acts: Sequence[Activation], since: float, until: float) -> list[Activation]:
    return [a for a in acts if since <= a.time < until]


def alarm_rate(acts: Sequence[Activation], since: float, until: float, operators: int = 1) -> float:
    """Annunciations per operator position per hour (ISA-18.2 target ≤ 6, manageable ≤ 12)."""
    hours = (until - since) / 3600.0
    if hours <= 0:
        raise ValueError(f"empty period: since {since} is not before until {until}")
    return len(in_period(acts, since, until)) / hours / max(1, operators)


def _window_counts(times: np.ndarray, at: np.ndarray, window: float) -> np.ndarray:
    """Annunciations in (τ - window, τ] for each τ in `at` (times sorted)."""
    return np.searchsorted(times, at, side="right") - np.searchsorted(
        times, at - window, side="right"
    )


def peak_in_window(times: Sequence[float], since: float, until: float, window: float) -> int:
    """Most annunciations in any `window`-long stretch ending inside the period."""
    t = np.sort(np.asarray(times, dtype=float))
    at = t[(t >= since) & (t < until)]
    if at.size == 0:
        return 0
    return int(_window_counts(t, at, window).max())


def flood_periods(
    times: Sequence[float],
    since: float,
    until: float,
    window: float = FLOOD_WINDOW_S,
    enter: int = FLOOD_ENTER,
    exit_below: int = FLOOD_EXIT,
) -> list[FloodPeriod]:
    """Floods by ISA-18.2's hysteresis on a sliding window: a flood begins at the
    annunciation that makes more than `enter` in the last `window` seconds and ends at the
    first moment fewer than `exit_below` remain in it. Floods are clipped to the period."""
    t = np.sort(np.asarray(times, dtype=float))
    t = t[t < until]
    if t.size == 0:
        return []
    # the count only rises at an annunciation and only falls when one leaves the window
    events = np.unique(np.concatenate([t, t + window]))
    events = events[events < until]
    counts = _window_counts(t, events, window)
    raw: list[tuple[float, float, bool]] = []
    start: float | None = None
    for tau, c in zip(events.tolist(), counts.tolist(), strict=True):
        if start is None and c > enter:
            start = tau
        elif start is not None and c < exit_below:
            raw.append((start, tau, False))
            start = None
    if start is not None:
        raw.append((start, until, True))
    out: list[FloodPeriod] = []
    for raw_start, raw_end, ongoing in raw:
        s, e = max(raw_start, since), min(raw_end, until)
        if e <= s:
            continue
        # the flood's alarms: those that built it (the window before it began) and those
        # that came during it, as far as they fall in the period
        inside = t[(t > raw_start - window) & (t >= since) & (t < e)]
        peak = int(_window_counts(t, inside, window).max()) if inside.size else 0
        out.append(FloodPeriod(s, e, int(inside.size), peak, ongoing))
    return out


def flood_time_pct(floods: Sequence[FloodPeriod], since: float, until: float) -> float:
    """Share of the period spent in flood, % (ISA-18.2 target < 1 %)."""
    return 100.0 * sum(f.end - f.start for f in floods) / (until - since)


def chattering_alarms(
    acts: Sequence[Activation],
    since: float,
    until: float,
    count: int = CHATTER_COUNT,
    window: float = CHATTER_WINDOW_S,
) -> list[ChatteringAlarm]:
    """Alarms with `count` or more activations within `window` seconds (ISA-18.2: none)."""
    by_alarm: dict[str, list[float]] = defaultdict(list)
    for a in acts:
        if a.time < until:
            by_alarm[a.alarm_id].append(a.time)
    out: list[ChatteringAlarm] = []
    for alarm_id, ts in by_alarm.items():
        t = np.sort(np.asarray(ts))
        # windows that end with an activation inside the period
        ends = t[t >= since]
        if ends.size < 1:
            continue
        # activations in [τ - window, τ]: the window is closed, "within one minute"
        n = np.searchsorted(t, ends, side="right") - np.searchsorted(t, ends - window, side="left")
        hit = np.nonzero(n >= count)[0]
        if hit.size == 0:
            continue
        end = ends[hit[0]]
        first = t[np.searchsorted(t, end - window, side="left")]
        out.append(
            ChatteringAlarm(
                alarm_id=alarm_id,
                activations=int(ends.size),
                max_in_window=int(n.max()),
                first_burst=float(max(first, since)),
            )
        )
    out.sort(key=lambda c: (-c.activations, c.alarm_id))
    return out


def stale_alarms(
    spans: Sequence[ActiveSpan], since: float, until: float, after_s: float = STALE_AFTER_S
) -> list[StaleAlarm]:
    """Alarms continuously active for more than `after_s` at some moment in the period."""
    best: dict[str, StaleAlarm] = {}
    for s in spans:
        end = until if s.end is None else min(s.end, until)
        # stale from start + after_s on; it must be stale at some moment inside the period
        stale_from = s.start + after_s
        if not (stale_from < end and end > since):
            continue
        dur_h = (end - s.start) / 3600.0
        prev = best.get(s.alarm_id)
        if prev is None or dur_h > prev.active_h:
            best[s.alarm_id] = StaleAlarm(
                s.alarm_id, s.start, dur_h, s.end is None or s.end >= until, s.start_known
            )
    return sorted(best.values(), key=lambda x: (-x.active_h, x.alarm_id))


def most_frequent(
    acts: Sequence[Activation], since: float, until: float, n: int = TOP_N
) -> tuple[list[FrequentAlarm], float]:
    """The `n` most frequent alarms with their share of the load, and the top-n share (%)."""
    inside = in_period(acts, since, until)
    if not inside:
        return [], 0.0
    counts = Counter(a.alarm_id for a in inside)
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    total = len(inside)
    rows = [FrequentAlarm(a, c, 100.0 * c / total) for a, c in top]
    return rows, 100.0 * sum(c for _, c in top) / total


def priority_distribution(
    acts: Sequence[Activation], since: float, until: float
) -> tuple[dict[int, int], dict[int, float]]:
    """Annunciations per priority (1 highest .. 4) and their shares (%)."""
    inside = in_period(acts, since, until)
    counts = {p: 0 for p in (1, 2, 3, 4)}
    for a in inside:
        counts[a.priority] = counts.get(a.priority, 0) + 1
    total = len(inside)
    pct = {p: (100.0 * c / total if total else 0.0) for p, c in counts.items()}
    return counts, pct


def ack_times(incidents: Sequence[Incident], since: float, until: float) -> AckTimes:
    """Time from an incident's opening to its acknowledgement, for incidents opened in the
    period (median and 90th percentile, linear interpolation)."""
    waits: list[float] = []
    unacked = 0
    for inc in incidents:
        if not since <= inc.opened < until:
            continue
        if inc.acked is not None and inc.acked < until:
            waits.append(inc.acked - inc.opened)
        else:
            unacked += 1
    if not waits:
        return AckTimes(0, unacked, None, None, None)
    w = np.asarray(waits)
    return AckTimes(
        acked=len(waits),
        unacked=unacked,
        median_s=float(np.median(w)),
        p90_s=float(np.percentile(w, 90)),
        mean_s=float(w.mean()),
    )


def step_timeliness(
    incidents: Sequence[Incident], playbooks: PlaybookLibrary, since: float, until: float
) -> StepTimeliness:
    """Playbook steps with a deadline (PLAN.md's response times), for incidents opened in
    the period: done by the deadline, done late, or missed. The plan demands 100 %."""
    outcomes: list[StepOutcome] = []
    for inc in incidents:
        if not since <= inc.opened < until:
            continue
        pb = playbooks.by_id.get(inc.playbook_id)
        if pb is None:
            continue
        for step in pb.steps:
            if step.deadline_min is None:
                continue
            # the instance's due time: activation + deadline (alarms/instances.py)
            due = inc.opened + 60.0 * step.deadline_min
            rep = inc.steps.get(step.id)
            if rep is not None and rep.time >= until:
                rep = None
            if rep is not None and rep.time <= due:
                outcome = "on_time" if rep.status == "done" else "waived"
            elif rep is not None and rep.status == "done":
                outcome = "late"
            elif due < until:
                outcome = "missed"
            else:
                outcome = "open"
            outcomes.append(
                StepOutcome(
                    incident_id=inc.incident_id,
                    alarm_id=inc.alarm_id,
                    step=step.id,
                    due=due,
                    outcome=outcome,
                    at=rep.time if rep is not None else None,
                    operator=rep.operator if rep is not None else "",
                    status=rep.status if rep is not None else "",
                )
            )
    n = Counter(o.outcome for o in outcomes)
    judged = n["on_time"] + n["late"] + n["missed"]
    return StepTimeliness(
        on_time=n["on_time"],
        late=n["late"],
        missed=n["missed"],
        waived=n["waived"],
        open=n["open"],
        on_time_pct=100.0 * n["on_time"] / judged if judged else None,
        outcomes=sorted(outcomes, key=lambda o: (o.due, o.incident_id, o.step)),
    )


def compute_kpis(
    history: AlarmHistory,
    since: float,
    until: float,
    playbooks: PlaybookLibrary,
    operators: int = 1,
) -> KpiReport:
    """Every KPI of the period [since, until) from one alarm history."""
    if until <= since:
        raise ValueError(f"empty period: since {since} is not before until {until}")
    acts = history.activations
    times = [a.time for a in acts]
    floods = flood_periods(times, since, until)
    top, top_share = most_frequent(acts, since, until)
    pcount, ppct = priority_distribution(acts, since, until)
    incidents = list(history.incidents.values())
    return KpiReport(
        since=since,
        until=until,
        hours=(until - since) / 3600.0,
        operators=max(1, operators),
        alarms_total=len(in_period(acts, since, until)),
        alarms_per_operator_hour=alarm_rate(acts, since, until, operators),
        peak_10min=peak_in_window(times, since, until, FLOOD_WINDOW_S),
        floods=floods,
        flood_time_pct=flood_time_pct(floods, since, until),
        chattering=chattering_alarms(acts, since, until),
        stale=stale_alarms(history.spans, since, until),
        top=top,
        top_share_pct=top_share,
        priority_counts=pcount,
        priority_pct=ppct,
        ack=ack_times(incidents, since, until),
        steps=step_timeliness(incidents, playbooks, since, until),
    )
