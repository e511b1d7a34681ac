"""Alarm-system KPIs (ISA-18.2): each measure on small hand-made histories with known
answers, then a simulated week through the real AlarmService, read back by `stationd kpi`
and checked against counts made here, independently, from the findings fed in."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from alarms.dispatch_log import LOG_FILE, DispatchLog, LogEntry
from alarms.kpi import (
    KPI_FIELD_NAMES,
    add_kpi_parser,
    build_history,
    compute_kpis,
    kpi_fields,
)
from alarms.kpi.cli import parse_time
from alarms.kpi.measures import (
    ack_times,
    chattering_alarms,
    flood_periods,
    most_frequent,
    priority_distribution,
    stale_alarms,
    step_timeliness,
)
from alarms.kpi.report import checks, render_text
from alarms.model import PRIORITY, Transition
from alarms.playbooks import load_playbooks
from alarms.service import AlarmService, StationInfo
from alarms.tuning import merge_tuning
from stationd.findings import SEVERITY_RANK, Finding
from tests.servers import start_victoria_metrics, vm_wait_samples

PLAYBOOKS = load_playbooks()
H = 3600.0
DAY = 86400.0


# --- hand-made histories -------------------------------------------------------------------
def tr(
    t: float,
    alarm: str,
    cause: str,
    src: str,
    dst: str,
    incident: str = "",
    severity: str = "notice",
    operator: str = "",
) -> LogEntry:
    """A transition entry as alarms/service.py writes it (the Transition as data)."""
    subject, _, kind = alarm.rpartition("/")
    data = {
        "time": t,
        "alarm_id": alarm,
        "incident_id": incident,
        "from_state": src,
        "to_state": dst,
        "cause": cause,
        "kind": kind,
        "subject": subject,
        "station": subject,
        "severity": severity,
        "priority": PRIORITY[severity],
        "value": 1.0,
        "playbook_id": PLAYBOOKS.for_kind(kind).id,  # type: ignore[union-attr]
        "operator": operator,
    }
    return LogEntry(
        time=t,
        kind="transition",
        text_zh="",
        text_en="",
        station=subject,
        subject=subject,
        alarm_id=alarm,
        incident_id=incident,
        operator=operator,
        data=data,
    )


def step(t: float, incident: str, step_id: str, status: str = "done", reason: str = "") -> LogEntry:
    return LogEntry(
        time=t,
        kind="step",
        text_zh="",
        text_en="",
        incident_id=incident,
        operator="张工",
        data={"step": step_id, "status": status, "reason": reason},
    )


def raises(alarm: str, times: list[float], severity: str = "notice") -> list[LogEntry]:
    """An alarm that raises at each time and clears 1 s later, never acknowledged (so every
    return is a re-annunciation of one incident, as a chattering point does)."""
    out = []
    for i, t in enumerate(times):
        src = "normal" if i == 0 else "rtn_unack"
        out.append(tr(t, alarm, "activate", src, "unack", f"{alarm}#1", severity))
        out.append(tr(t + 1, alarm, "clear", "unack", "rtn_unack", f"{alarm}#1", severity))
    return out


def test_flood_begins_above_ten_in_ten_minutes_and_ends_below_five():
    # eleven alarms 10 s apart: the eleventh (t=100) is the eleventh within 10 minutes
    times = [10.0 * i for i in range(11)]
    (f,) = flood_periods(times, 0.0, 3600.0)
    assert f.start == 100.0
    # alarms leave the window 600 s after they came; at t=660 only 70..100 (4) remain
    assert f.end == 660.0
    assert f.alarms == 11 and f.peak_10min == 11 and not f.ongoing
    # exactly ten in ten minutes is not a flood
    assert flood_periods(times[:10], 0.0, 3600.0) == []


def test_flood_hysteresis_holds_between_five_and_ten():
    burst = [10.0 * i for i in range(12)]  # enters at t=100
    # then one alarm every 100 s: 6 in any 10 minutes, below 10 but not below 5
    trickle = [200.0 + 100.0 * i for i in range(30)]  # up to t=3100
    (f,) = flood_periods(burst + trickle, 0.0, 10_000.0)
    assert f.start == 100.0
    # the trickle's last alarms 2700..3100 (5) leave one by one; 2800..3100 is 4 at τ=3300
    assert f.end == 3300.0
    assert f.alarms == 12 + 30
    # the same alarms spaced 130 s apart (≤ 5 in 10 min) let the flood end early
    sparse = [200.0 + 130.0 * i for i in range(30)]
    (g,) = flood_periods(burst + sparse, 0.0, 10_000.0)
    assert g.end < 1000.0


def test_flood_is_clipped_to_the_period_and_ongoing_at_its_end():
    times = [10.0 * i for i in range(50)]  # 0..490, flood from t=100
    (f,) = flood_periods(times, 300.0, 400.0)
    assert (f.start, f.end, f.ongoing) == (300.0, 400.0, True)
    assert f.alarms == 10  # 300..390
    r = compute_kpis(build_history(raises("hs001/sensor_fault", times)), 0.0, 2000.0, PLAYBOOKS)
    (g,) = r.floods
    assert (g.start, g.end) == (100.0, 1050.0)  # at τ=1050 only 460..490 (4) remain
    assert r.flood_time_pct == pytest.approx(100.0 * 950.0 / 2000.0)


def test_chattering_is_three_activations_within_one_minute():
    hist = build_history(
        raises("hs004/sensor_fault", [0.0, 30.0, 60.0])  # three within 60 s: chattering
        + raises("hs001/sensor_fault", [0.0, 30.0, 61.0])  # spread over 61 s: not
        + raises("hs002/sensor_fault", [0.0, 20.0, 500.0, 520.0])  # pairs only: not
        + raises("hs003/sensor_fault", [100.0 + 15.0 * i for i in range(6)])
    )
    found = chattering_alarms(hist.activations, 0.0, 1000.0)
    assert [c.alarm_id for c in found] == ["hs003/sensor_fault", "hs004/sensor_fault"]
    assert found[0].activations == 6 and found[0].max_in_window == 5
    assert found[1].first_burst == 0.0
    # outside the period it does not count
    assert chattering_alarms(hist.activations, 200.0, 1000.0) == []


def test_reraise_before_ack_counts_as_an_annunciation_of_the_same_incident():
    hist = build_history(raises("hs004/sensor_fault", [0.0, 100.0, 200.0]))
    assert [a.reraise for a in hist.activations] == [False, True, True]
    assert list(hist.incidents) == ["hs004/sensor_fault#1"]
    assert len(hist.spans) == 3 and all(s.end == s.start + 1 for s in hist.spans)


def test_stale_is_active_for_more_than_24_hours():
    a, b, c, d = (
        "hs001/supply_below_curve",
        "hs002/supply_below_curve",
        "hs003/makeup_over_allowance",
        "hs004/flow_allocation",
    )
    entries = sorted(
        [
            tr(0.0, a, "activate", "normal", "unack", "ia"),
            tr(60.0, a, "ack", "unack", "acked", "ia", operator="张工"),
            tr(25 * H, a, "clear", "acked", "normal", "ia"),  # 25 h: stale
            tr(0.0, b, "activate", "normal", "unack", "ib"),
            tr(23 * H, b, "clear", "unack", "rtn_unack", "ib"),  # 23 h: not stale
            tr(10 * H, c, "activate", "normal", "unack", "ic"),  # still active at the end
            # rtn_unack is not active: 30 h unacknowledged after clearing is not stale
            tr(0.0, d, "activate", "normal", "unack", "id"),
            tr(60.0, d, "clear", "unack", "rtn_unack", "id"),
        ],
        key=lambda e: e.time,
    )
    hist = build_history(entries)
    stale = stale_alarms(hist.spans, 0.0, 40 * H)
    assert [(s.alarm_id, round(s.active_h, 3), s.still_active) for s in stale] == [
        (c, 30.0, True),
        (a, 25.0, False),
    ]
    # a period that ends before c has been active for 24 h sees only a
    assert [s.alarm_id for s in stale_alarms(hist.spans, 0.0, 30 * H)] == [a]
    # a period after a's clear does not list it
    assert [s.alarm_id for s in stale_alarms(hist.spans, 26 * H, 40 * H)] == [c]


def test_alarm_active_before_the_lookback_is_stale_from_the_first_entry_read():
    a = "hs001/supply_below_curve"
    hist = build_history(
        [
            tr(10.0, a, "ack", "unack", "acked", "ia", operator="张工"),
            tr(30 * H, a, "clear", "acked", "normal", "ia"),
        ]
    )
    (s,) = stale_alarms(hist.spans, 0.0, 40 * H)
    assert s.alarm_id == a and not s.since_known and s.active_h == pytest.approx(30 - 10 / H)


def test_top_ten_and_their_share_of_the_load():
    entries: list[LogEntry] = []
    counts = {f"hs{i:03d}/sensor_fault": 13 - i for i in range(1, 13)}  # 12 alarms: 12 .. 1
    for alarm, n in counts.items():
        entries += raises(alarm, [1000.0 * k for k in range(n)])
    entries.sort(key=lambda e: e.time)
    hist = build_history(entries)
    top, share = most_frequent(hist.activations, 0.0, 1e6)
    total = sum(counts.values())  # 78
    assert [t.alarm_id for t in top] == [f"hs{i:03d}/sensor_fault" for i in range(1, 11)]
    assert top[0].count == 12 and top[0].share_pct == pytest.approx(100 * 12 / total)
    assert share == pytest.approx(100 * (total - 2 - 1) / total)


def test_priority_distribution_counts_annunciations_by_priority():
    entries = (
        raises("hs001/secondary_pressure_drop", [0.0], "critical")
        + raises("hs002/extreme_cold", [10.0, 20.0], "major")
        + raises("hs003/makeup_over_allowance", [30.0], "minor")
        + raises("hs004/sensor_fault", [40.0 + i for i in range(0, 12, 2)])
    )
    hist = build_history(sorted(entries, key=lambda e: e.time))
    counts, pct = priority_distribution(hist.activations, 0.0, 100.0)
    assert counts == {1: 1, 2: 2, 3: 1, 4: 6}
    assert pct == {1: 10.0, 2: 20.0, 3: 10.0, 4: 60.0}
    r = compute_kpis(hist, 0.0, 100.0, PLAYBOOKS)
    prio = next(c for c in checks(r) if c.key == "priority_1_pct")
    assert prio.passed is False  # 10 % at priority 1 is far above ISA-18.2's ~1 %


def test_time_to_acknowledge_median_and_p90():
    entries = []
    waits = [60.0, 120.0, 180.0, 240.0, 3000.0]
    for i, w in enumerate(waits):
        a = f"hs00{i + 1}/makeup_over_allowance"
        entries.append(tr(100.0 * i, a, "activate", "normal", "unack", f"i{i}"))
        entries.append(tr(100.0 * i + w, a, "ack", "unack", "acked", f"i{i}", operator="张工"))
    # never acknowledged, and acknowledged only after the period: both "not acked"
    entries.append(tr(50.0, "hs009/sensor_fault", "activate", "normal", "unack", "x"))
    entries.append(tr(60.0, "hs010/sensor_fault", "activate", "normal", "unack", "y"))
    entries.append(tr(9000.0, "hs010/sensor_fault", "ack", "unack", "acked", "y"))
    hist = build_history(sorted(entries, key=lambda e: e.time))
    a = ack_times(list(hist.incidents.values()), 0.0, 5000.0)
    assert (a.acked, a.unacked) == (5, 2)
    assert a.median_s == 180.0
    assert a.p90_s == pytest.approx(240.0 + 0.6 * (3000.0 - 240.0))  # numpy "linear"


def test_playbook_steps_on_time_late_missed_waived_and_open():
    # indoor_below_standard: dispatch_work_order 30 min, on_site 120 min, hotline 1440 min
    a = "幸福里小区/indoor_below_standard"
    t0 = 1000.0
    entries = [
        tr(t0, a, "activate", "normal", "unack", "i1", "minor"),
        step(t0 + 29 * 60, "i1", "dispatch_work_order"),  # on time
        step(t0 + 30 * 60, "i1", "check_station"),  # no deadline: not judged
        step(t0 + 150 * 60, "i1", "on_site"),  # 30 min late
        # hotline_followup never reported: due t0 + 24 h
        tr(t0 + 10.0, "hs002/supply_below_curve", "activate", "normal", "unack", "i2"),
        step(t0 + 20 * 60, "i2", "review", "skipped", "曲线已调整"),  # waived before its due
        step(t0 + 25 * H, "i2", "repair_if_needed", "skipped", "auto"),  # skipped after due
    ]
    hist = build_history(sorted(entries, key=lambda e: e.time))
    incidents = list(hist.incidents.values())
    s = step_timeliness(incidents, PLAYBOOKS, 0.0, t0 + 48 * H)
    assert (s.on_time, s.late, s.missed, s.waived, s.open) == (1, 1, 2, 1, 0)
    assert s.on_time_pct == pytest.approx(25.0)
    # before the hotline's deadline its step is still open, and the auto-skip is unseen
    s2 = step_timeliness(incidents, PLAYBOOKS, 0.0, t0 + 3 * H)
    assert (s2.on_time, s2.late, s2.missed, s2.waived, s2.open) == (1, 1, 0, 1, 2)


def test_kpi_command_reads_the_dispatch_log_and_prints_json(tmp_path, capsys):
    state = tmp_path / "state"
    dlog = DispatchLog(state / "alarms" / LOG_FILE)  # the daemon keeps it under alarms/
    dlog.append(raises("hs004/sensor_fault", [1000.0 + 20 * i for i in range(5)]))
    dlog.close()
    args = kpi_parser().parse_args(
        ["kpi", "--state-dir", str(state), "--from", "0", "--to", "3600", "--json"]
    )
    assert args.func(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "alarms.kpi/1"
    assert doc["alarms_total"] == 5 and doc["alarms_per_operator_hour"] == 5.0
    assert doc["chattering"][0]["alarm_id"] == "hs004/sensor_fault"
    chk = {c["key"]: c for c in doc["checks"]}
    assert chk["alarms_per_operator_hour"]["passed"] is True
    assert chk["chattering_alarms"]["passed"] is False
    # no log there: a clear error, exit 2
    args = kpi_parser().parse_args(["kpi", "--state-dir", str(tmp_path / "nowhere")])
    assert args.func(args) == 2
    assert "dispatch log" in capsys.readouterr().err


def test_time_arguments():
    assert parse_time("1794787200") == 1794787200.0
    assert parse_time("2026-11-16T00:00:00Z") == 1794787200.0
    assert parse_time("2026-11-16T08:00+08:00") == 1794787200.0
    assert abs(parse_time("-7d") - (time.time() - 7 * DAY)) < 5
    with pytest.raises(argparse.ArgumentTypeError):
        parse_time("last tuesday")


def kpi_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stationd")
    add_kpi_parser(p.add_subparsers(dest="cmd", required=True))
    return p


# --- the simulated week --------------------------------------------------------------------
T0 = 1_794_787_200.0  # Monday 2026-11-16 00:00 UTC
DT = 10.0  # tick interval, s: fine enough for a sensor to chatter (3 raises in a minute)
UNTIL = T0 + 7 * DAY
SITE = "site1"
STATIONS = [
    StationInfo("hs001", "幸福里换热站", branch="东线"),
    StationInfo("hs002", "阳光花园站", branch="东线"),
    StationInfo("hs003", "和平里站", branch="西线"),
    StationInfo("hs004", "建设路站", branch="西线"),
]
# the chattering point's site has had its sensor_fault delays zeroed (commissioning
# left them so): exactly the kind of mistake these KPIs exist to expose
TUNING = {"sensor_fault": {"on_delay_s": 0.0, "off_delay_s": 0.0, "rearm_s": 0.0}}
OPERATOR = "调度王"


@dataclass
class Episode:
    """One planted condition: present on ticks start, start+every, … before end."""

    kind: str
    subject: str
    scope: str
    severity: str
    start: float
    end: float
    every: float = DT
    stations: tuple[str, ...] = ()
    ack_after: float | None = None  # s after the incident opened
    steps: dict[str, float] = field(default_factory=dict)  # step -> s after opening

    @property
    def alarm_id(self) -> str:
        return f"{self.subject}/{self.kind}"

    def finding(self) -> Finding:
        return Finding(
            kind=self.kind,
            subject=self.subject,
            scope=self.scope,  # type: ignore[arg-type]
            severity=self.severity,  # type: ignore[arg-type]
            onset=self.start,
            value=1.0,
            message_zh=f"{self.subject} {self.kind}",
            message_en=f"{self.subject} {self.kind}",
            stations=self.stations,
        )

    def present_ticks(self) -> np.ndarray:
        return np.arange(self.start, min(self.end, UNTIL), self.every)

    def expected_activations(self) -> list[float]:
        """Independent of the engine: a condition that toggles every other tick with zero
        delays raises on each tick it is present; a steady one raises once, after the
        kind's on-delay (all starts are on the tick grid)."""
        if self.every > DT:
            return self.present_ticks().tolist()
        on_delay = merge_tuning(TUNING)[self.kind].on_delay_s
        first = self.start + np.ceil(on_delay / DT) * DT
        return [first] if first < min(self.end, UNTIL) else []


