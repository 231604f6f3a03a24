"""The simulated trading day: session times and system event codes, pure.

Times are exchange time, nanoseconds since midnight, as in the ITCH 5.0 Timestamp field.
The day follows NASDAQ's: messages start at 03:00, the system opens at 04:00 (pre-market),
the opening cross and regular hours start at 09:30, the closing cross runs at 16:00,
post-market lasts until 20:00 and the feed ends at 20:05.
"""

from __future__ import annotations

import re
from enum import StrEnum

from exchange_sim.errors import InvalidTimeError

__all__ = [
    "CLOSING_NOII_FAST",
    "CLOSING_NOII_START",
    "END_OF_MARKET_HOURS",
    "END_OF_MESSAGES",
    "END_OF_SYSTEM_HOURS",
    "NS_PER_SECOND",
    "OPENING_NOII_FAST",
    "OPENING_NOII_START",
    "START_OF_MARKET_HOURS",
    "START_OF_MESSAGES",
    "START_OF_SYSTEM_HOURS",
    "SYSTEM_EVENTS",
    "SystemEventCode",
    "format_time",
    "noii_times",
    "parse_time",
]

NS_PER_SECOND = 1_000_000_000
_NS_PER_MINUTE = 60 * NS_PER_SECOND
_NS_PER_HOUR = 60 * _NS_PER_MINUTE
_NS_PER_DAY = 24 * _NS_PER_HOUR


def _at(hours: int, minutes: int = 0, seconds: int = 0) -> int:
    return hours * _NS_PER_HOUR + minutes * _NS_PER_MINUTE + seconds * NS_PER_SECOND


class SystemEventCode(StrEnum):
    """System Event ('S') codes, in the order they occur in a day."""

    START_OF_MESSAGES = "O"
    START_OF_SYSTEM_HOURS = "S"
    START_OF_MARKET_HOURS = "Q"
    END_OF_MARKET_HOURS = "M"
    END_OF_SYSTEM_HOURS = "E"
    END_OF_MESSAGES = "C"


START_OF_MESSAGES = _at(3)
START_OF_SYSTEM_HOURS = _at(4)
START_OF_MARKET_HOURS = _at(9, 30)
END_OF_MARKET_HOURS = _at(16)
END_OF_SYSTEM_HOURS = _at(20)
END_OF_MESSAGES = _at(20, 5)

SYSTEM_EVENTS: tuple[tuple[SystemEventCode, int], ...] = (
    (SystemEventCode.START_OF_MESSAGES, START_OF_MESSAGES),
    (SystemEventCode.START_OF_SYSTEM_HOURS, START_OF_SYSTEM_HOURS),
    (SystemEventCode.START_OF_MARKET_HOURS, START_OF_MARKET_HOURS),
    (SystemEventCode.END_OF_MARKET_HOURS, END_OF_MARKET_HOURS),
    (SystemEventCode.END_OF_SYSTEM_HOURS, END_OF_SYSTEM_HOURS),
    (SystemEventCode.END_OF_MESSAGES, END_OF_MESSAGES),
)
"""Every system event of the day with its exchange time, in order."""

# Net Order Imbalance Indicators precede each cross: every 10 s from the first time, then
# every second from the "fast" time until the cross (NASDAQ's dissemination schedule).
OPENING_NOII_START = _at(9, 25)
OPENING_NOII_FAST = _at(9, 28)
CLOSING_NOII_START = _at(15, 50)
CLOSING_NOII_FAST = _at(15, 55)

_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?$")


def noii_times(start: int, fast: int, cross: int) -> list[int]:
    """The NOII dissemination times before a cross at ``cross``: 10 s steps, then 1 s."""
    slow = list(range(start, fast, 10 * NS_PER_SECOND))
    return slow + list(range(fast, cross, NS_PER_SECOND))


def parse_time(value: str | int) -> int:
    """``"09:29:00"`` (or ``"9:29"``, ``"09:29:00.25"``, or ns already) → ns since midnight."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < _NS_PER_DAY:
            raise InvalidTimeError(value, "outside the day")
        return value
    if not isinstance(value, str):
        raise InvalidTimeError(value, "not a string")
    match = _TIME.match(value.strip())
    if match is None:
        raise InvalidTimeError(value, "not in HH:MM[:SS[.fffffffff]] form")
    hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes) > 59 or int(seconds or 0) > 59:
        raise InvalidTimeError(value, "hour, minute or second out of range")
    nanos = int((fraction or "0").ljust(9, "0"))
    return _at(int(hours), int(minutes), int(seconds or 0)) + nanos


def format_time(ns: int) -> str:
    """``34140000000000`` → ``"09:29:00.000000000"``."""
    seconds, nanos = divmod(ns, NS_PER_SECOND)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{hour:02d}:{minute:02d}:{second:02d}.{nanos:09d}"
