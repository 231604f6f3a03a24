"""Normalized events built by hand, as ingest publishes them (prices with 4 implied decimals)."""

from __future__ import annotations

from normalize.proto import marketdata_pb2 as pb

BASE_NS = 1_732_113_000_000_000_000  # 2024-11-20T14:30:00Z


def trade(symbol: str, seq: int, *, price: int = 1_000_000, size: int = 100) -> pb.Event:
    return pb.Event(
        trade=pb.Trade(
            symbol=symbol,
            seq=seq,
            exchange_ts_ns=BASE_NS + seq,
            publish_ts_ns=BASE_NS + seq,
            price=price,
            size=size,
        )
    )


def quote(symbol: str, seq: int, *, bid: int = 999_900, ask: int = 1_000_100) -> pb.Event:
    return pb.Event(
        quote=pb.Quote(
            symbol=symbol,
            seq=seq,
            exchange_ts_ns=BASE_NS + seq,
            publish_ts_ns=BASE_NS + seq,
            bid_price=bid,
            bid_size=100,
            ask_price=ask,
            ask_size=200,
        )
    )


def status(symbol: str, seq: int, *, code: str = "T", halted: bool = False) -> pb.Event:
    return pb.Event(
        status=pb.Status(
            symbol=symbol,
            seq=seq,
            exchange_ts_ns=BASE_NS + seq,
            kind=pb.STATUS_KIND_TRADING_ACTION,
            code=code,
            halted=halted,
        )
    )


def bar(symbol: str, seq: int, *, start_ns: int, close: int = 1_000_000) -> pb.Event:
    return pb.Event(
        bar=pb.Bar(
            symbol=symbol,
            seq=seq,
            start_ts_ns=start_ns,
            end_ts_ns=start_ns + 60_000_000_000,
            open=close,
            high=close,
            low=close,
            close=close,
            volume=100,
            trade_count=1,
        )
    )


def record(symbol: str, *events: pb.Event) -> tuple[bytes, bytes]:
    """A bus record: key = symbol, value = an ``EventBatch``."""
    return symbol.encode(), pb.EventBatch(symbol=symbol, events=list(events)).SerializeToString()