def week_plan() -> list[Episode]:
    eps: list[Episode] = []
    for d in range(7):
        day = T0 + d * DAY
        # a cold estate every evening 18:00-22:00 (幸福里小区, served by hs001)
        eps.append(
            Episode(
                "indoor_below_standard",
                "幸福里小区",
                "estate",
                "minor",
                day + 18 * H,
                day + 22 * H,
                stations=("hs001",),
                ack_after=[120, 300, 420, 180, 720, 2400, 240][d],
                steps={
                    "dispatch_work_order": [180, 360, 480, 240, 780, 2460, 300][d],  # d5 late
                    "check_station": 1200.0,
                    "on_site": 150 * 60.0 if d == 2 else 90 * 60.0,  # d2 late
                    **({} if d >= 5 else {"hotline_followup": 20 * H}),  # d5 missed, d6 open
                },
            )
        )
        # a chattering sensor at hs004 each night at 03:00 (3 min; 8 min on Wednesday)
        burst = 480.0 if d == 2 else 180.0
        eps.append(
            Episode(
                "sensor_fault",
                "hs004",
                "station",
                "notice",
                day + 3 * H,
                day + 3 * H + burst,
                every=2 * DT,
                ack_after=600.0,
                steps={
                    "dispatch_work_order": 720.0,
                    "crew_on_site": 80 * 60.0 if d == 4 else 50 * 60.0,  # d4 late
                    "repair": 5 * H,
                },
            )
        )
        # short comm blips at hs001 and hs002; acknowledged, steps never reported
        for i, st in enumerate(("hs001", "hs002")):
            start = day + 10 * H + i * 900
            eps.append(
                Episode(
                    "station_comm_loss", st, "station", "minor", start, start + 120, ack_after=90
                )
            )
    # a stuck valve at hs003: below its curve from Monday 02:00 for the whole week
    eps.append(
        Episode(
            "supply_below_curve",
            "hs003",
            "station",
            "notice",
            T0 + 2 * H,
            UNTIL + DAY,
            ack_after=900.0,
            steps={"review": 90 * 60.0, "repair_if_needed": 6 * H},  # review late
        )
    )
    # Tuesday noon: circulating flow off at every station; hs004's is never acknowledged
    for st in ("hs001", "hs002", "hs003", "hs004"):
        eps.append(
            Episode(
                "flow_allocation",
                st,
                "station",
                "notice",
                T0 + DAY + 12 * H,
                T0 + DAY + 12.5 * H,
                ack_after=None if st == "hs004" else 300.0,
                steps={"review": 2 * H} if st in ("hs001", "hs002") else {},
            )
        )
    # Thursday night: extreme cold across the site
    eps.append(
        Episode(
            "extreme_cold",
            SITE,
            "site",
            "major",
            T0 + 3 * DAY,
            T0 + 3 * DAY + 6 * H,
            ack_after=180.0,
            steps={"start_plan": 600.0, "raise_curves": 3000.0, "crews_standby": 4200.0},
        )
    )
    # Friday afternoon: hs002's secondary pressure collapses for five minutes (plan 7.1)
    eps.append(
        Episode(
            "secondary_pressure_drop",
            "hs002",
            "station",
            "critical",
            T0 + 4 * DAY + 14 * H,
            T0 + 4 * DAY + 14 * H + 300,
            ack_after=60.0,
            steps={
                "stop_circ_pump": 180.0,
                "close_primary_supply": 480.0,
                "close_primary_return": 480.0,
                "open_emergency_makeup": 720.0,  # 12 min against 10: late
                "report": 1200.0,
                "sweep_network": 2100.0,
                "close_incident": 600 * 60.0,
            },
        )
    )
    return eps


