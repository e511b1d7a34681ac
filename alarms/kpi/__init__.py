"""Alarm-system KPIs after ISA-18.2, computed from the dispatch log (see README.md here).

from alarms.kpi import add_kpi_parser, kpi_fields
add_kpi_parser(sub)                          # stationd/cli.py: `stationd kpi`
historian.write_daemon(kpi_fields(state_dir)) # hourly, in a worker thread
"""

from alarms.kpi.cli import add_kpi_parser, kpi_fields, kpi_main, kpi_report
from alarms.kpi.history import AlarmHistory, build_history
from alarms.kpi.measures import KpiReport, compute_kpis
from alarms.kpi.report import KPI_FIELD_NAMES, render_text, report_fields, report_json

__all__ = [
    "KPI_FIELD_NAMES",
    "AlarmHistory",
    "KpiReport",
    "add_kpi_parser",
    "build_history",
    "compute_kpis",
    "kpi_fields",
    "kpi_main",
    "kpi_report",
    "render_text",
    "report_fields",
    "report_json",
]
