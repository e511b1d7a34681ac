"""The daily report (供热日报) against values computed here from the raw samples.

A simulated day of the example fleet (the offline Plant, 10 s steps) goes through the real
Historian into the embedded store (and, in one test, into a REAL VictoriaMetrics). The day
has: hs004's circulation pump stopped 22:00-01:00 (not supplied for three hours), a data
gap at hs002 12:40-14:10 (an hour with no data) and a reset of hs002's make-up meter at
15:00. The expectations below are computed straight from the samples written, with plain
loops and masks, not with the report's code.
"""

from __future__ import annotations

import asyncio
import csv
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import openpyxl
import pytest
from prometheus_client import CollectorRegistry

from alarms.dispatch_log import LOG_FILE, DispatchLog, LogEntry
from alarms.instances import PlaybookInstance
from alarms.model import AlarmState, Transition
from alarms.playbooks import load_playbooks
from alarms.store import STATE_FILE, StateStore
from stationd import signals
from stationd.config import Config, load_config
from stationd.historian import Historian
from stationd.historian.lineproto import DECIMALS
from stationd.historian.read_vm import VictoriaMetricsReader
from stationd.report import (
    ReportScheduler,
    build_report,
    next_slot,
    period_for,
    write_report,
)
from stationd.report.data import open_source
from stationd.report.main import report_main
from tests.servers import start_victoria_metrics, vm_wait_samples
from tools.simulate_station.plant import Plant

ROOT = Path(__file__).resolve().parent.parent
SH = ZoneInfo("Asia/Shanghai")
STEP = 10.0
COL = signals.INDEX


@dataclass
class Day:
    cfg: Config
    state: Path
    day: date  # the 09:00 report of this date covers the simulated day
    ts: np.ndarray  # [T] unix s
    values: np.ndarray  # [T, S, K] as stored (rounded like the encoder), NaN = not written
    reset_t: float
    gap: tuple[float, float]
    pump_off: tuple[float, float]

    def at(self, t: float) -> int:
        return int(np.flatnonzero(np.abs(self.ts - t) < 1e-6)[0])

    def local(self, d: date, hh: int, mm: int = 0) -> float:
        return datetime(d.year, d.month, d.day, hh, mm, tzinfo=SH).timestamp()


def simulate(cfg: Config, day: date) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """Plant values from 08:30 the day before `day` to 09:10 on `day`, with the events."""
    prev = day - timedelta(days=1)
    t_start = datetime(prev.year, prev.month, prev.day, 8, 30, tzinfo=SH).timestamp()
    t_end = datetime(day.year, day.month, day.day, 9, 10, tzinfo=SH).timestamp()
    plant = Plant(cfg.stations, seed=7, start_time=t_start, dt=STEP)
    s4, s2 = plant.index["hs004"], plant.index["hs002"]
    off = (
        datetime(prev.year, prev.month, prev.day, 22, tzinfo=SH).timestamp(),
        datetime(day.year, day.month, day.day, 1, tzinfo=SH).timestamp(),
    )
    gap = (
        datetime(prev.year, prev.month, prev.day, 12, 40, tzinfo=SH).timestamp(),
        datetime(prev.year, prev.month, prev.day, 14, 10, tzinfo=SH).timestamp(),
    )
    reset_t = datetime(prev.year, prev.month, prev.day, 15, tzinfo=SH).timestamp()
    cold = (
        datetime(day.year, day.month, day.day, 2, tzinfo=SH).timestamp(),
        datetime(day.year, day.month, day.day, 7, tzinfo=SH).timestamp(),
    )
    n = round((t_end - t_start) / STEP) + 1
    ts = t_start + STEP * np.arange(n)
    out = np.empty((n, plant.n, signals.K))
    reset_offset = None
    for k, t in enumerate(ts):
        plant.advance(t)
        if abs(t - off[0]) < 1e-6:
            plant.set_point("hs004", "circ_pump_running", 0)
        if abs(t - off[1]) < 1e-6:
            plant.set_point("hs004", "circ_pump_running", 1)
        v = plant.values()
        if t >= reset_t:
            # the meter restarts from zero (replaced): it reads what flowed since then
            if reset_offset is None:
                reset_offset = v[s2, COL["makeup_total"]]
            v[s2, COL["makeup_total"]] -= reset_offset
        if gap[0] <= t < gap[1]:
            v[s2, :] = np.nan  # the station did not answer
        if cold[0] <= t < cold[1]:
            # hs006's rooms: below the 18 °C floor 02:00-05:00, below the standard to 07:00
            v[5, COL["indoor_temp"]] = 17.0 if t < cold[0] + 3 * 3600 else 19.2
        out[k] = v
    # stored values: what the encoder writes (fixed decimals per signal)
    for name, d in DECIMALS.items():
        out[:, :, COL[name]] = np.round(out[:, :, COL[name]], d)
    assert s4 == 3 and s2 == 1
    return ts, out, {"off": off, "gap": gap, "reset_t": reset_t}