@dataclass
class Week:
    state_dir: Path
    episodes: list[Episode]
    results: list[dict]
    ticks: int


async def run_week(state_dir: Path, eps: list[Episode]) -> Week:
    clock = [T0]
    svc = AlarmService(
        SITE,
        state_dir,
        site_name="测试热力公司",
        stations=STATIONS,
        tuning=TUNING,  # type: ignore[arg-type]
        clock=lambda: clock[0],
    )
    opened: dict[tuple[str, float], str] = {}

    def on_transition(t: Transition) -> None:
        if t.cause == "activate" and str(t.from_state) == "normal":
            opened[(t.alarm_id, t.time)] = t.incident_id

    svc.transition_hooks.append(on_transition)
    # findings per tick index, and the operators' commands in time order
    n = int((UNTIL - T0) / DT)
    present: dict[int, list[Finding]] = {}
    commands: list[tuple[float, int, Episode, str]] = []
    for e in eps:
        f = e.finding()
        for t in e.present_ticks():
            present.setdefault(round((t - T0) / DT), []).append(f)
        first = e.expected_activations()[0]
        if e.ack_after is not None:
            commands.append((first + e.ack_after, 0, e, ""))
        for s, after in e.steps.items():
            commands.append((first + after, 1, e, s))
    commands = sorted((c for c in commands if c[0] < UNTIL), key=lambda c: (c[0], c[1]))
    results: list[dict] = []
    await svc.start()
    try:
        ci = 0
        for k in range(n):
            t = T0 + k * DT
            # an operator's command lands between ticks: before the tick at or after it
            while ci < len(commands) and commands[ci][0] <= t:
                at, _, e, step_id = commands[ci]
                clock[0] = at
                first = e.expected_activations()[0]
                if step_id:
                    cmd = {
                        "command": "step_done",
                        "incident": opened[(e.alarm_id, first)],
                        "step": step_id,
                    }
                else:
                    cmd = {"command": "ack", "alarm_id": e.alarm_id}
                res = await svc.command({"request_id": f"r{ci}", "operator": OPERATOR, **cmd})
                results.append(res)
                ci += 1
            clock[0] = t
            await svc.on_tick(t, present.get(k, ()))
    finally:
        await svc.stop()
    return Week(state_dir, eps, results, n)


