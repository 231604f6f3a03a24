"""The vectorized page encodings (``candles.frames``) write byte for byte what the bars API
wrote row by row before: exact dollar decimals, RFC 3339 times, symbols in page order."""

from __future__ import annotations

import random
import struct
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl
import pyarrow as pa
import pytest

from candles.errors import PageArrayError
from candles.frames import bars_table, csv_body, json_body, page_frame

Row = tuple[str, datetime, int, int, int, int, int, int, int]


def decimal_text(value: int, places: int) -> str:
    """The bars API's original formatter of an integer with ``places`` implied decimals."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**places)
    digits = f"{frac:0{places}d}".rstrip("0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def reference_json(rows: list[Row], token: str | None) -> bytes:
    """The row-by-row JSON encoder the vectorized one replaced."""
    by_symbol: dict[str, list[str]] = {}
    for s, t, o, h, lo, c, v, n, vw in rows:
        by_symbol.setdefault(s, []).append(
            f'{{"t":"{rfc3339(t)}","o":{decimal_text(o, 4)},"h":{decimal_text(h, 4)},'
            f'"l":{decimal_text(lo, 4)},"c":{decimal_text(c, 4)},"v":{v},'
            f'"n":{n},"vw":{decimal_text(vw, 8)}}}'
        )
    body = ",".join(
        '"' + s.replace("\\", "\\\\").replace('"', '\\"') + f'":[{",".join(b)}]'
        for s, b in by_symbol.items()
    )
    next_token = "null" if token is None else f'"{token}"'
    return f'{{"bars":{{{body}}},"next_page_token":{next_token}}}'.encode()


def reference_csv(rows: list[Row]) -> bytes:
    lines = ["symbol,t,o,h,l,c,v,n,vw"]
    lines.extend(
        f"{s},{rfc3339(t)},{decimal_text(o, 4)},{decimal_text(h, 4)},{decimal_text(lo, 4)},"
        f"{decimal_text(c, 4)},{v},{n},{decimal_text(vw, 8)}"
        for s, t, o, h, lo, c, v, n, vw in rows
    )
    return ("\n".join(lines) + "\n").encode()


def binary_array(element_oid: int, values: list[int]) -> bytes:
    """A one-dimensional PostgreSQL binary array of 8-byte values, as the server sends it."""
    header = struct.pack("!iiiii", 1, 0, element_oid, len(values), 1)
    return header + b"".join(struct.pack("!iq", 8, v) for v in values)


def page_arrays(rows: list[Row]) -> tuple[list[str], tuple[bytes, ...]]:
    """The page as ``page_arrays_query`` returns it: the symbols, then binary arrays of
    ``t`` (timestamptz: microseconds since 2000-01-01 UTC) and the integers."""
    since_2000 = [
        (t - datetime(2000, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) for _, t, *_ in rows
    ]
    integers = [binary_array(20, [r[i] for r in rows]) for i in range(2, 9)]
    return [r[0] for r in rows], (binary_array(1184, since_2000), *integers)


def plant_rows(seed: int) -> list[Row]:
    """Bars as the plant stores them: whole minutes, positive prices, three symbols, a page
    crossing a day, a month and a year end, prices with 0 to 4 decimals."""
    rng = random.Random(seed)
    rows: list[Row] = []
    for symbol in ("AAPL", "BRK.B", "MSFT"):
        t = datetime(2024, 12, 31, 20, 55, tzinfo=UTC)
        for _ in range(700):
            price = rng.choice([1_875_000, 1_870_000, 1_875_100, 1_875_123, 10_000, 1])
            rows.append(
                (symbol, t, price, price + rng.randrange(0, 300), max(1, price - 5), price,
                 rng.randrange(0, 10**7), rng.randrange(1, 999),
                 price * 10_000 + rng.choice([0, 1, 5_000, 12_345_678, 99_990_000]))
            )  # fmt: skip
            t += timedelta(minutes=rng.choice([1, 5, 60 * 20]))
    return rows


def odd_rows() -> list[Row]:
    """What the plant never stores but the encoders must still write exactly: negative
    prices, fractions of a second, 1970, and a symbol with a comma and a quote."""
    t0 = datetime(1970, 1, 1, tzinfo=UTC)
    return [
        ("A,B", t0, -5_000, 0, -12_345, 1, 0, 1, -123_456_789),
        ("A,B", t0 + timedelta(seconds=59, microseconds=5), 10_000, 10_001, 9_999, 10_000,
         7, 2, 100_000_000),
        ('Q"X', datetime(2024, 3, 10, 7, 0, 1, 500_000, tzinfo=UTC), 1, 2, 1, 2, 3, 4, 5),
    ]  # fmt: skip


def test_json_of_stored_bars_equals_the_row_by_row_encoding_byte_for_byte():
    """2,100 plant-like bars of three symbols over a year end: identical JSON bytes, with
    and without a next page token."""
    rows = plant_rows(7)
    frame = page_frame(*page_arrays(rows))
    assert frame.height == 2_100
    assert json_body(frame, None) == reference_json(rows, None)
    assert json_body(frame, "abc") == reference_json(rows, "abc")


def test_json_and_csv_of_unusual_values_equal_the_row_by_row_encoding():
    """Negative prices, sub-second times, the epoch, a symbol needing quotes: same bytes."""
    rows = odd_rows()
    frame = page_frame(*page_arrays(rows))
    assert json_body(frame, None) == reference_json(rows, None)
    assert csv_body(frame) == reference_csv(rows)
    assert json_body(frame, None).startswith(
        b'{"bars":{"A,B":[{"t":"1970-01-01T00:00:00Z","o":-0.5,"h":0,"l":-1.2345,"c":0.0001,'
        b'"v":0,"n":1,"vw":-1.23456789},{"t":"1970-01-01T00:00:59.000005Z","o":1,'
    )


def test_csv_of_stored_bars_equals_the_row_by_row_encoding():
    rows = plant_rows(11)
    assert csv_body(page_frame(*page_arrays(rows))) == reference_csv(rows)


def test_an_empty_page_is_an_empty_bars_object_and_a_header_only_csv():
    for symbols in (None, []):
        frame = page_frame(symbols, (None,) * 8)
        assert json_body(frame, None) == b'{"bars":{},"next_page_token":null}'
        assert csv_body(frame) == b"symbol,t,o,h,l,c,v,n,vw\n"
        assert bars_table(frame).num_rows == 0


def test_arrow_holds_the_stored_integers_as_exact_decimals():
    rows = odd_rows()
    table = bars_table(page_frame(*page_arrays(rows)))
    assert table.schema.field("o").type == pa.decimal128(18, 4)
    assert table.schema.field("vw").type == pa.decimal128(18, 8)
    assert table.schema.field("t").type == pa.timestamp("ns", tz="UTC")
    assert table["symbol"].to_pylist() == ["A,B", "A,B", 'Q"X']
    assert table["o"].to_pylist() == [Decimal("-0.5"), Decimal("1"), Decimal("0.0001")]
    assert table["vw"].to_pylist() == [
        Decimal("-1.23456789"),
        Decimal("1.00000000"),
        Decimal("5E-8"),
    ]
    assert pl.from_arrow(table)["t"].to_list() == [r[1] for r in rows]


def test_a_column_that_is_not_the_expected_array_raises_with_its_header():
    """A column with a NULL, a column of another length, or a missing column is refused."""
    symbols, columns = page_arrays(odd_rows())
    with_null = bytearray(columns[2])
    with_null[7] = 1  # the has-nulls flag
    for broken, header in (
        (bytes(with_null), (1, 1, 20, 3, 1)),
        (columns[2][:-12], (1, 0, 20, 3, 1)),
        (None, None),
    ):
        with pytest.raises(PageArrayError) as refused:
            page_frame(symbols, (columns[0], columns[1], broken, *columns[3:]))
        assert (refused.value.rows, refused.value.header) == (3, header)


def test_a_one_symbol_page_given_as_symbol_and_count_reads_as_the_per_row_form():
    """``("MSFT", rows)`` stands for the symbol of every row: the same frame and JSON."""
    rows = [r for r in plant_rows(3) if r[0] == "MSFT"]
    symbols, columns = page_arrays(rows)
    frame = page_frame(("MSFT", len(rows)), columns)
    assert frame.equals(page_frame(symbols, columns))
    assert json_body(frame, None) == reference_json(rows, None)
    assert page_frame(("MSFT", 0), (None,) * 8).height == 0
