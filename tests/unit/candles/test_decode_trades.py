"""``normalize._fastcore.decode_trades`` against the protobuf parser, and what the dataflow's
parse step does with a record that is not an EventBatch.

The differential tests build EventBatch wire bytes field by field (any order, repeated and
unknown fields of every wire type, groups, overlong varints, known fields with another wire
type, strings that are not UTF-8), mutate them (cut, flip, insert) and require the C parser
to return exactly what ``pb.EventBatch.FromString`` gives — or reject exactly when it does.
"""

from __future__ import annotations

import logging

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from candles.dataflow import parse_batch, parse_trades
from normalize._fastcore import decode_trades
from normalize.proto import marketdata_pb2 as pb
from tickerplant.bus import Record

U64 = st.integers(0, 2**64 - 1)
I64 = st.integers(-(2**63), 2**63 - 1)
I32 = st.integers(-(2**31), 2**31 - 1)


def reference(buf: bytes) -> tuple[str, list[tuple]] | None:
    """What the dataflow built before decode_trades; None when protobuf rejects ``buf``."""
    try:
        batch = pb.EventBatch.FromString(buf)
    except DecodeError:
        return None
    trades = [
        (t.exchange_ts_ns, t.seq, t.price, t.size, t.match_number, t.kind == pb.TRADE_KIND_BROKEN)
        for t in [e.trade for e in batch.events if e.WhichOneof("payload") == "trade"]
    ]
    return batch.symbol, trades


def compiled(buf: bytes) -> tuple[str, list[tuple]] | None:
    try:
        return decode_trades(buf)
    except ValueError:
        return None


# -- a small wire encoder ----------------------------------------------------------------------


def varint(v: int, extra: int = 0) -> bytes:
    """``v`` (taken modulo 2**64) as a varint, padded with ``extra`` overlong bytes (≤ 10)."""
    v &= 2**64 - 1
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    extra = min(extra, 10 - len(out))
    if extra > 0:
        out[-1] |= 0x80
        out += b"\x80" * (extra - 1) + b"\x00"
    return bytes(out)


