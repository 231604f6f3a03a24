"""The compiled normalizer: ``FastNormalizer``, and ``make_normalizer`` to pick either one.

``FastNormalizer`` (the C extension ``normalize._fastcore``) follows the rules of
``normalize.normalizer.Normalizer`` exactly and produces byte-identical events and equal
stats; ``tests/unit/normalize/test_fastcore.py`` holds it to that. Its API is the same:

- ``FastNormalizer(*, midnight_ns, session="", shard_index=0, shard_count=1,
  match_memory=1 << 20)``: the shard is given as ``locate % shard_count == shard_index``,
  as ``locate_shard(index, count)`` says, instead of a predicate;
- ``process(payload, *, seq, receive_ts_ns)``, ``process_message(message, *, seq,
  receive_ts_ns)``, ``mark_stale(*, seq, receive_ts_ns, reason)``,
  ``take_events(*, publish_ts_ns) -> list[NormalizedEvent]``, ``stats`` (a
  ``NormalizerStats``), ``pending_events``, ``symbols()``, ``is_stale(locate)``,
  ``problem_counts()``, ``book(locate)``;

and fast paths that keep the per-message work in C:

- ``process_framed(buffer, *, first_seq, receive_ts_ns) -> int``: every complete frame of a
  buffer of 2-byte-length-prefixed messages (a chunk of a NASDAQ ITCH file, or a MoldUDP64
  packet's message blocks); message ``i`` gets sequence number ``first_seq + i``. Returns the
  number of messages applied; a frame cut off by the end of the buffer is left alone and
  ``last_framed_bytes`` says where it starts, so a reader carries that tail over;
- ``process_messages(messages, *, first_seq, receive_ts_ns) -> int``: each buffer of a
  sequence (a MoldUDP64 packet's messages as ``GapRecoverer`` delivers them) in one call;
- ``take_records(*, publish_ts_ns) -> list[(topic, key, value)]``: the queued events as bus
  records, equal to ``batch_records(take_events(publish_ts_ns=...))`` (the Python
  ``Normalizer.take_records``).

Also ``last_exchange_ts_ns``, ``memory_bytes`` (bytes held on the C heap) and ``session``.

``decode_framed(buffer)`` is a decode-only mode for benchmarks: it parses every field of
every message and builds nothing.
"""

from __future__ import annotations

from normalize._fastcore import FastNormalizer as _CompiledNormalizer
from normalize._fastcore import decode_framed
from normalize.book import OrderBook
from normalize.itch import Message, encode
from normalize.normalizer import Normalizer, locate_shard

__all__ = ["FastNormalizer", "decode_framed", "make_normalizer"]


class FastNormalizer(_CompiledNormalizer):
    """ITCH 5.0 messages in, normalized events out, in C; see the module docstring."""

    __slots__ = ()

    def process_message(self, message: Message, *, seq: int, receive_ts_ns: int) -> None:
        """Apply one already-decoded ITCH message (it is encoded again: not the fast path)."""
        self.process(encode(message), seq=seq, receive_ts_ns=receive_ts_ns)

    def book(self, stock_locate: int) -> OrderBook | None:
        """A snapshot of the book of an announced, owned locate, or None.

        It has the same live orders and levels as the compiled book, but ``orders_at`` and
        iteration list orders in hash-table order, not time priority (the compiled book keeps
        aggregates only, as the BBO needs).
        """
        orders = self._orders(stock_locate)
        if orders is None:
            return None
        snapshot = OrderBook(self.symbols()[stock_locate])
        for ref, side, price, shares in orders:
            snapshot.add(ref, side, price, shares)
        return snapshot


def make_normalizer(
    *,
    fast: bool = True,
    midnight_ns: int,
    session: str = "",
    shard_index: int = 0,
    shard_count: int = 1,
    match_memory: int = 1 << 20,
) -> FastNormalizer | Normalizer:
    """A ``FastNormalizer`` (``fast=True``) or a pure-Python ``Normalizer``, configured alike.

    Both take the same calls and produce the same events; the Python one is the reference
    (readable, and easy to step through in a debugger).
    """
    if fast:
        return FastNormalizer(
            midnight_ns=midnight_ns,
            session=session,
            shard_index=shard_index,
            shard_count=shard_count,
            match_memory=match_memory,
        )
    return Normalizer(
        midnight_ns=midnight_ns,
        session=session,
        shard=locate_shard(shard_index, shard_count),
        match_memory=match_memory,
    )