async def write_history(historian: Historian, ts: np.ndarray, values: np.ndarray) -> None:
    await historian.start()
    try:
        for t, v in zip(ts.tolist(), values, strict=True):
            historian.write_tick(t, v)
        await historian.flush()
        assert await historian.forwarder.wait_empty(60.0)
    finally:
        await historian.stop()


def write_alarm_side(state: Path, t_alarm: float) -> str:
    """A real dispatch log and alarm store: a make-up alarm at hs001 with its playbook,
    the first step done."""
    lib = load_playbooks()
    pb = lib.for_kind("makeup_over_allowance")
    assert pb is not None
    incident = "beicheng-hs001-makeup-1"
    inst = PlaybookInstance.start(
        pb,
        incident,
        "hs001/makeup_over_allowance",
        "makeup_over_allowance",
        "hs001",
        "hs001",
        "minor",
        t_alarm,
    )
    inst.mark(inst.steps[0].id, "done", "张工", t_alarm + 600)
    d = state / "alarms"
    store = StateStore(d / STATE_FILE)
    store.save([], [(inst.to_dict(), False)], [])
    store.close()
    tr = Transition(
        time=t_alarm,
        alarm_id="hs001/makeup_over_allowance",
        incident_id=incident,
        from_state=AlarmState.NORMAL,
        to_state=AlarmState.UNACK,
        cause="activate",
        kind="makeup_over_allowance",
        subject="hs001",
        station="hs001",
        severity="minor",
        priority=3,
        value=0.008,
        message_zh="补水率超过限值",
        message_en="make-up above the allowance",
    )
    log = DispatchLog(d / LOG_FILE)
    log.append(
        [
            LogEntry(
                time=t_alarm,
                kind="transition",
                text_zh="报警",
                text_en="alarm",
                station="hs001",
                subject="hs001",
                alarm_id=tr.alarm_id,
                incident_id=incident,
                data=tr.to_dict(),
            ),
            LogEntry(  # outside the period: must not appear
                time=t_alarm - 3 * 86400,
                kind="transition",
                text_zh="旧报警",
                text_en="old alarm",
                station="hs002",
                alarm_id="hs002/sensor_fault",
                incident_id="old-incident",
                data={"to_state": "unack", "severity": "notice"},
            ),
        ]
    )
    log.close()
    return incident


@pytest.fixture(scope="module")
def sim() -> tuple[Config, date, np.ndarray, np.ndarray, dict[str, object]]:
    cfg = load_config(ROOT / "config" / "stations.yaml")
    day = datetime.now(SH).date() - timedelta(days=2)
    ts, values, events = simulate(cfg, day)
    return cfg, day, ts, values, events


@pytest.fixture(scope="module")
def history(sim, tmp_path_factory) -> Day:
    cfg, day, ts, values, ev = sim
    state = tmp_path_factory.mktemp("state")
    h = Historian.from_config(
        {"embedded": {"retention_days": 3650}},
        cfg.site.id,
        list(cfg.stations),
        state,
        registry=CollectorRegistry(),
    )
    asyncio.run(write_history(h, ts, values))
    d = Day(cfg, state, day, ts, values, ev["reset_t"], ev["gap"], ev["off"])  # type: ignore[arg-type]
    write_alarm_side(state, d.local(day - timedelta(days=1), 20))
    return d


@pytest.fixture(scope="module")
def report(history: Day):
    p = period_for(history.day, "09:00", SH)
    src = open_source(history.cfg, history.state, "embedded")
    try:
        return build_report(history.cfg, p, src, history.state)
    finally:
        src.close()


# --- independent expectations ---------------------------------------------------------------
def hour_mask(d: Day, t0: float, h: int) -> np.ndarray:
    return (d.ts >= t0 + 3600 * h) & (d.ts < t0 + 3600 * (h + 1))