@pytest.fixture(scope="module")
def week(tmp_path_factory) -> Iterator[Week]:
    state = tmp_path_factory.mktemp("week") / "state"
    yield asyncio.run(run_week(state / "alarms", week_plan()))


@pytest.fixture(scope="module")
def week_json(week: Week) -> dict:
    import contextlib
    import io

    args = kpi_parser().parse_args(
        [
            "kpi",
            "--state-dir",
            str(week.state_dir.parent),
            "--from",
            "2026-11-16T00:00:00Z",
            "--to",
            "2026-11-23T00:00:00Z",
            "--json",
        ]
    )
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert args.func(args) == 0
    return json.loads(buf.getvalue())


def expected_priority(e: Episode) -> int:
    floor = PLAYBOOKS.severity_floor()[e.kind]
    sev = max(e.severity, floor, key=lambda s: SEVERITY_RANK[s])
    return PRIORITY[sev]


def flood_by_the_second(times: list[float]) -> list[tuple[float, float]]:
    """Floods counted second by second: more than 10 in the last 600 s enters, fewer than
    5 leaves (a brute-force count, independent of the event-based one under test)."""
    secs = np.zeros(int(UNTIL - T0) + 1, dtype=np.int64)
    for t in times:
        secs[int(t - T0)] += 1
    cum = np.cumsum(secs)
    window = cum - np.concatenate([np.zeros(600, dtype=np.int64), cum[:-600]])
    out: list[tuple[float, float]] = []
    start = None
    for s in range(len(secs) - 1):
        c = window[s]
        if start is None and c > 10:
            start = s
        elif start is not None and c < 5:
            out.append((T0 + start, T0 + s))
            start = None
    return out


