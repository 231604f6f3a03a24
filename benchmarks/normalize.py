"""Decode + per-symbol order books + normalized events ready to publish, on one core.

The product target: normalize NASDAQ TotalView-ITCH 5.0 at >= 2,000,000 messages/s on one
core, and more than 3x a straightforward pure-Python book. Peers, all on the same cached
simulated file (``benchmarks/itch_input.py``), each with fresh state per run:

- ``FastNormalizer`` (C, this project): ``process_framed`` over frame-aligned chunks of the
  file and ``take_records`` after each chunk, i.e. serialized Protobuf ``EventBatch`` records
  per (topic, symbol), ready for ``Bus.publish_many``. Two cadences: 64 KiB file chunks, and
  1,400-byte chunks (a MoldUDP64 datagram's worth of message blocks, one take per packet);
  The same with ``process_messages`` (a packet's messages as a list of ``bytes``, what
  ``GapRecoverer`` delivers) and with one ``process`` call per message, which shows what the
  Python call per message costs;
- ``itchcpp`` (C++, PyPI) ``BookManager.process_stream``: its native book engine over the
  whole buffer; it builds the books of every symbol but emits no events at all;
- a straightforward pure-Python book (below, ~80 lines): ``struct`` decoding, a dict of
  orders, per-symbol dicts of price -> size with sorted price lists (``bisect``); BBO changes
  and trades as tuples (not serialized);
- ``Normalizer``, the project's Python reference (the oracle FastNormalizer is tested
  against): per-message ``process`` and ``batch_records(take_events())`` per 64 KiB chunk.

The per-message peers get their messages pre-split into ``bytes`` outside the timed region
(which flatters them a little); FastNormalizer's time includes its framing.

Run: ``.venv/bin/python benchmarks/normalize.py [--messages N] [--runs N]``
"""

from __future__ import annotations

import argparse
import struct
import sys
from bisect import bisect_left, insort
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, this folder heads sys.path, and this very file would shadow the
    # normalize package: put the repository root there instead.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.itch_input import (
    CHUNK_BYTES,
    DEFAULT_MESSAGES,
    PACKET_BYTES,
    frame_chunks,
    itch_file,
    machine,
    median_seconds,
    pin_to_one_core,
    split_messages,
)
from normalize.fast import FastNormalizer, decode_framed
from normalize.normalizer import Normalizer, batch_records

TARGET_RATE = 2_000_000
TARGET_RATIO = 3.0
MIDNIGHT_NS = 1_732_060_800_000_000_000


# ------------------------------------------------------------ the straightforward book


