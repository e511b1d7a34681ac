"""The daily heating report (供热日报): every day at 09:00 and 17:00, per estate and station.

data.py       history -> numpy chunks (embedded SQLite store, or VictoriaMetrics)
compute.py    hourly means, supply status, meter volumes, loss rate (pure numpy)
period.py     which hours a report covers; the next 09:00 / 17:00 slot
incidents.py  alarms and playbook progress, through the alarm side's reading API
layout.py     columns, tables and definitions: the terms every renderer prints
daily.py      `DailyReport`: one report as data, and its tables in that layout
build.py      build one report from the history and the alarm side; write it out
render_csv.py, render_xlsx.py, render_html.py (inline SVG charts)
schedule.py   `ReportScheduler`, the daemon's 09:00 / 17:00 task
main.py       `stationd report` (`add_report_parser`, `report_main`)
"""

from stationd.report.build import build_report, write_report
from stationd.report.daily import DailyReport
from stationd.report.main import add_report_parser, report_main
from stationd.report.period import Period, next_slot, period_for
from stationd.report.schedule import ReportScheduler

__all__ = [
    "DailyReport",
    "Period",
    "ReportScheduler",
    "add_report_parser",
    "build_report",
    "next_slot",
    "period_for",
    "report_main",
    "write_report",
]