def expected_mean(d: Day, t0: float, h: int, s: int, name: str) -> float:
    x = d.values[hour_mask(d, t0, h), s, COL[name]]
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else float("nan")


def expected_supplied(d: Day, t0: float, h: int, s: int) -> int:
    ok = valid = 0
    for k in np.flatnonzero(hour_mask(d, t0, h)):
        pump, tsup = (
            d.values[k, s, COL["circ_pump_running"]],
            d.values[k, s, COL["secondary_supply_temp"]],
        )
        if np.isnan(pump) or np.isnan(tsup):
            continue
        valid += 1
        ok += int(pump >= 0.5 and tsup >= 25.0)
    if valid == 0:
        return -1
    return 1 if ok / valid >= 0.5 else 0


def meter(d: Day, t: float, s: int, name: str) -> float:
    return float(d.values[d.at(t), s, COL[name]])


# --- the report ------------------------------------------------------------------------------
def test_period_of_the_0900_report_is_the_previous_24_hours(report, history):
    p = report.period
    prev = history.day - timedelta(days=1)
    assert p.start == datetime(prev.year, prev.month, prev.day, 9, tzinfo=SH)
    assert p.end == datetime(history.day.year, history.day.month, history.day.day, 9, tzinfo=SH)
    assert report.hourly.n_hours == 24
    p17 = period_for(history.day, "17:00", SH)
    assert (p17.start.hour, p17.end.hour, p17.n_hours) == (9, 17, 8)


def test_hourly_means_match_the_raw_samples(report, history):
    hr, t0 = report.hourly, report.period.t0
    for s in (0, 3, 5):
        for name in ("secondary_supply_temp", "secondary_supply_pressure", "primary_flow"):
            got = hr.mean(name)[s]
            want = [expected_mean(history, t0, h, s, name) for h in range(24)]
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=f"{s} {name}")
    # the summary's period mean: every good sample of the 24 hours
    inside = (history.ts >= t0) & (history.ts < report.period.t1)
    for s in (1, 3):
        x = history.values[inside, s, COL["secondary_supply_temp"]]
        want = float(x[np.isfinite(x)].mean())
        assert hr.period_mean("secondary_supply_temp")[s] == pytest.approx(want, rel=1e-12)


def test_supplied_flags_include_the_stopped_pump_and_the_gap(report, history):
    hr, t0 = report.hourly, report.period.t0
    want = np.array([[expected_supplied(history, t0, h, s) for h in range(24)] for s in range(8)])
    np.testing.assert_array_equal(hr.supplied, want)
    # hs004's pump off 22:00-01:00: hours 13, 14, 15 of a period starting at 09:00
    assert np.flatnonzero(hr.supplied[3] == 0).tolist() == [13, 14, 15]
    # hs002 silent 12:40-14:10: 13:00-14:00 has no sample at all
    assert np.flatnonzero(hr.supplied[1] == -1).tolist() == [4]
    assert (hr.supplied[[0, 2, 4, 5, 6, 7]] == 1).all()
    assert report.unsupplied_spans(3) == "22:00-01:00"


def test_makeup_volume_per_hour_from_the_meter(report, history):
    hr, t0 = report.hourly, report.period.t0
    for s in (0, 3, 6):
        want = [
            meter(history, t0 + 3600 * (h + 1), s, "makeup_total")
            - meter(history, t0 + 3600 * h, s, "makeup_total")
            for h in range(24)
        ]
        np.testing.assert_allclose(hr.makeup_m3[s], want, atol=1e-6)


def test_makeup_across_a_gap_and_a_meter_reset(report, history):
    hr, t0, t1 = report.hourly, report.period.t0, report.period.t1
    d, s = history, 1
    # the reset step counts nothing; the rest of the day is two meter differences
    before = d.at(d.reset_t) - 1
    total = (d.values[before, s, COL["makeup_total"]] - meter(d, t0, s, "makeup_total")) + (
        meter(d, t1, s, "makeup_total") - meter(d, d.reset_t, s, "makeup_total")
    )
    assert hr.meter_resets[s].tolist() == [0, 1]
    assert hr.makeup_total_m3[s] == pytest.approx(total, abs=1e-6)
    # the gap 12:40-14:10 (90 min): its volume is shared by time, 60 min in 13:00-14:00
    last, first = d.at(d.gap[0]) - 1, d.at(d.gap[1])
    across = d.values[first, s, COL["makeup_total"]] - d.values[last, s, COL["makeup_total"]]
    span = d.ts[first] - d.ts[last]
    assert hr.makeup_m3[s, 4] == pytest.approx(across * 3600 / span, abs=1e-6)
    # 12:00-15:00: the step into 15:00 is the reset, so the last reading counted is 14:59:50
    three = d.values[before, s, COL["makeup_total"]] - meter(d, t0 + 3 * 3600, s, "makeup_total")
    assert hr.makeup_m3[s, 3:6].sum() == pytest.approx(three, abs=1e-6)


