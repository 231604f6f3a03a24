"""``tickerplant normalize-file``: a whole ITCH file to Parquet trades and quotes for quants.

The same code path as the live plant: messages go through the same normalizer and come out
as the same Protobuf events that the plant publishes; here they are written to columns
instead of the bus. Sequence numbers are the message's position in the file (from 1), as
if the file were one MoldUDP64 session. Prices are exact decimals (4 places, dollars).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from normalize.fast import FastNormalizer, make_normalizer
from normalize.itchfile import iter_messages
from normalize.normalizer import NormalizedEvent, Normalizer
from normalize.proto import marketdata_pb2 as pb
from normalize.session import midnight_ns
from tickerplant.topics import MD_QUOTES, MD_TRADES

logger = logging.getLogger(__name__)

PRICE = pa.decimal128(18, 4)
_SIDES = {pb.SIDE_BUY: "B", pb.SIDE_SELL: "S"}
_TRADE_KINDS = {
    value.number: value.name.removeprefix("TRADE_KIND_").lower()
    for value in pb.TradeKind.DESCRIPTOR.values
}

TRADES_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("exchange_ts_ns", pa.int64()),
        ("price", PRICE),
        ("size", pa.uint64()),
        ("side", pa.string()),
        ("kind", pa.string()),
        ("match_number", pa.uint64()),
        ("seq", pa.uint64()),
    ]
)
QUOTES_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("exchange_ts_ns", pa.int64()),
        ("bid_price", PRICE),
        ("bid_size", pa.uint64()),
        ("ask_price", PRICE),
        ("ask_size", pa.uint64()),
        ("seq", pa.uint64()),
    ]
)


def scaled_decimal(values: list[int]) -> pa.Array:
    """Integers with 4 implied decimals as an exact ``decimal128(18, 4)`` array.

    Casting to a scale-0 decimal and reading the same buffer with scale 4 reinterprets
    the unscaled integer, which is exactly what an implied-decimal price is.
    """
    unscaled = pc.cast(pa.array(values, pa.int64()), pa.decimal128(19, 0))
    return pa.Array.from_buffers(PRICE, len(unscaled), unscaled.buffers(), offset=unscaled.offset)


@dataclass
class _Columns:
    schema: pa.Schema
    data: dict[str, list] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = {name: [] for name in self.schema.names}

    def __len__(self) -> int:
        return len(self.data["seq"])

    def table(self, price_columns: tuple[str, ...]) -> pa.Table:
        arrays = [
            scaled_decimal(self.data[name])
            if name in price_columns
            else pa.array(self.data[name], self.schema.field(name).type)
            for name in self.schema.names
        ]
        for values in self.data.values():
            values.clear()
        return pa.Table.from_arrays(arrays, schema=self.schema)


@dataclass(frozen=True)
class ConversionStats:
    messages: int
    trades: int
    quotes: int


def normalize_file(
    path: Path,
    out_dir: Path,
    *,
    session_date: date,
    normalizer: Normalizer | FastNormalizer | None = None,
    row_group_size: int = 1_000_000,
) -> ConversionStats:
    """Normalize every message of ``path`` into ``out_dir``: trades.parquet, quotes.parquet."""
    out_dir.mkdir(parents=True, exist_ok=True)
    normalizer = normalizer or make_normalizer(midnight_ns=midnight_ns(session_date))
    trades = _Columns(TRADES_SCHEMA)
    quotes = _Columns(QUOTES_SCHEMA)
    counts = {"messages": 0, "trades": 0, "quotes": 0}
    with (
        pq.ParquetWriter(out_dir / "trades.parquet", TRADES_SCHEMA, compression="zstd") as tw,
        pq.ParquetWriter(out_dir / "quotes.parquet", QUOTES_SCHEMA, compression="zstd") as qw,
    ):

        def flush(final: bool = False) -> None:
            _collect(normalizer.take_events(publish_ts_ns=0), trades, quotes, counts)
            if len(trades) and (final or len(trades) >= row_group_size):
                tw.write_table(trades.table(("price",)))
            if len(quotes) and (final or len(quotes) >= row_group_size):
                qw.write_table(quotes.table(("bid_price", "ask_price")))

        seq = 0
        for seq, message in enumerate(iter_messages(path), start=1):
            normalizer.process(message, seq=seq, receive_ts_ns=0)
            if seq % 65_536 == 0:
                flush()
        flush(final=True)
        counts["messages"] = seq
    logger.info(
        "normalized %d messages: %d trades, %d quotes", seq, counts["trades"], counts["quotes"]
    )
    return ConversionStats(**counts)


def _collect(
    events: list[NormalizedEvent], trades: _Columns, quotes: _Columns, counts: dict[str, int]
) -> None:
    t, q = trades.data, quotes.data
    for event in events:
        if event.topic == MD_TRADES:
            trade = pb.Trade.FromString(event.payload)
            t["symbol"].append(trade.symbol)
            t["exchange_ts_ns"].append(trade.exchange_ts_ns)
            t["price"].append(trade.price)
            t["size"].append(trade.size)
            t["side"].append(_SIDES.get(trade.side))
            t["kind"].append(_TRADE_KINDS[trade.kind])
            t["match_number"].append(trade.match_number)
            t["seq"].append(trade.seq)
            counts["trades"] += 1
        elif event.topic == MD_QUOTES:
            quote = pb.Quote.FromString(event.payload)
            q["symbol"].append(quote.symbol)
            q["exchange_ts_ns"].append(quote.exchange_ts_ns)
            q["bid_price"].append(quote.bid_price)
            q["bid_size"].append(quote.bid_size)
            q["ask_price"].append(quote.ask_price)
            q["ask_size"].append(quote.ask_size)
            q["seq"].append(quote.seq)
            counts["quotes"] += 1
