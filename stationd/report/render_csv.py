"""The daily report as CSV: one file per table, `<stem>.<table>.csv`.

UTF-8 with a byte-order mark, so Excel on a dispatch-room PC shows the Chinese headings
instead of mojibake; the first row is the heading `中文 / English`; numbers carry the
table's decimals; an empty cell is a value the period did not have.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from stationd.report.daily import DailyReport
from stationd.report.layout import Column, atomic_path


def cell(value: Any, col: Column) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and col.decimals is not None:
        return f"{value:.{col.decimals}f}"
    return str(value)


def write_csv(report: DailyReport, out_dir: Path) -> list[Path]:
    paths = []
    for table in report.tables():
        path = out_dir / f"{report.stem}.{table.key}.csv"
        tmp = atomic_path(path)
        with open(tmp, "w", encoding="utf-8-sig", newline="") as f:
            w = csv.writer(f)
            w.writerow([c.heading for c in table.columns])
            for row in table.rows:
                w.writerow([cell(v, c) for v, c in zip(row, table.columns, strict=True)])
        tmp.replace(path)
        paths.append(path)
    return paths
