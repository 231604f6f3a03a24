"""Realistic trades (simulator → normalizer) and independent Polars bars to compare with."""

from __future__ import annotations

import functools
from datetime import date
from pathlib import Path

import polars as pl

from exchange_sim.service import write_file
from normalize.fast import make_normalizer
from normalize.itchfile import iter_messages
from normalize.proto import marketdata_pb2 as pb
from normalize.session import midnight_ns
from tickerplant.topics import MD_TRADES

SESSION_DATE = date(2024, 3, 1)


@functools.cache
def simulated_records(
    tmp_dir: str, *, symbols: int = 8, seed: int = 7, messages: int = 150_000
) -> tuple[tuple[bytes, bytes], ...]:
    """``md.trades`` records ``(key, value)`` of a simulated session, as the plant publishes."""
    path = Path(tmp_dir) / f"sim-{symbols}-{seed}-{messages}.itch"
    # No opening burst: the messages spread over several minutes of exchange time.
    write_file(path, symbols=symbols, seed=seed, messages=messages, burst_multiplier=1.0)
    normalizer = make_normalizer(midnight_ns=midnight_ns(SESSION_DATE))
    out: list[tuple[bytes, bytes]] = []
    for seq, message in enumerate(iter_messages(path), start=1):
        normalizer.process(message, seq=seq, receive_ts_ns=0)
        if seq % 1000 == 0:
            out.extend(
                (k, v) for t, k, v in normalizer.take_records(publish_ts_ns=0) if t == MD_TRADES
            )
    out.extend((k, v) for t, k, v in normalizer.take_records(publish_ts_ns=0) if t == MD_TRADES)
    return tuple(out)


def trades_frame(records: tuple[tuple[bytes, bytes], ...]) -> pl.DataFrame:
    """Every trade of the records (broken ones and the trades they cancel removed)."""
    rows: dict[str, list] = {k: [] for k in ("symbol", "ts", "seq", "price", "size", "match")}
    broken: set[tuple[str, int]] = set()
    for _, value in records:
        batch = pb.EventBatch.FromString(value)
        for event in batch.events:
            t = event.trade
            if t.kind == pb.TRADE_KIND_BROKEN:
                broken.add((t.symbol, t.match_number))
                continue
            for name, v in zip(  # noqa: B905 - equal lengths by construction
                rows, (t.symbol, t.exchange_ts_ns, t.seq, t.price, t.size, t.match_number)
            ):
                rows[name].append(v)
    frame = pl.DataFrame(
        rows,
        schema={
            "symbol": pl.String,
            "ts": pl.Int64,
            "seq": pl.Int64,
            "price": pl.Int64,
            "size": pl.Int64,
            "match": pl.Int64,
        },
    )
    if broken:
        gone = pl.DataFrame(
            {"symbol": [s for s, _ in broken], "match": [m for _, m in broken]},
            schema={"symbol": pl.String, "match": pl.Int64},
        )
        frame = frame.join(gone, on=["symbol", "match"], how="anti")
    return frame


def polars_bars(
    trades: pl.DataFrame, every: str
) -> list[tuple[str, int, int, int, int, int, int, int, int]]:
    """Bars by ``group_by_dynamic``: (symbol, start_ns, o, h, l, c, volume, count, vwap_e8)."""
    frame = (
        trades.with_columns(pl.from_epoch("ts", time_unit="ns").alias("time"))
        .sort("symbol", "ts", "seq")
        .group_by_dynamic("time", every=every, group_by="symbol", closed="left", label="left")
        .agg(
            pl.col("price").first().alias("o"),
            pl.col("price").max().alias("h"),
            pl.col("price").min().alias("l"),
            pl.col("price").last().alias("c"),
            pl.col("size").sum().alias("v"),
            pl.len().alias("n"),
            (pl.col("price") * pl.col("size")).sum().alias("notional"),
        )
        .sort("symbol", "time")
    )
    columns = ("symbol", pl.col("time").dt.epoch("ns"), "o", "h", "l", "c", "v", "n", "notional")
    return [
        (s, t, o, h, lo, c, v, n, (notional * 20_000 + v) // (2 * v))
        for s, t, o, h, lo, c, v, n, notional in frame.select(*columns).iter_rows()
    ]