class StraightforwardBook:
    """What a competent first pure-Python ITCH book looks like: the baseline peer.

    ``events`` collects ``("Q", locate, bid, bid_size, ask, ask_size)`` when a symbol's BBO
    changes and ``("T", locate, price, shares, match)`` for each execution and trade.
    """

    def __init__(self) -> None:
        self.orders: dict[int, list] = {}  # ref -> [locate, is_buy, price, shares]
        self.books: dict[int, tuple[dict, list, dict, list]] = {}  # bids, bid prices, asks, …
        self.bbo: dict[int, tuple[int, int, int, int]] = {}
        self.symbols: dict[int, bytes] = {}
        self.events: list[tuple] = []
        self.handlers = {
            ord("R"): self.directory,
            ord("A"): self.add,
            ord("F"): self.add,
            ord("E"): self.executed,
            ord("C"): self.executed_with_price,
            ord("X"): self.cancel,
            ord("D"): self.delete,
            ord("U"): self.replace,
            ord("P"): self.trade,
        }

    def process(self, message: bytes) -> None:
        handler = self.handlers.get(message[0])
        if handler is not None:
            handler(message)

    def directory(self, m: bytes, _unpack=struct.Struct(">xH8x8s").unpack_from) -> None:
        locate, stock = _unpack(m)
        self.symbols[locate] = stock.rstrip()
        self.books[locate] = ({}, [], {}, [])
        self.bbo[locate] = (0, 0, 0, 0)

    def add(self, m: bytes, _unpack=struct.Struct(">xH8xQcI8xI").unpack_from) -> None:
        locate, ref, side, shares, price = _unpack(m)
        self.orders[ref] = [locate, side == b"B", price, shares]
        self.change(locate, side == b"B", price, shares)

    def executed(self, m: bytes, _unpack=struct.Struct(">xH8xQIQ").unpack_from) -> None:
        locate, ref, shares, match = _unpack(m)
        order = self.orders[ref]
        self.events.append(("T", locate, order[2], shares, match))
        self.reduce(ref, order, shares)

    def executed_with_price(self, m: bytes, _unpack=struct.Struct(">xH8xQIQcI").unpack_from):
        locate, ref, shares, match, printable, price = _unpack(m)
        order = self.orders[ref]
        if printable == b"Y":
            self.events.append(("T", locate, price, shares, match))
        self.reduce(ref, order, shares)

    def cancel(self, m: bytes, _unpack=struct.Struct(">xH8xQI").unpack_from) -> None:
        _, ref, shares = _unpack(m)
        self.reduce(ref, self.orders[ref], shares)

    def delete(self, m: bytes, _unpack=struct.Struct(">xH8xQ").unpack_from) -> None:
        _, ref = _unpack(m)
        order = self.orders[ref]
        self.reduce(ref, order, order[3])

    def replace(self, m: bytes, _unpack=struct.Struct(">xH8xQQII").unpack_from) -> None:
        locate, ref, new_ref, shares, price = _unpack(m)
        order = self.orders.pop(ref)
        self.change(locate, order[1], order[2], -order[3])
        self.orders[new_ref] = [locate, order[1], price, shares]
        self.change(locate, order[1], price, shares)

    def trade(self, m: bytes, _unpack=struct.Struct(">xH8x9xI8xIQ").unpack_from) -> None:
        locate, shares, price, match = _unpack(m)
        self.events.append(("T", locate, price, shares, match))

    def reduce(self, ref: int, order: list, shares: int) -> None:
        order[3] -= shares
        if order[3] == 0:
            del self.orders[ref]
        self.change(order[0], order[1], order[2], -shares)

    def change(self, locate: int, is_buy: bool, price: int, shares: int) -> None:
        bids, bid_prices, asks, ask_prices = self.books[locate]
        levels, prices = (bids, bid_prices) if is_buy else (asks, ask_prices)
        size = levels.get(price, 0) + shares
        if size:
            if price not in levels:
                insort(prices, price)
            levels[price] = size
        else:
            del levels[price]
            del prices[bisect_left(prices, price)]
        bid = bid_prices[-1] if bid_prices else 0
        ask = ask_prices[0] if ask_prices else 0
        bbo = (bid, bids.get(bid, 0), ask, asks.get(ask, 0))
        if bbo != self.bbo[locate]:
            self.bbo[locate] = bbo
            self.events.append(("Q", locate, *bbo))


# ----------------------------------------------------------------------------- the peers


def run_fast(chunks: list[memoryview]) -> tuple[int, int]:
    normalizer = FastNormalizer(midnight_ns=MIDNIGHT_NS, session="BENCH")
    seq = 1
    records = 0
    for chunk in chunks:
        seq += normalizer.process_framed(chunk, first_seq=seq, receive_ts_ns=seq)
        records += len(normalizer.take_records(publish_ts_ns=seq))
    stats = normalizer.stats
    return stats.trades + stats.quotes + stats.statuses, records


def run_fast_per_message(messages: list[bytes], per_chunk: list[int]) -> tuple[int, int]:
    normalizer = FastNormalizer(midnight_ns=MIDNIGHT_NS, session="BENCH")
    process = normalizer.process
    seq = 1
    records = 0
    position = 0
    for count in per_chunk:
        for message in messages[position : position + count]:
            process(message, seq=seq, receive_ts_ns=seq)
            seq += 1
        position += count
        records += len(normalizer.take_records(publish_ts_ns=seq))
    stats = normalizer.stats
    return stats.trades + stats.quotes + stats.statuses, records


def run_fast_messages(packets: list[list[bytes]]) -> tuple[int, int]:
    normalizer = FastNormalizer(midnight_ns=MIDNIGHT_NS, session="BENCH")
    seq = 1
    records = 0
    for packet in packets:
        seq += normalizer.process_messages(packet, first_seq=seq, receive_ts_ns=seq)
        records += len(normalizer.take_records(publish_ts_ns=seq))
    stats = normalizer.stats
    return stats.trades + stats.quotes + stats.statuses, records


