"""Which hours a daily report covers, and when the next one is due (site time zone).

The plan (000 方案1 二(二)1) asks for a report every day at 09:00 and 17:00. Here:

- the **09:00** report covers the previous 24 h: 09:00 yesterday -> 09:00 today;
- the **17:00** report covers the day shift so far: 09:00 today -> 17:00 today.

Times are wall-clock times in the site's time zone (zoneinfo; Asia/Shanghai by default),
so a 09:00 report across a daylight-saving change covers 23 or 25 hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

#: report slot -> (start's day offset, start time) relative to the slot's own day
SLOTS: dict[str, tuple[int, time]] = {
    "09:00": (-1, time(9, 0)),
    "17:00": (0, time(9, 0)),
}


@dataclass(frozen=True, slots=True)
class Period:
    day: date  # the report's date (the day of its slot)
    slot: str  # "09:00" or "17:00"
    start: datetime  # aware, site time zone
    end: datetime  # aware, site time zone

    @property
    def t0(self) -> float:
        return self.start.timestamp()

    @property
    def t1(self) -> float:
        return self.end.timestamp()

    @property
    def n_hours(self) -> int:
        return round((self.t1 - self.t0) / 3600)

    def hour_start(self, h: int) -> datetime:
        """Local start of hour bin h (bins are 3600 s from the start, in absolute time)."""
        tz = self.start.tzinfo
        return datetime.fromtimestamp(self.t0 + 3600 * h, tz)

    @property
    def stem(self) -> str:
        return f"{self.day.isoformat()}_{self.slot.replace(':', '')}"

    @property
    def label_zh(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} 至 {self.end:%Y-%m-%d %H:%M}"

    @property
    def label_en(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} ({self.start.tzinfo})"


def _parse_slot(slot: str) -> str:
    s = slot.strip()
    if len(s) == 4:  # "9:00"
        s = "0" + s
    if s not in SLOTS:
        raise ValueError(
            f"report time {slot!r}: use one of {', '.join(SLOTS)} / 报表时间须为 09:00 或 17:00"
        )
    return s


def period_for(day: date, slot: str, tz: str | ZoneInfo = "Asia/Shanghai") -> Period:
    """The period of the report due at `slot` on `day` (site time)."""
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    s = _parse_slot(slot)
    hh, mm = (int(x) for x in s.split(":"))
    end = datetime.combine(day, time(hh, mm), tzinfo=zone)
    offset, start_t = SLOTS[s]
    start = datetime.combine(day + timedelta(days=offset), start_t, tzinfo=zone)
    return Period(day=day, slot=s, start=start, end=end)


def next_slot(after: datetime, tz: str | ZoneInfo = "Asia/Shanghai") -> Period:
    """The first report due strictly after `after` (an aware datetime, any zone)."""
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    local = after.astimezone(zone)
    for days in range(0, 3):
        d = local.date() + timedelta(days=days)
        for s in sorted(SLOTS):
            p = period_for(d, s, zone)
            if p.end > after:
                return p
    raise AssertionError("a report slot exists within any two days")


def days(first: date, last: date) -> list[date]:
    """Every date from `first` to `last` inclusive."""
    n = (last - first).days
    return [first + timedelta(days=i) for i in range(n + 1)]
