"""The normalized market-data schema and its generated code."""

from __future__ import annotations

import pytest

from normalize.proto import marketdata_pb2 as pb
from normalize.proto.generate import stale_files

COMMON_FIELDS = ("symbol", "exchange_ts_ns", "seq", "receive_ts_ns", "publish_ts_ns")


def test_generated_code_matches_the_schema():
    """protoc (pinned grpcio-tools) run now produces exactly the committed *_pb2 files."""
    assert stale_files() == []


@pytest.mark.parametrize("message", [pb.Trade, pb.Quote, pb.Status, pb.Bar])
def test_every_event_carries_symbol_times_and_feed_sequence(message):
    """Trade, Quote, Status and Bar each have the symbol, three ns timestamps and seq."""
    names = {field.name for field in message.DESCRIPTOR.fields}
    assert set(COMMON_FIELDS) <= names


def test_an_event_batch_round_trips_through_bytes_with_every_value_intact():
    """A batch of one trade, one quote and one status decodes to the same values."""
    batch = pb.EventBatch(symbol="AAPL")
    batch.events.add().trade.CopyFrom(
        pb.Trade(
            symbol="AAPL",
            exchange_ts_ns=1_732_000_000_123_456_789,
            seq=42,
            receive_ts_ns=1_732_000_000_123_500_000,
            publish_ts_ns=1_732_000_000_123_600_000,
            price=1_912_500,
            size=300,
            side=pb.SIDE_SELL,
            match_number=987_654,
            kind=pb.TRADE_KIND_EXECUTION,
        )
    )
    batch.events.add().quote.CopyFrom(
        pb.Quote(symbol="AAPL", seq=43, bid_price=1_912_400, bid_size=500, ask_price=1_912_600)
    )
    batch.events.add().status.CopyFrom(
        pb.Status(symbol="AAPL", seq=44, kind=pb.STATUS_KIND_TRADING_ACTION, code="H", halted=True)
    )

    decoded = pb.EventBatch.FromString(batch.SerializeToString())

    assert decoded == batch
    assert [event.WhichOneof("payload") for event in decoded.events] == [
        "trade",
        "quote",
        "status",
    ]
    trade = decoded.events[0].trade
    assert (trade.price, trade.size, trade.seq, trade.exchange_ts_ns) == (
        1_912_500,
        300,
        42,
        1_732_000_000_123_456_789,
    )
    assert decoded.events[1].quote.ask_size == 0
    assert decoded.events[2].status.halted is True
