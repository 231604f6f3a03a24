"""Exchange times of day: parsing, formatting, the NOII schedule."""

from __future__ import annotations

import pytest

from exchange_sim import InvalidTimeError, format_time, parse_time
from exchange_sim.schedule import SYSTEM_EVENTS, noii_times

NS = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("09:29:00", (9 * 3600 + 29 * 60) * NS),
        ("9:29", (9 * 3600 + 29 * 60) * NS),
        ("16:00:00.25", 16 * 3600 * NS + 250_000_000),
        ("00:00:00.000000001", 1),
        ("23:59:59.999999999", 24 * 3600 * NS - 1),
    ],
)
def test_a_time_of_day_parses_to_nanoseconds_since_midnight(text: str, ns: int):
    """HH:MM[:SS[.fraction]] becomes exchange nanoseconds; format_time reverses it."""
    assert parse_time(text) == ns
    assert parse_time(format_time(ns)) == ns


@pytest.mark.parametrize("text", ["24:00:00", "09:60", "9h30", "", "09:29:00.1234567890"])
def test_an_impossible_or_malformed_time_is_refused_with_the_accepted_form(text: str):
    """Out-of-range fields and other shapes raise InvalidTimeError naming the value."""
    with pytest.raises(InvalidTimeError, match="expected HH:MM"):
        parse_time(text)


def test_nanoseconds_pass_through_and_outside_the_day_are_refused():
    """An int is already exchange time; a negative one or a full day is not."""
    assert parse_time(5) == 5
    with pytest.raises(InvalidTimeError):
        parse_time(24 * 3600 * NS)


def test_system_events_are_in_schedule_order():
    """O, S, Q, M, E, C at 03:00, 04:00, 09:30, 16:00, 20:00, 20:05."""
    assert [(code.value, format_time(t)[:8]) for code, t in SYSTEM_EVENTS] == [
        ("O", "03:00:00"),
        ("S", "04:00:00"),
        ("Q", "09:30:00"),
        ("M", "16:00:00"),
        ("E", "20:00:00"),
        ("C", "20:05:00"),
    ]


def test_noii_times_step_ten_seconds_then_one_second_up_to_the_cross():
    """From 09:25 every 10 s to 09:28, then every second to 09:29:59: 18 + 120 times."""
    times = noii_times(parse_time("09:25"), parse_time("09:28"), parse_time("09:30"))
    assert len(times) == 18 + 120
    assert (format_time(times[0]), format_time(times[-1])) == (
        "09:25:00.000000000",
        "09:29:59.000000000",
    )