def run_reference(messages: list[bytes], per_chunk: list[int]) -> tuple[int, int]:
    normalizer = Normalizer(midnight_ns=MIDNIGHT_NS, session="BENCH")
    process = normalizer.process
    seq = 1
    records = 0
    position = 0
    for count in per_chunk:
        for message in messages[position : position + count]:
            process(message, seq=seq, receive_ts_ns=seq)
            seq += 1
        position += count
        records += len(batch_records(normalizer.take_events(publish_ts_ns=seq)))
    stats = normalizer.stats
    return stats.trades + stats.quotes + stats.statuses, records


def run_straightforward(messages: list[bytes]) -> tuple[int, int]:
    book = StraightforwardBook()
    process = book.process
    for message in messages:
        process(message)
    return len(book.events), 0


def run_itchcpp(data: bytes) -> tuple[int, int]:
    from itchcpp.book import BookManager

    manager = BookManager()
    manager.process_stream(data)
    return 0, manager.book_count()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    pinned = pin_to_one_core()
    path = itch_file(args.messages)
    data = path.read_bytes()
    n = args.messages
    chunks = frame_chunks(data, CHUNK_BYTES)
    packets = frame_chunks(data, PACKET_BYTES)
    messages = split_messages(data)
    assert len(messages) == n
    # The reference takes its records at the same points as FastNormalizer's 64 KiB run.
    per_chunk = [decode_framed(chunk)[0] for chunk in chunks]
    # The same packets as lists of messages (what GapRecoverer delivers to the pipeline).
    packet_messages = []
    position = 0
    for packet in packets:
        count = decode_framed(packet)[0]
        packet_messages.append(messages[position : position + count])
        position += count

    peers = [
        ("FastNormalizer (C): 64 KiB chunks, take_records each", lambda: run_fast(chunks)),
        ("FastNormalizer (C): 1400 B packets, take_records each", lambda: run_fast(packets)),
        (
            "FastNormalizer (C): process_messages per packet",
            lambda: run_fast_messages(packet_messages),
        ),
        (
            "FastNormalizer (C): process() per message",
            lambda: run_fast_per_message(messages, per_chunk),
        ),
        ("itchcpp BookManager (C++): books only, no events", lambda: run_itchcpp(data)),
        ("straightforward pure-Python book: tuples", lambda: run_straightforward(messages)),
        (
            "Normalizer (Python reference): batch_records",
            lambda: run_reference(messages, per_chunk),
        ),
    ]
    print(
        "ITCH 5.0 normalize: decode + books + events ready to publish, "
        f"{n:,} messages ({path.name}, {len(data):,} bytes)"
    )
    print(f"median of {args.runs} runs, {pinned}; {machine()}")
    print()
    print(f"{'peer':<56} {'msgs/s':>10} {'median s':>9} {'vs baseline':>12}  output")
    results = {}
    for name, function in peers:
        outputs: list = []
        seconds, _ = median_seconds(lambda f=function, o=outputs: o.append(f()), args.runs)
        results[name] = (n / seconds, seconds, outputs[-1])
    baseline = results[peers[5][0]][0]
    for name, (rate, seconds, (events, extra)) in results.items():
        if name.startswith("itchcpp"):
            output = f"{extra:,} books"
        elif name.startswith("straightforward"):
            output = f"{events:,} tuples"
        else:
            output = f"{events:,} events in {extra:,} records"
        ratio = f"{rate / baseline:.1f}x"
        print(f"{name:<56} {rate / 1e6:>8.2f} M {seconds:>9.3f} {ratio:>12}  {output}")

    fast_rate = results[peers[0][0]][0]
    packet_rate = results[peers[1][0]][0]
    print()
    verdict = "PASS" if fast_rate >= TARGET_RATE else "FAIL"
    print(
        f"target {TARGET_RATE / 1e6:.1f} M msgs/s on one core: {verdict} "
        f"(FastNormalizer {fast_rate / 1e6:.2f} M with 64 KiB chunks, "
        f"{packet_rate / 1e6:.2f} M per packet)"
    )
    ratio = fast_rate / baseline
    verdict = "PASS" if ratio > TARGET_RATIO else "FAIL"
    print(f"target > {TARGET_RATIO:.0f}x the straightforward pure-Python book: {verdict} ", end="")
    print(f"({ratio:.1f}x)")


if __name__ == "__main__":
    main()