def test_week_every_operator_command_was_accepted(week: Week):
    bad = [r for r in week.results if not r["ok"]]
    assert not bad, bad
    assert week.ticks == 7 * 8640


def test_week_kpis_match_an_independent_count_of_the_findings_fed_in(week: Week, week_json):
    doc = week_json
    eps = week.episodes
    acts = sorted(
        ((t, e) for e in eps for t in e.expected_activations() if t < UNTIL), key=lambda x: x[0]
    )
    times = [t for t, _ in acts]

    # alarms announced and per operator-hour
    assert doc["alarms_total"] == len(acts) == 7 * (1 + 9 + 2) + 15 + 1 + 4 + 1 + 1
    assert doc["alarms_per_operator_hour"] == pytest.approx(len(acts) / 168.0)

    # floods: Wednesday's 8-minute burst only, counted here second by second
    floods = flood_by_the_second(times)
    assert [(f["start"], f["end"]) for f in doc["floods"]] == floods
    assert len(floods) == 1
    flood_s = sum(b - a for a, b in floods)
    assert doc["flood_time_pct"] == pytest.approx(100.0 * flood_s / (UNTIL - T0))

    # chattering: any alarm raised 3 times within 60 s
    by_alarm: dict[str, list[float]] = {}
    for t, e in acts:
        by_alarm.setdefault(e.alarm_id, []).append(t)
    chatter = sorted(
        a for a, ts in by_alarm.items() if any(ts[i + 2] - ts[i] <= 60 for i in range(len(ts) - 2))
    )
    assert chatter == ["hs004/sensor_fault"]
    assert [c["alarm_id"] for c in doc["chattering"]] == chatter
    assert doc["chattering"][0]["activations"] == len(by_alarm["hs004/sensor_fault"]) == 6 * 9 + 24

    # stale: only the stuck valve stays active past 24 h (it never clears)
    stale = []
    for e in eps:
        first = e.expected_activations()[0]
        off = merge_tuning(TUNING)[e.kind].off_delay_s
        cleared = e.present_ticks()[-1] + DT + off if e.end < UNTIL else UNTIL
        if min(cleared, UNTIL) - first > DAY:
            stale.append(e.alarm_id)
    assert stale == ["hs003/supply_below_curve"]
    assert [s["alarm_id"] for s in doc["stale"]] == stale
    assert doc["stale"][0]["active_h"] == pytest.approx((UNTIL - (T0 + 2 * H + 300)) / H)

    # the ten most frequent and their share
    counts = Counter(e.alarm_id for _, e in acts)
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert [(a["alarm_id"], a["count"]) for a in doc["top"]] == top
    assert doc["top"][0]["alarm_id"] == "hs004/sensor_fault"
    assert doc["top_share_pct"] == pytest.approx(100.0 * sum(c for _, c in top) / len(acts))

    # priorities as announced (finding severity, raised to the playbook's floor)
    prio = Counter(expected_priority(e) for _, e in acts)
    assert doc["priority_counts"] == {str(p): prio.get(p, 0) for p in (1, 2, 3, 4)}

    # time to acknowledge, from each incident's opening
    waits = [e.ack_after for e in eps if e.ack_after is not None]
    assert doc["ack"]["acked"] == len(waits)
    assert doc["ack"]["unacked"] == 1  # hs004's flow allocation
    assert doc["ack"]["median_s"] == pytest.approx(float(np.median(waits)))
    assert doc["ack"]["p90_s"] == pytest.approx(float(np.percentile(waits, 90)))

    # playbook steps against the plan's deadlines
    want = Counter()
    for e in eps:
        opened = e.expected_activations()[0]
        for s in PLAYBOOKS.for_kind(e.kind).steps:  # type: ignore[union-attr]
            if s.deadline_min is None:
                continue
            due = opened + 60 * s.deadline_min
            done = opened + e.steps[s.id] if s.id in e.steps else None
            if done is not None and done < UNTIL:
                want["on_time" if done <= due else "late"] += 1
            else:
                want["missed" if due < UNTIL else "open"] += 1
    got = doc["steps"]
    assert {k: got[k] for k in ("on_time", "late", "missed", "open")} == {
        k: want[k] for k in ("on_time", "late", "missed", "open")
    }
    assert got["waived"] == 0
    assert want["late"] == 6  # the six planted late steps
    judged = want["on_time"] + want["late"] + want["missed"]
    assert got["on_time_pct"] == pytest.approx(100.0 * want["on_time"] / judged)