def test_heat_gj_per_station_and_per_area(report, history):
    hr, t0, t1 = report.hourly, report.period.t0, report.period.t1
    for s, st in enumerate(history.cfg.stations):
        gj = meter(history, t1, s, "heat_energy") - meter(history, t0, s, "heat_energy")
        assert hr.heat_total_gj[s] == pytest.approx(gj, abs=1e-6)
        assert hr.heat_per_m2[s] == pytest.approx(gj / st.heated_area_m2, rel=1e-9)
        assert gj > 0


def test_loss_rate_against_the_allowance(report, history):
    hr, t0 = report.hourly, report.period.t0
    s = 0
    flows = [expected_mean(history, t0, h, s, "secondary_flow") for h in range(24)]
    makeup = [
        meter(history, t0 + 3600 * (h + 1), s, "makeup_total")
        - meter(history, t0 + 3600 * h, s, "makeup_total")
        for h in range(24)
    ]
    np.testing.assert_allclose(hr.loss_rate[s], np.array(makeup) / np.array(flows), rtol=1e-9)
    day_rate = sum(makeup) / sum(flows)
    assert hr.loss_rate_total[s] == pytest.approx(day_rate, rel=1e-9)
    # the plant's loops lose 0.1-0.3 % of their flow: under the 0.5 % allowance
    assert not hr.over_allowance[s]
    assert 0 < day_rate < 0.005


def test_incidents_come_with_their_playbook_progress(report):
    items = report.incidents.items
    assert [i.incident_id for i in items] == ["beicheng-hs001-makeup-1"]
    inc = items[0]
    assert inc.state == "unack" and inc.severity == "minor"
    assert inc.steps_done == 1 and inc.steps_total >= 2
    assert inc.progress == f"1/{inc.steps_total}"
    row = report.incident_table().rows[0]
    assert "阳光花园换热站" in row[2] and inc.playbook_zh in row[8]


