"""The journal's fast path: placeholders numbered for PQprepare, parameters in text form."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from enum import IntEnum

import pytest
from psycopg.types.json import Jsonb

from ledger.journal import BOOK_FILL, _numbered, _text
from ledger.rules import Side


def test_placeholders_are_numbered_in_order():
    """BOOK_FILL's twelve %s become $1 … $12, the rest of the statement untouched."""
    assert _numbered(BOOK_FILL) == (
        "SELECT ledger_book_fill($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        (42, b"42"),
        ("f-1", b"f-1"),
        (b"\x00\xab", b"\\x00ab"),
        (uuid.UUID(int=1), b"00000000-0000-0000-0000-000000000001"),
        (datetime(2025, 6, 10, 15, 0, 1, 5, tzinfo=UTC), b"2025-06-10T15:00:01.000005+00:00"),
        (date(2025, 6, 11), b"2025-06-11"),
        (Jsonb({"order_id": "o1", "n": 2}), b'{"order_id": "o1", "n": 2}'),
    ],
)
def test_parameters_take_postgresql_text_input_form(value, text):
    """bytea as \\x hex, timestamps ISO 8601 with their offset, jsonb as JSON text."""
    assert _text(value) == text


@pytest.mark.parametrize("value", [1.5, True])
def test_a_float_or_bool_parameter_is_refused(value):
    """Money is never float, and no function takes a boolean: both are programming errors."""
    with pytest.raises(TypeError, match="no text form for a ledger function parameter"):
        _text(value)


class Quantity(IntEnum):
    TEN = 10


class Stamp(datetime):
    pass


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Quantity.TEN, b"10"),
        (Side.BUY, b"buy"),
        (Stamp(2025, 6, 10, 15, tzinfo=UTC), b"2025-06-10T15:00:00+00:00"),
        (date(2025, 6, 11), b"2025-06-11"),  # remembered: asked twice
        (date(2025, 6, 11), b"2025-06-11"),
    ],
)
def test_subclasses_of_the_parameter_types_take_the_same_text_form(value, text):
    """An IntEnum or StrEnum member and a datetime subclass are sent as their base type is."""
    assert _text(value) == text