def tag(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def length_delimited(field: int, payload: bytes) -> bytes:
    return tag(field, 2) + varint(len(payload)) + payload


strings = st.integers(0, 9).flatmap(
    lambda i: st.text(max_size=8).map(str.encode) if i < 8 else st.one_of(
        st.binary(max_size=6),  # mostly not UTF-8
        st.sampled_from([b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82",
                         b"\xf0\x9f\x98\x80", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf"]),
    )
)  # fmt: skip
"""Mostly valid UTF-8; sometimes bytes protobuf refuses as a string (overlong, surrogate,
past U+10FFFF, cut) or accepts at the edges."""


@st.composite
def unknown_field(draw: st.DrawFn, field: st.SearchStrategy[int], depth: int = 2) -> bytes:
    """One field of any wire type with a well-formed value (a group holds more fields)."""
    number = draw(field)
    wire_type = draw(st.sampled_from([0, 1, 2, 3, 5] if depth > 0 else [0, 1, 2, 5]))
    if wire_type == 0:
        return tag(number, 0) + varint(draw(U64), draw(st.integers(0, 2)))
    if wire_type == 1:
        return tag(number, 1) + draw(st.binary(min_size=8, max_size=8))
    if wire_type == 5:
        return tag(number, 5) + draw(st.binary(min_size=4, max_size=4))
    if wire_type == 2:
        return length_delimited(number, draw(st.binary(max_size=12)))
    inner = draw(st.lists(unknown_field(field, depth - 1), max_size=3))
    return tag(number, 3) + b"".join(inner) + tag(number, 4)


def any_field_number() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(1, 20), st.integers(1, 2**29 - 1))


@st.composite
def scalar_message(draw: st.DrawFn, fields: range, string_fields: set[int]) -> bytes:
    """A flat message: its known fields (strings or varints, sometimes another wire type)
    and unknown ones, in any order and repeated."""
    parts = []
    for _ in range(draw(st.integers(0, 8))):
        choice = draw(st.integers(0, 9))
        if choice < 7:
            number = draw(st.sampled_from(fields))
            if number in string_fields:
                parts.append(length_delimited(number, draw(strings)))
            else:
                value = draw(st.one_of(U64, I64, I32, st.integers(0, 300)))
                parts.append(tag(number, 0) + varint(value, draw(st.integers(0, 1))))
        elif choice < 9:
            parts.append(draw(unknown_field(any_field_number())))
        else:  # a known field with another wire type: protobuf keeps it as unknown
            number = draw(st.sampled_from(fields))
            parts.append(draw(unknown_field(st.just(number))))
    return b"".join(parts)


trade_message = scalar_message(range(1, 13), {1, 11, 12})
other_payloads = {
    2: scalar_message(range(1, 11), {1, 10}),  # Quote
    3: scalar_message(range(1, 11), {1, 7, 8, 10}),  # Status
    4: scalar_message(range(1, 16), {1}),  # Bar
}


@st.composite
def trade_kind_field(draw: st.DrawFn) -> bytes:
    """Trade.kind, often TRADE_KIND_BROKEN (also as 5 + k * 2**32: an int32 keeps 5)."""
    kind = draw(st.sampled_from([5, 1, 5 + 2**32, 2**64 - 1, 2**32 + 1]))
    return tag(10, 0) + varint(kind)


@st.composite
def event_message(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        choice = draw(st.integers(0, 9))
        if choice < 5:
            body = draw(trade_message)
            if draw(st.booleans()):
                body += draw(trade_kind_field())
            parts.append(length_delimited(1, body))
        elif choice < 8:
            number = draw(st.sampled_from([2, 3, 4]))
            parts.append(length_delimited(number, draw(other_payloads[number])))
        else:
            parts.append(draw(unknown_field(any_field_number())))
    return b"".join(parts)


@st.composite
def batch_wire(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        choice = draw(st.integers(0, 9))
        if choice < 2:
            parts.append(length_delimited(1, draw(strings)))
        elif choice < 8:
            parts.append(length_delimited(2, draw(event_message())))
        else:
            parts.append(draw(unknown_field(any_field_number())))
    return b"".join(parts)


@st.composite
def batch_from_protobuf(draw: st.DrawFn) -> bytes:
    """Batches as upb serializes them (the normalizer's C writer writes the same bytes)."""
    events = []
    for _ in range(draw(st.integers(0, 5))):
        payload = draw(st.sampled_from(["trade", "quote", "status", "bar", None]))
        if payload == "trade":
            trade = pb.Trade(
                symbol=draw(st.text(max_size=5)),
                exchange_ts_ns=draw(I64), seq=draw(U64), receive_ts_ns=draw(I64),
                publish_ts_ns=draw(I64), price=draw(I64), size=draw(U64), side=draw(I32),
                match_number=draw(U64), kind=draw(st.one_of(st.just(5), I32)),
                cross_type=draw(st.text(max_size=2)), session=draw(st.text(max_size=10)),
            )  # fmt: skip
            events.append(pb.Event(trade=trade))
        elif payload == "quote":
            quote = pb.Quote(
                symbol=draw(st.text(max_size=5)), bid_price=draw(I64), ask_size=draw(U64)
            )
            events.append(pb.Event(quote=quote))
        elif payload == "status":
            status = pb.Status(reason=draw(st.text(max_size=5)), halted=draw(st.booleans()))
            events.append(pb.Event(status=status))
        elif payload == "bar":
            events.append(pb.Event(bar=pb.Bar(symbol=draw(st.text(max_size=5)), vwap_e8=draw(I64))))
        else:
            events.append(pb.Event())
    batch = pb.EventBatch(symbol=draw(st.text(max_size=8)), events=events)
    return batch.SerializeToString() + b"".join(
        draw(st.lists(unknown_field(st.integers(3, 2**29 - 1)), max_size=2))
    )


@st.composite
def mutated(draw: st.DrawFn, source: st.SearchStrategy[bytes]) -> bytes:
    """Cut, flip a byte, or insert bytes somewhere: mostly malformed input."""
    buf = draw(source)
    how = draw(st.sampled_from(["cut", "flip", "insert"]))
    at = draw(st.integers(0, len(buf)))
    if how == "cut":
        return buf[:at]
    if how == "flip" and at < len(buf):
        return buf[:at] + bytes([buf[at] ^ draw(st.integers(1, 255))]) + buf[at + 1 :]
    return buf[:at] + draw(st.binary(min_size=1, max_size=4)) + buf[at:]


# -- the differential tests ----------------------------------------------------------------------

EXAMPLES = 2000
differential = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@differential
@given(batch_from_protobuf())
def test_serialized_batches_decode_to_the_trades_protobuf_reads(buf: bytes) -> None:
    """Every batch protobuf serializes (plus unknown fields) decodes to protobuf's trades."""
    expected = reference(buf)
    assert expected is not None
    assert decode_trades(buf) == expected


@differential
@given(batch_wire())
def test_hand_encoded_batches_decode_or_fail_exactly_as_protobuf_does(buf: bytes) -> None:
    """Fields in any order, repeated, unknown, groups, overlong varints, wrong wire types,
    strings that are not UTF-8: same trades, or both reject."""
    assert compiled(buf) == reference(buf)


@differential
@given(mutated(st.one_of(batch_wire(), batch_from_protobuf())))
@example(b"\x12\x05\x0a\x03\x30\x07")  # an event's length runs past the end
@example(b"\x12\x02\x0a\x05")  # the trade's length runs past the event
# upb takes a field-number-0 tag (and its varint) inside a skipped group, not elsewhere
@example(b"\t" + bytes(8) + b"\x0b\x08" + bytes(8) + b"\t" + bytes(8) + b"\x0c")
@example(b"\x0b\x08\x00\x00\x00\x00\x0c")
@example(b"\x0b\x00\x0c")
def test_damaged_batches_are_rejected_exactly_when_protobuf_rejects_them(buf: bytes) -> None:
    assert compiled(buf) == reference(buf)


@differential
@given(st.binary(max_size=40))
def test_random_bytes_are_rejected_exactly_when_protobuf_rejects_them(buf: bytes) -> None:
    assert compiled(buf) == reference(buf)


@pytest.mark.parametrize("depth", [1, 97, 98, 99, 100, 101, 200])
def test_nested_groups_are_accepted_to_the_depth_protobuf_accepts(depth: int) -> None:
    """Groups nest up to 100 levels counting the Event and the Trade around them."""
    groups = tag(5, 3) * depth + tag(5, 4) * depth
    for buf in (
        groups,
        length_delimited(2, groups),
        length_delimited(2, length_delimited(1, groups)),
    ):
        assert compiled(buf) == reference(buf)
    assert (compiled(groups) is None) == (depth > 100)


# -- exact values and messages ---------------------------------------------------------------------


def test_a_batch_gives_its_symbol_and_each_trade_in_order_skipping_other_payloads() -> None:
    batch = pb.EventBatch(
        symbol="AAPL",
        events=[
            pb.Event(trade=pb.Trade(exchange_ts_ns=-4, seq=9, price=1_875_000, size=100,
                                    match_number=2**64 - 1, kind=pb.TRADE_KIND_EXECUTION)),
            pb.Event(quote=pb.Quote(bid_price=1)),
            pb.Event(trade=pb.Trade(seq=10, match_number=7, kind=pb.TRADE_KIND_BROKEN)),
            pb.Event(),
        ],
    )  # fmt: skip
    assert decode_trades(batch.SerializeToString()) == (
        "AAPL",
        [(-4, 9, 1_875_000, 100, 2**64 - 1, False), (0, 10, 0, 0, 7, True)],
    )
    assert decode_trades(b"") == ("", [])
    assert decode_trades(bytearray(batch.SerializeToString()))[0] == "AAPL"


@pytest.mark.parametrize(
    ("buf", "message"),
    [
        (b"\x12", "truncated varint at byte 1 of 1"),
        (b"\x12\x05\x0a", "length past the end of the buffer at byte 1 of 3"),
        (b"\x0a\x01\xff", "string field is not valid UTF-8 at byte 2 of 3"),
        (b"\x2c", "END_GROUP outside a group at byte 1 of 1"),
        (b"\x2b\x34", "END_GROUP of another field at byte 1 of 2"),
        (b"\x2b", "group without END_GROUP at byte 1 of 1"),
        (b"\x2e", "invalid wire type at byte 1 of 1"),
        (b"\x00", "field number 0 at byte 0 of 1"),
        (b"\x88\x80\x80\x80\x10\x00", "tag longer than 32 bits at byte 0 of 6"),
        (b"\x08" + b"\xff" * 10 + b"\x01", "varint longer than 10 bytes at byte 1 of 12"),
        (b"\x29\x00\x00", "truncated fixed64 at byte 1 of 3"),
        (b"\x2d\x00", "truncated fixed32 at byte 1 of 2"),
    ],
)
def test_malformed_input_raises_a_value_error_saying_what_and_where(buf: bytes, message: str):
    with pytest.raises(ValueError) as raised:
        decode_trades(buf)
    assert str(raised.value) == f"not an EventBatch: {message}"
    assert reference(buf) is None


def test_a_non_buffer_argument_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        decode_trades("AAPL")  # type: ignore[arg-type]


def _trades_record(offset: int, symbol: str, price: int) -> Record:
    batch = pb.EventBatch(symbol=symbol, events=[pb.Event(trade=pb.Trade(seq=offset, price=price))])
    return Record("md.trades", 2, offset, symbol.encode(), batch.SerializeToString(), 0)


def test_the_parse_step_skips_undecodable_records_with_one_warning_per_batch(caplog) -> None:
    """Two damaged records among three: the good one's trade, one warning with the count."""
    records = [
        Record("md.trades", 2, 40, b"AAA", b"\x12\x05\x0a", 0),
        _trades_record(41, "BBB", 100),
        Record("md.trades", 2, 42, b"CCC", b"\xff", 0),
    ]
    with caplog.at_level(logging.WARNING, logger="candles.dataflow"):
        assert parse_batch(records) == [("BBB", ("BBB", [(0, 41, 100, 0, 0, False)]))]
        assert parse_trades(records[0]) == []
    assert [r.getMessage() for r in caplog.records] == [
        "skipped 2 undecodable md.trades records of 3 (first: partition 2 offset 40)",
        "skipped 1 undecodable md.trades records of 1 (first: partition 2 offset 40)",
    ]


def test_a_batch_without_a_symbol_takes_the_record_key() -> None:
    batch = pb.EventBatch(events=[pb.Event(trade=pb.Trade(seq=1, price=5))])
    record = Record("md.trades", 0, 0, b"ZZZ", batch.SerializeToString(), 0)
    assert parse_trades(record) == [("ZZZ", ("ZZZ", [(0, 1, 5, 0, 0, False)]))]