def test_csv_xlsx_html_are_written_with_chinese_headings(report, history, tmp_path):
    paths = write_report(report, tmp_path)
    names = sorted(p.name for p in paths)
    stem = f"report_beicheng_{history.day.isoformat()}_0900"
    assert names == sorted(
        [
            f"{stem}.{k}.csv"
            for k in ("summary", "estates", "hourly", "incidents", "indoor", "kpi", "kpi_top")
        ]
        + [f"{stem}.xlsx", f"{stem}.html"]
    )
    # CSV: BOM for Excel, bilingual headings, the stopped station's hours
    raw = (tmp_path / f"{stem}.summary.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert rows[0][0] == "站号 / Station id" and "停供小时 / Hours not supplied" in rows[0]
    hs004 = next(r for r in rows[1:] if r[0] == "hs004")
    assert hs004[rows[0].index("停供小时 / Hours not supplied")] == "3"
    estates = list(
        csv.reader((tmp_path / f"{stem}.estates.csv").read_text("utf-8-sig").splitlines())
    )
    assert {r[0] for r in estates[1:]} >= {"阳光花园", "阳光花园二期", "紫荆城东区", "翠湖苑"}
    cuihu = next(r for r in estates[1:] if r[0] == "翠湖苑")
    assert cuihu[-1] == "22:00-01:00"

    # XLSX: opens, sheets and headings in Chinese, numbers as numbers
    wb = openpyxl.load_workbook(tmp_path / f"{stem}.xlsx", read_only=True)
    sheets = wb.sheetnames
    assert sheets[0] == "说明 Notes"
    assert any(n.startswith("换热站汇总") for n in sheets)
    assert any(n.startswith("逐时数据") for n in sheets)
    ws = wb[next(n for n in sheets if n.startswith("换热站汇总"))]
    table = list(ws.iter_rows(values_only=True))
    head = list(table[0])
    assert head[:2] == ["站号 / Station id", "换热站 / Station"]
    col = head.index("耗热量 GJ / Heat GJ")
    hs001 = next(r for r in table[1:] if r[0] == "hs001")
    assert hs001[col] == pytest.approx(report.hourly.heat_total_gj[0])
    hourly = wb[next(n for n in sheets if n.startswith("逐时数据"))]
    assert hourly.max_row == 1 + 8 * 24
    wb.close()

    # HTML: self-contained, an SVG per chart, Chinese names
    html = (tmp_path / f"{stem}.html").read_text("utf-8")
    assert "<script" not in html and "src=" not in html and "<link" not in html
    # status grid, 8 hourly signals, make-up, heat, loss rate, indoor share by estate
    assert html.count("<svg") == 13
    assert html.count("</svg>") == 13
    assert "室温达标率" in html and "报警系统指标" in html
    for st in history.cfg.stations:
        assert st.name in html
        for e in st.estates:
            assert e in html
    assert "供热日报" in html and "北城供热分公司" in html


def test_report_command_and_backfill_progress(history, tmp_path, capsys):
    import argparse

    from stationd.report.main import add_report_parser

    parser = argparse.ArgumentParser()
    add_report_parser(parser.add_subparsers(dest="cmd"))
    prev = history.day - timedelta(days=1)
    args = parser.parse_args(
        [
            "report",
            "--config",
            str(ROOT / "config" / "stations.yaml"),
            "--state-dir",
            str(history.state),
            "--out-dir",
            str(tmp_path),
            "--source",
            "embedded",
            "--from",
            prev.isoformat(),
            "--to",
            history.day.isoformat(),
        ]
    )
    assert report_main(args) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and err[0].startswith("[1/4]") and err[3].startswith("[4/4]")
    assert len(list(tmp_path.glob("*.html"))) == 4
    # the 17:00 report of the simulated day covers 09:00-17:00: 8 hours
    wb = openpyxl.load_workbook(
        tmp_path / f"report_beicheng_{prev.isoformat()}_1700.xlsx", read_only=True
    )
    hourly = wb[next(n for n in wb.sheetnames if n.startswith("逐时数据"))]
    assert hourly.max_row == 1 + 8 * 8
    wb.close()
    # a future slot is refused with exit code 2
    future = datetime.now(SH).date() + timedelta(days=2)
    args.date_from = args.date_to = None
    args.date, args.at = future, "09:00"
    assert report_main(args) == 2


# --- the schedule ----------------------------------------------------------------------------
def test_next_slot_across_midnight_in_shanghai():
    def sh(*a: int) -> datetime:
        return datetime(*a, tzinfo=SH)

    p = next_slot(sh(2026, 11, 23, 23, 30), "Asia/Shanghai")
    assert (p.end, p.start, p.slot) == (sh(2026, 11, 24, 9), sh(2026, 11, 23, 9), "09:00")
    assert p.end.astimezone(UTC) == datetime(2026, 11, 24, 1, tzinfo=UTC)
    # given in UTC: 08:59 UTC is 16:59 in Shanghai
    p = next_slot(datetime(2026, 11, 23, 8, 59, tzinfo=UTC), "Asia/Shanghai")
    assert (p.end, p.slot) == (sh(2026, 11, 23, 17), "17:00")
    # exactly at a slot: the next one
    assert next_slot(sh(2026, 11, 23, 9), "Asia/Shanghai").end == sh(2026, 11, 23, 17)
    # 17:00 UTC is 01:00 next day in Shanghai: that day's 09:00
    p = next_slot(datetime(2026, 11, 23, 17, 0, tzinfo=UTC), "Asia/Shanghai")
    assert p.end == sh(2026, 11, 24, 9)
    # across the year
    p = next_slot(sh(2026, 12, 31, 17, 0, 1), "Asia/Shanghai")
    assert (p.start, p.end) == (sh(2026, 12, 31, 9), sh(2027, 1, 1, 9))


def test_period_across_daylight_saving_has_23_hours():
    # Asia/Shanghai has no DST; a site in Europe/Berlin springs forward on 2026-03-29
    p = period_for(date(2026, 3, 29), "09:00", "Europe/Berlin")
    assert p.n_hours == 23
    assert period_for(date(2026, 3, 30), "09:00", "Europe/Berlin").n_hours == 24


async def test_scheduler_writes_the_report_at_its_slot(history, tmp_path):
    p = period_for(history.day, "09:00", SH)
    offset = p.t1 - 0.3 - time.time()  # the scheduler's clock: 0.3 s before 09:00
    sched = ReportScheduler(
        history.cfg,
        history.state,
        tmp_path,
        source="embedded",
        settle_s=0.0,
        clock=lambda: time.time() + offset,
    )
    assert sched.tz == SH
    assert sched.next_due().end == p.end
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    deadline = time.monotonic() + 30
    while not sched.written:
        assert time.monotonic() < deadline, "no report within 30 s"
        assert not task.done(), task
        await asyncio.sleep(0.05)
    # the next one is due at 17:00: the task sleeps until the stop event
    assert sched.next_due().end == period_for(history.day, "17:00", SH).end
    stop.set()
    await asyncio.wait_for(task, 5)
    period, paths = sched.written[0]
    assert period == p and sched.failures == 0
    assert all(x.exists() for x in paths)


# --- VictoriaMetrics -------------------------------------------------------------------------
@pytest.mark.integration
async def test_report_from_victoria_metrics_matches_the_embedded_one(sim, report, tmp_path):
    cfg, _day, ts, values, _ = sim
    with start_victoria_metrics(tmp_path) as vm:
        h = Historian.from_config(
            {"influxdb": {"url": vm.url, "flush_interval_s": 0.2}},
            cfg.site.id,
            list(cfg.stations),
            tmp_path / "state",
            registry=CollectorRegistry(),
        )
        await write_history(h, ts, values)
        n_total = int(np.isfinite(values[:, :, COL["makeup_total"]]).sum())
        series = await asyncio.to_thread(
            vm_wait_samples, vm, '{__name__="station_makeup_total"}', n_total, 30.0
        )
        assert sum(len(s["values"]) for s in series) == n_total
        src = VictoriaMetricsReader(vm.url, cfg.site.id, [st.id for st in cfg.stations])
        vm_report = await asyncio.to_thread(build_report, cfg, report.period, src, None)
    a, b = vm_report.hourly, report.hourly
    np.testing.assert_allclose(a.means, b.means, rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.supplied, b.supplied)
    np.testing.assert_allclose(a.makeup_m3, b.makeup_m3, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(a.heat_gj, b.heat_gj, atol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(a.meter_resets, b.meter_resets)
    assert vm_report.source.startswith("victoria-metrics")


def test_scheduler_started_just_after_a_slot_still_owes_it(tmp_path):
    cfg = load_config(ROOT / "config" / "stations.yaml")
    slot = datetime(2026, 11, 23, 17, tzinfo=SH).timestamp()
    sched = ReportScheduler(cfg, tmp_path, tmp_path, settle_s=10.0, clock=lambda: slot + 5.0)
    assert sched.next_due().end == datetime(2026, 11, 23, 17, tzinfo=SH)
    assert sched.next_due(slot + 11.0).end == datetime(2026, 11, 24, 9, tzinfo=SH)


# --- indoor at standard and the alarm-system KPIs ------------------------------------------
def expected_indoor(d: Day, t0: float, n_hours: int) -> dict[str, tuple[int, int, int, int]]:
    """estate -> (rooms, hours with a reading, hours at 20 °C, hours below 18 °C), from the
    raw samples: the median over the estate's room sensors of their hourly means."""
    rooms: dict[str, list[int]] = {}
    for s, st in enumerate(d.cfg.stations):
        estate = st.indoor_estate or (st.estates[0] if len(st.estates) == 1 else None)
        if estate and "indoor_temp" in st.tags:
            rooms.setdefault(estate, []).append(s)
    out = {}
    for estate, members in rooms.items():
        known = at_std = below = 0
        for h in range(n_hours):
            means = [expected_mean(d, t0, h, s, "indoor_temp") for s in members]
            means = [m for m in means if np.isfinite(m)]
            if not means:
                continue
            rep = float(np.median(means))
            known += 1
            at_std += rep >= 20.0
            below += rep < 18.0
        out[estate] = (len(members), known, at_std, below)
    return out


def test_indoor_share_at_standard_per_estate_matches_the_samples(report, history):
    p = report.period
    assert history.cfg.thresholds.indoor_night_setback_c == 0.0  # the example: 20 °C all day
    want = expected_indoor(history, p.t0, report.hourly.n_hours)
    ind = report.indoor
    assert set(ind.estates) == set(want)
    for j, estate in enumerate(ind.estates):
        rooms, known, at_std, below = want[estate]
        assert int(ind.rooms[j]) == rooms
        assert int(ind.hours_known[j]) == known, estate
        assert int(ind.hours_at_standard[j]) == at_std, estate
        assert int(ind.hours_below_floor[j]) == below, estate
    # hs006's estate (its only room sensor): 3 hours below the floor, 2 more below 20 °C
    estate = "和平小区"
    rooms, known, at_std, below = want[estate]
    assert rooms == 1 and below == 3 and known - at_std >= 5

    table = report.indoor_table()
    row = next(r for r in table.rows if r[0] == estate)
    assert row[1:5] == [rooms, known, at_std, below]
    assert row[5] == pytest.approx(100.0 * at_std / known)


def test_indoor_share_honours_a_night_setback(report, history):
    from stationd.detect.thresholds import Thresholds
    from stationd.report.compute import StationInfo, indoor_share

    p = report.period
    hours = [p.hour_start(h).hour for h in range(report.hourly.n_hours)]
    infos = [StationInfo.from_station(st) for st in history.cfg.stations]
    th = Thresholds(indoor_day_start_h=6, indoor_day_end_h=22, indoor_night_setback_c=1.0)
    ind = indoor_share(report.hourly, infos, hours, th)
    j = ind.estates.index(infos[5].indoor_estate)
    rep = ind.hourly_c[j]
    # by hand: 19 °C passes at night (22:00-06:00) with a 1 K set-back, never by day
    night = np.array([h >= 22 or h < 6 for h in hours])
    std = np.where(night, 19.0, 20.0)
    ok = np.isfinite(rep)
    assert int(ind.hours_at_standard[j]) == int((rep[ok] >= std[ok]).sum())
    # the 05:00 hour at 19.2 °C is night: it passes with the set-back only
    assert int(ind.hours_at_standard[j]) == int(report.indoor.hours_at_standard[j]) + 1


def test_kpi_section_with_targets_and_the_top_ten(report, history, tmp_path):
    k = report.kpi
    assert k is not None
    # the one alarm of the period (20:00, hs001 make-up); the one three days older is out
    assert k.alarms_total == 1
    assert [(a.alarm_id, a.count) for a in k.top] == [("hs001/makeup_over_allowance", 1)]
    assert k.alarms_per_operator_hour == pytest.approx(1 / 24)

    write_report(report, tmp_path)
    stem = report.stem
    rows = list(csv.reader((tmp_path / f"{stem}.kpi.csv").read_text("utf-8-sig").splitlines()))
    assert rows[0] == [
        "指标 / KPI",
        "数值 / Value",
        "单位 / Unit",
        "目标 / Target",
        "判定 / Result",
    ]
    by = {r[0].split(" / ")[0]: r for r in rows[1:]}
    rate = by["每操作员每小时报警数"]
    assert float(rate[1]) == pytest.approx(1 / 24, abs=0.01) and rate[4] == "达标 pass"
    top = by["最频繁 10 个报警占比"]  # one alarm is 100 % of the period's alarms
    assert float(top[1]) == pytest.approx(100.0) and top[4] == "未达标 FAIL"
    assert by["10 分钟内最多报警数"][4] == "达标 pass"
    top_rows = list(
        csv.reader((tmp_path / f"{stem}.kpi_top.csv").read_text("utf-8-sig").splitlines())
    )
    assert top_rows[1] == ["1", "hs001/makeup_over_allowance", "1", "100.0"]

    wb = openpyxl.load_workbook(tmp_path / f"{stem}.xlsx", read_only=True)
    ws = wb[next(n for n in wb.sheetnames if n.startswith("报警系统指标"))]
    sheet = list(ws.iter_rows(values_only=True))
    assert len(sheet) == len(rows)
    ws = wb[next(n for n in wb.sheetnames if n.startswith("小区室温达标"))]
    assert len(list(ws.iter_rows(values_only=True))) == 1 + len(report.indoor.estates)
    wb.close()
    html = (tmp_path / f"{stem}.html").read_text("utf-8")
    assert "hs001/makeup_over_allowance" in html and "未达标 FAIL" in html