def test_week_text_report_flags_the_chattering_sensor(week: Week, capsys):
    args = kpi_parser().parse_args(
        [
            "kpi",
            "--state-dir",
            str(week.state_dir.parent),
            "--from",
            str(T0),
            "--to",
            str(UNTIL),
            "--site",
            "测试热力公司",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "报警系统指标 Alarm-system KPIs" in out and "测试热力公司" in out
    assert " 1. hs004/sensor_fault: 78 " in out and "[振荡 chattering]" in out
    assert re.search(r"^✗ 未达标 FAIL +振荡报警数 chattering alarms: 1 ", out, re.M)
    assert "✓ 达标 pass" in out and "每操作员每小时报警数 alarms per operator-hour: 0.63" in out
    assert "hs003/supply_below_curve" in out.split("陈旧报警 Stale alarms")[1].split("\n")[1]


def test_week_kpi_fields_reach_victoria_metrics_and_feed_the_dashboard(week: Week, tmp_path):
    from stationd.historian import Historian

    fields = kpi_fields(week.state_dir.parent, now=UNTIL, window_s=7 * DAY)
    r = compute_kpis(
        build_history(DispatchLog(week.state_dir / LOG_FILE).query(until=UNTIL, limit=10**7)),
        T0,
        UNTIL,
        PLAYBOOKS,
    )
    assert set(fields) == set(KPI_FIELD_NAMES)  # the week has data for every figure
    assert fields["chattering_alarms"] == 1.0 and fields["stale_alarms"] == 1.0
    assert fields["alarms_per_operator_hour"] == pytest.approx(r.alarms_per_operator_hour)
    assert render_text(r).startswith("报警系统指标")

    dash = json.loads(
        (
            Path(__file__).parent.parent
            / "config/grafana/dashboards/victoriametrics/alarm-kpis.json"
        ).read_text(encoding="utf-8")
    )
    with start_victoria_metrics(tmp_path) as vm:

        async def feed() -> None:
            h = Historian.from_config(
                {"influxdb": {"url": vm.url, "flush_interval_s": 0.05}},
                SITE,
                [{"id": s.id, "name": s.name, "branch": s.branch} for s in STATIONS],
                tmp_path,
                registry=CollectorRegistry(),
            )
            await h.start()
            now = float(int(time.time()))
            for k in range(3):  # hourly, as the daemon writes them
                h.write_daemon(fields, now - 3600 * (2 - k))
                h.write_tick(now - 3600 * (2 - k), np.full((len(STATIONS), 21), 50.0))
            assert await h.forwarder.wait_empty(10.0)
            await h.stop()

        asyncio.run(feed())
        vm_wait_samples(vm, '{__name__=~"daemon_.*"}', 3 * len(fields))
        now = int(time.time())
        n_exprs = 0
        for p in dash["panels"]:
            assert p["datasource"]["uid"] == "stationd-vm"
            for t in p["targets"]:
                q = t["expr"].replace("$site", SITE).replace("$__interval", "10m")
                names = set(re.findall(r"\bdaemon_[a-z0-9_]+", q))
                assert names and names <= {f"daemon_{k}" for k in fields}, q
                url = f"{vm.url}/api/v1/query_range?" + urllib.parse.urlencode(
                    {"query": q, "start": now - 3 * 3600, "end": now, "step": 600}
                )
                with urllib.request.urlopen(url, timeout=10) as resp:
                    body = json.loads(resp.read())
                assert body["status"] == "success" and body["data"]["result"], q
                n_exprs += 1
        assert n_exprs >= 15
        for v in dash["templating"]["list"]:
            q = v["query"]["query"].replace("$site", SITE)
            name, label = re.match(r"label_values\((.*),\s*(\w+)\)$", q).groups()
            url = f"{vm.url}/api/v1/series?" + urllib.parse.urlencode({"match[]": name})
            with urllib.request.urlopen(url, timeout=10) as resp:
                series = json.loads(resp.read())["data"]
            assert any(label in s for s in series), (name, label)


# --- a week through the real Detector -----------------------------------------------------
DET_DT = 120.0  # a slow poll: a week of detector passes stays quick


@dataclass
class DetectorWeek:
    state_dir: Path
    stream: list[tuple[float, dict[str, str]]]  # per tick: alarm id -> severity found
    ack_delay: dict[str, float]  # incident -> s from opening to the operator's ack
    results: list[dict]


async def run_detector_week(state_dir: Path) -> DetectorWeek:
    """Synthetic frames → the real Detector → AlarmService, with an operator who
    acknowledges each new incident after a few minutes and reports the playbook's first
    deadline step after ten; the findings are recorded as they were fed in."""
    from stationd.detect.engine import Detector
    from stationd.frame import FleetFrame
    from tests.synth import SIG, SynthFleet, feed, fleet_static

    static = fleet_static(4)
    fleet = SynthFleet(static)
    frame = FleetFrame(list(static.ids), window=4)
    det = Detector(static)
    clock = [T0]
    svc = AlarmService(
        static.site_id,
        state_dir,
        stations=[StationInfo(i) for i in static.ids],
        clock=lambda: clock[0],
    )
    todo: list[tuple[float, dict]] = []
    ack_delay: dict[str, float] = {}

    def on_transition(t: Transition) -> None:
        if t.cause != "activate" or str(t.from_state) != "normal":
            return
        delay = 120.0 + 60.0 * (len(ack_delay) % 5)
        ack_delay[t.incident_id] = delay
        todo.append((t.time + delay, {"command": "ack", "alarm_id": t.alarm_id}))
        pb = PLAYBOOKS.for_kind(t.kind)
        first_due = next(s for s in pb.steps if s.deadline_min)  # type: ignore[union-attr]
        todo.append(
            (
                t.time + 600.0,
                {"command": "step_done", "incident": t.incident_id, "step": first_due.id},
            )
        )

    svc.transition_hooks.append(on_transition)

    def inject(t: float, v: np.ndarray) -> None:
        tod = (t - T0) % DAY
        if 17 * H <= tod < 23 * H:  # 小区00002's rooms go cold every evening
            v[2, SIG["indoor_temp"]] = 19.0
        if t >= T0 + 2 * H:  # hs00001's control valve sticks: supply 12 °C under its curve
            v[1, SIG["secondary_supply_temp"]] -= 12.0
            v[1, SIG["secondary_return_temp"]] -= 12.0

    stream: list[tuple[float, dict[str, str]]] = []
    results: list[dict] = []
    await svc.start()
    try:
        for k in range(int((UNTIL - T0) / DET_DT)):
            t = T0 + k * DET_DT
            todo.sort(key=lambda c: c[0])
            while todo and todo[0][0] <= t:
                at, cmd = todo.pop(0)
                clock[0] = at
                req = {"request_id": f"d{len(results)}", "operator": OPERATOR, **cmd}
                results.append(await svc.command(req))
            v = fleet.values(t)
            inject(t, v)
            feed(frame, t, v)
            found = det.step(frame)
            stream.append((t, {f.alarm_id: f.severity for f in found}))
            clock[0] = t
            await svc.on_tick(t, found)
    finally:
        await svc.stop()
    return DetectorWeek(state_dir, stream, ack_delay, results)


def runs(stream: list[tuple[float, dict[str, str]]]) -> list[tuple[str, float, float, str]]:
    """(alarm id, first tick, last tick, severity at the alarm's raise) of every stretch of
    consecutive ticks a finding was present."""
    out: list[tuple[str, float, float, str]] = []
    open_: dict[str, list] = {}
    for t, found in stream:
        for a in list(open_):
            if a not in found:
                out.append(tuple(open_.pop(a)))  # type: ignore[arg-type]
        for a, sev in found.items():
            if a in open_:
                open_[a][2] = t
            else:
                open_[a] = [a, t, t, sev]
    out += [tuple(r) for r in open_.values()]  # type: ignore[misc]
    return sorted(out, key=lambda r: (r[1], r[0]))  # type: ignore[return-value]


def test_detector_week_kpis_match_the_finding_stream(tmp_path):
    wk = asyncio.run(run_detector_week(tmp_path / "alarms"))
    assert all(r["ok"] for r in wk.results), [r for r in wk.results if not r["ok"]]
    tuning = merge_tuning(None)
    rs = runs(wk.stream)
    # the planted conditions, and nothing else, came out of the detector
    assert {(a, n) for a, n in Counter(r[0] for r in rs).items()} == {
        ("小区00002/indoor_below_standard", 7),
        ("hs00001/supply_below_curve", 1),
    }
    # each stretch raises once, after the kind's on-delay; stretches of one alarm are far
    # enough apart (> off-delay + re-arm) that none merges into the one before
    acts: list[tuple[float, str, str]] = []
    last_end: dict[str, float] = {}
    for alarm, start, end, _sev in rs:
        tune = tuning[alarm.rpartition("/")[2]]
        if alarm in last_end:
            assert start - last_end[alarm] > tune.off_delay_s + tune.rearm_s + DET_DT
        last_end[alarm] = end
        at = start + np.ceil(tune.on_delay_s / DET_DT) * DET_DT
        if at <= end:
            sev = dict(wk.stream[int((at - T0) / DET_DT)][1])[alarm]
            acts.append((at, alarm, sev))

    r = compute_kpis(
        build_history(DispatchLog(wk.state_dir / LOG_FILE).query(until=UNTIL, limit=10**7)),
        T0,
        UNTIL,
        PLAYBOOKS,
    )
    assert r.alarms_total == len(acts) == 8
    assert r.alarms_per_operator_hour == pytest.approx(8 / 168)
    assert r.floods == [] and flood_by_the_second([a[0] for a in acts]) == []
    assert r.chattering == []
    assert [s.alarm_id for s in r.stale] == ["hs00001/supply_below_curve"]
    valve = next(a for a in acts if a[1] == "hs00001/supply_below_curve")
    assert r.stale[0].active_h == pytest.approx((UNTIL - valve[0]) / H)
    assert [(a.alarm_id, a.count) for a in r.top] == [
        ("小区00002/indoor_below_standard", 7),
        ("hs00001/supply_below_curve", 1),
    ]
    floors = PLAYBOOKS.severity_floor()
    prio = Counter(
        PRIORITY[max(sev, floors[a.rpartition("/")[2]], key=lambda s: SEVERITY_RANK[s])]
        for _, a, sev in acts
    )
    assert r.priority_counts == {p: prio.get(p, 0) for p in (1, 2, 3, 4)}
    waits = list(wk.ack_delay.values())
    assert len(waits) == 8
    assert (r.ack.acked, r.ack.unacked) == (8, 0)
    assert r.ack.median_s == pytest.approx(float(np.median(waits)))
    assert r.ack.p90_s == pytest.approx(float(np.percentile(waits, 90)))
    # the first deadline step of each playbook reported after 10 min, the others never
    want = Counter()
    for at, alarm, _ in acts:
        steps = [s for s in PLAYBOOKS.for_kind(alarm.rpartition("/")[2]).steps if s.deadline_min]  # type: ignore[union-attr]
        for i, s in enumerate(steps):
            due = at + 60 * s.deadline_min  # type: ignore[operator]
            if i == 0:
                want["on_time" if at + 600 < UNTIL else "open"] += 1
            else:
                want["missed" if due < UNTIL else "open"] += 1
    s = r.steps
    assert (s.on_time, s.late, s.missed, s.open) == (
        want["on_time"],
        0,
        want["missed"],
        want["open"],
    )
