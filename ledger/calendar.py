"""Exchange business days: weekends and NYSE holidays, computed by rule, and T+n settlement.

Pure: dates in, dates out. The rules (NYSE Rule 7.2) give every full-day closure from 2024 on;
unscheduled closures (a national day of mourning) are listed in :data:`SPECIAL_CLOSURES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache

# Full-day closures no rule predicts: President Carter's national day of mourning.
SPECIAL_CLOSURES: frozenset[date] = frozenset({date(2025, 1, 9)})


def easter_sunday(year: int) -> date:
    """Western Easter (anonymous Gregorian algorithm)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    last = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date | None:
    """Saturday holidays are observed the Friday before, Sunday ones the Monday after."""
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


@lru_cache(maxsize=64)
def nyse_holidays(year: int) -> frozenset[date]:
    """The NYSE's full-day holidays of ``year`` (weekdays only), special closures included."""
    monday, thursday = 0, 3
    days: set[date | None] = {
        _nth_weekday(year, 1, monday, 3),  # Martin Luther King Jr. Day
        _nth_weekday(year, 2, monday, 3),  # Washington's Birthday
        easter_sunday(year) - timedelta(days=2),  # Good Friday
        _last_weekday(year, 5, monday),  # Memorial Day
        _observed(date(year, 7, 4)),  # Independence Day
        _nth_weekday(year, 9, monday, 1),  # Labor Day
        _nth_weekday(year, 11, thursday, 4),  # Thanksgiving
        _observed(date(year, 12, 25)),  # Christmas
    }
    if year >= 2022:
        days.add(_observed(date(year, 6, 19)))  # Juneteenth
    # New Year's Day: a Saturday 1 January is not observed on the Friday before (NYSE rule),
    # because that Friday closes the previous year's books.
    new_year = date(year, 1, 1)
    if new_year.weekday() != 5:
        days.add(_observed(new_year))
    days |= {d for d in SPECIAL_CLOSURES if d.year == year}
    return frozenset(d for d in days if d is not None and d.year == year)


@dataclass(frozen=True, slots=True)
class ExchangeCalendar:
    """Business days of an exchange: Monday to Friday minus ``extra_holidays`` and NYSE's."""

    extra_holidays: frozenset[date] = field(default_factory=frozenset)

    def is_business_day(self, day: date) -> bool:
        return (
            day.weekday() < 5
            and day not in nyse_holidays(day.year)
            and day not in self.extra_holidays
        )

    def next_business_day(self, day: date) -> date:
        """The first business day strictly after ``day``."""
        day += timedelta(days=1)
        while not self.is_business_day(day):
            day += timedelta(days=1)
        return day

    def trade_date(self, day: date) -> date:
        """``day`` if a business day, else the next one (a weekend fill trades on Monday)."""
        return day if self.is_business_day(day) else self.next_business_day(day)

    def settlement_date(self, trade_day: date, *, days: int = 1) -> date:
        """T+``days``: that many business days after the trade date of ``trade_day``."""
        settle = self.trade_date(trade_day)
        for _ in range(days):
            settle = self.next_business_day(settle)
        return settle

    def trade_and_settlement_dates(self, day: date) -> tuple[date, date]:
        """The trade date of a fill on ``day`` and its T+1 settlement date, memoized per day
        (a fill computes both; fills of one day share them)."""
        if type(self) is not ExchangeCalendar:  # a subclass may have rules of its own
            trade_date = self.trade_date(day)
            return trade_date, self.settlement_date(trade_date)
        return _trade_and_settlement_dates(self.extra_holidays, day)


@lru_cache(maxsize=256)
def _trade_and_settlement_dates(extra_holidays: frozenset[date], day: date) -> tuple[date, date]:
    # Keyed by the holidays rather than the calendar: a frozenset keeps its hash, the frozen
    # dataclass would rehash its fields on every call.
    calendar = ExchangeCalendar(extra_holidays)
    trade_date = calendar.trade_date(day)
    return trade_date, calendar.settlement_date(trade_date)
