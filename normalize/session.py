"""The exchange's session day: ITCH timestamps are nanoseconds since midnight, US/Eastern."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

EXCHANGE_TZ = ZoneInfo("America/New_York")

# NASDAQ's sample files are named like 01302019.NASDAQ_ITCH50(.gz): MMDDYYYY first.
_SAMPLE_FILE_DATE = re.compile(r"^(\d{2})(\d{2})(\d{4})\.")


def midnight_ns(day: date, tz: ZoneInfo = EXCHANGE_TZ) -> int:
    """Epoch nanoseconds of local midnight starting ``day`` at the exchange (DST-aware)."""
    return int(datetime.combine(day, time(0), tzinfo=tz).timestamp()) * 1_000_000_000


def exchange_today(now_epoch_s: float, tz: ZoneInfo = EXCHANGE_TZ) -> date:
    """The exchange's calendar date at ``now_epoch_s``."""
    return datetime.fromtimestamp(now_epoch_s, tz).date()


def date_from_file_name(path: Path) -> date | None:
    """The session date encoded in a NASDAQ sample file name, else ``None``."""
    match = _SAMPLE_FILE_DATE.match(path.name)
    if match is None:
        return None
    month, day, year = (int(part) for part in match.groups())
    try:
        return date(year, month, day)
    except ValueError:
        return None
