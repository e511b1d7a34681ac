"""The daily report as one XLSX workbook (openpyxl): a sheet per table plus the notes.

Sheets: 说明 Notes (title, period, source, definitions), then 换热站汇总, 小区供热状态,
逐时数据, 报警与事件 — each with a bold bilingual heading row frozen at the top, numbers
stored as numbers (with the table's decimals as the display format) so dispatch can sum
and chart them in Excel.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from stationd.report.daily import DailyReport
from stationd.report.layout import DEFINITIONS, atomic_path

_HEAD_FILL = PatternFill("solid", fgColor="DDEBF7")
_SHEET_TITLE_MAX = 31  # Excel's limit


def _sheet_title(text: str) -> str:
    # Excel refuses []:*?/\ in sheet names and cuts them at 31 characters
    return re.sub(r"[\[\]:*?/\\]", " ", text)[:_SHEET_TITLE_MAX].strip()


def write_xlsx(report: DailyReport, path: Path) -> Path:
    wb = Workbook()
    notes = wb.active
    notes.title = "说明 Notes"
    tz = report.period.start.tzinfo
    notes.append([report.title_zh])
    notes.append([report.title_en])
    notes["A1"].font = Font(bold=True, size=14)
    notes.append([f"报表时段 Period: {report.period.label_zh} / {report.period.label_en}"])
    notes.append([f"数据来源 Source: {report.source}"])
    notes.append(
        [f"生成时间 Generated: {datetime.fromtimestamp(report.generated_at, tz):%Y-%m-%d %H:%M:%S}"]
    )
    notes.append([])
    notes.append(["定义 Definitions"])
    notes.cell(row=notes.max_row, column=1).font = Font(bold=True)
    for zh, en in DEFINITIONS:
        notes.append([zh])
        notes.append([en])
    notes.column_dimensions["A"].width = 120
    for table in report.tables():
        ws = wb.create_sheet(_sheet_title(f"{table.title_zh} {table.title_en}"))
        ws.append([c.heading for c in table.columns])
        for j, _c in enumerate(table.columns, start=1):
            h = ws.cell(row=1, column=j)
            h.font = Font(bold=True)
            h.fill = _HEAD_FILL
            h.alignment = Alignment(wrap_text=True, vertical="top")
        for row in table.rows:
            ws.append(row)
        for j, c in enumerate(table.columns, start=1):
            letter = get_column_letter(j)
            ws.column_dimensions[letter].width = max(10, min(40, len(c.heading) * 0.9))
            if c.decimals is not None:
                fmt = "0" if c.decimals == 0 else "0." + "0" * c.decimals
                for (cell,) in ws.iter_rows(min_row=2, min_col=j, max_col=j):
                    cell.number_format = fmt
        ws.freeze_panes = "A2"
    tmp = atomic_path(path)
    wb.save(tmp)
    tmp.replace(path)
    return path
