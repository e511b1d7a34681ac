"""Assemble one daily report (供热日报): read, aggregate, gather incidents; write it out.

    report = build_report(cfg, period, source, state_dir)
    paths = write_report(report, out_dir)      # CSV, XLSX and HTML side by side

The report's tables are laid out once (`DailyReport.tables()`, daily.py, in the terms of
layout.py); each renderer prints that layout, so the three never disagree.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alarms.kpi import KpiReport, kpi_report
from stationd.detect.thresholds import Thresholds
from stationd.report.compute import StationInfo, aggregate, indoor_share
from stationd.report.daily import DailyReport
from stationd.report.data import Source
from stationd.report.incidents import load_incidents
from stationd.report.period import Period
from stationd.report.render_csv import write_csv
from stationd.report.render_html import write_html
from stationd.report.render_xlsx import write_xlsx

log = logging.getLogger(__name__)

#: meters are read from this long before and after the period, so the steps across its
#: edges are not lost (only their part inside the period counts)
LEAD_IN_S = 900.0


def build_report(
    cfg: Any,
    period: Period,
    source: Source,
    state_dir: str | Path | None,
    stations: Sequence[StationInfo] | None = None,
) -> DailyReport:
    """Read the period (with a lead-in for the meters) and gather its incidents."""
    infos = (
        list(stations)
        if stations is not None
        else [StationInfo.from_station(st) for st in cfg.stations]
    )
    hourly = aggregate(
        infos, source.chunks(period.t0 - LEAD_IN_S, period.t1 + LEAD_IN_S), period.t0, period.t1
    )
    incidents = load_incidents(state_dir, period.t0, period.t1)
    site_th = getattr(cfg, "thresholds", None) or Thresholds()
    indoor = indoor_share(
        hourly, infos, [period.hour_start(h).hour for h in range(hourly.n_hours)], site_th
    )
    return DailyReport(
        site_id=cfg.site.id,
        site_name=cfg.site.name,
        period=period,
        stations=infos,
        hourly=hourly,
        incidents=incidents,
        source=source.name,
        generated_at=time.time(),
        indoor=indoor,
        kpi=_kpis(state_dir, period),
    )


def _kpis(state_dir: str | Path | None, period: Period) -> KpiReport | None:
    """The period's alarm-system KPIs, or None (and a log line) without a dispatch log: a
    report still goes out when the alarm side has not written anything yet."""
    if state_dir is None:
        return None
    try:
        return kpi_report(Path(state_dir), period.t0, period.t1)
    except FileNotFoundError as e:
        log.info("report: no KPIs for %s: %s", period.stem, e)
        return None


def write_report(report: DailyReport, out_dir: str | Path) -> list[Path]:
    """Write CSV (one file per table), XLSX and HTML; returns the paths written.

    Each file is written beside its final name and renamed into place, so a reader (a
    web server, a mail job) never sees half a report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = write_csv(report, out)
    paths.append(write_xlsx(report, out / f"{report.stem}.xlsx"))
    paths.append(write_html(report, out / f"{report.stem}.html"))
    return paths
