"""From ITCH 5.0 messages to normalized Trade / Quote / Status events: the pure core.

``Normalizer`` is fed one ITCH message at a time with its MoldUDP64 sequence number and the
time the plant received it (``process`` for raw bytes, ``process_message`` for a decoded
message); it keeps one ``OrderBook`` per symbol and queues Protobuf events, which
``take_events`` hands out stamped with the publish time. No clocks, sockets or threads.

Routing and sharding
    Every ITCH message carries the Stock Locate of its security in its header, order
    messages ('E', 'C', 'X', 'D', 'U', 'B') included, so books live per locate and a message is
    routed by its locate; no global reference-number map is needed, and N processes can split
    the feed by locate (``locate_shard(index, count)``). A message for a locate another shard
    owns is counted (``skipped_other_shard``) and dropped before it is decoded. Market-wide
    messages (System Event 'S', MWCB 'V'/'W', locate 0) are processed by every shard, but only
    the shard owning locate 0 publishes them, so each reaches the bus once. Stock Directory
    'R' announces locate → symbol; any other message for a locate never announced is counted
    (``unknown_symbol``) and skipped. A reference number no book knows (its add was lost, or
    the plant joined late) is counted (``unknown_order``) and skipped; an operation the book
    refuses for any other reason (a reference already live, shares beyond what rests, a bad
    side) is counted as ``inconsistent_order`` and skipped.

Trades (md.trades)
    'E' at the resting order's price and side (EXECUTION); 'C' only when Printable is 'Y', at
    the execution price, resting order's side (EXECUTION_WITH_PRICE) — a non-printable 'C'
    still reduces the book; 'P' with the message's side (NON_CROSS; no book change); 'Q' with
    shares > 0 (CROSS, cross_type; side unspecified); 'B' (BROKEN). A broken trade names the
    symbol of its locate and the match number it cancels; its price, size and side are those
    of the trade this normalizer published with that match number, remembered for the last
    ``match_memory`` trades (0, 0, unspecified when forgotten or never published).

Quotes (md.quotes)
    After each message that changes a book, the symbol's BBO is compared with the last Quote
    published for it (initially the empty BBO, all zeros); a Quote is published when the best
    price or the aggregate size at the best price differs on either side, and only then. A
    Quote follows the Trade of the same message.

Statuses (md.status)
    'S' (SYSTEM_EVENT, symbol "", code = event code); 'H' (TRADING_ACTION, code = trading
    state, reason = reason code; halted unless the state is 'T'); 'Y' (REG_SHO, code = action);
    'V' (MWCB, reason "level_1=… level_2=… level_3=…", Price(8)); 'W' (MWCB, code = breached
    level); 'h' (OPERATIONAL_HALT, code = action 'H'/'T', reason = market code); 'J'
    (LULD_COLLAR, reason "reference=… upper=… lower=… extension=…"); 'K' (IPO_QUOTING, code =
    qualifier, reason "release_time=… price=…"). ``halted`` on a per-symbol Status is the
    symbol's state after the message: halted by its last 'H' (any state but 'T') or by an
    operational halt 'h' not yet resumed. Market-wide statuses carry halted false: MWCB halts
    reach each symbol as 'H' messages.

Stale books
    Ingest calls ``mark_stale`` when it gives up on a gap. The lost messages may have touched
    any symbol, so every symbol this normalizer owns (announced so far) is marked stale and
    gets a Status FEED_STALE (code "", the caller's reason, the symbol's halted state, the
    exchange time of the last message seen). While stale, a symbol publishes no Quotes (its
    book cannot be trusted), but still publishes trades from 'P', 'Q', 'B' and executions of
    orders its book knows, and its book keeps applying whatever it can; operations on unknown
    references are counted and skipped. A symbol already stale is not announced again.
    The only snapshot point of this feed is the next System Event 'O' (start of messages: a
    new day, every book empty): there each stale symbol gets a Status FEED_RECOVERED (code
    "", halted false). A book that deletes have emptied is not enough: orders whose adds
    were lost may still rest at the exchange.

Start of messages 'O'
    Every book is cleared, halts are reset and the remembered matches are forgotten (reference
    and match numbers are per day). A symbol whose last Quote was not the empty BBO gets one
    that is, after its FEED_RECOVERED if it was stale. The directory is kept; a later 'R'
    that names a different symbol for a locate starts that locate afresh.

Bad input
    Nothing the feed sends makes ``process`` raise: a ``DecodeError`` is counted
    (``decode_errors``) and skipped. Each kind of skipped message is logged when its count
    reaches 1, 10, 100, … with the count, never once per message.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from normalize.book import BUY, EMPTY_BBO, Bbo, OrderBook
from normalize.errors import DecodeError, OrderBookError, UnknownOrder
from normalize.itch import (
    MESSAGE_LENGTHS,
    AddOrder,
    AddOrderWithMpid,
    BrokenTrade,
    CrossTrade,
    IpoQuotingPeriodUpdate,
    LuldAuctionCollar,
    Message,
    MwcbDeclineLevel,
    MwcbStatus,
    NonCrossTrade,
    OperationalHalt,
    OrderCancel,
    OrderDelete,
    OrderExecuted,
    OrderExecutedWithPrice,
    OrderReplace,
    RegShoRestriction,
    StockDirectory,
    StockTradingAction,
    SystemEvent,
    decode,
)
from normalize.proto import marketdata_pb2 as pb
from tickerplant.topics import MD_QUOTES, MD_STATUS, MD_TRADES

__all__ = [
    "LocateShard",
    "NormalizedEvent",
    "Normalizer",
    "NormalizerStats",
    "batch_records",
    "locate_shard",
]

_LOG = logging.getLogger(__name__)

_T = TypeVar("_T")

START_OF_MESSAGES = "O"
"""System Event code that starts a day's messages: the feed's only snapshot point."""

_LOCATES = 1 << 16  # Stock Locate is 2 bytes
_MARKET_WIDE_TYPE_BYTES = frozenset(b"SVW")  # locate 0, seen by every shard
_SHARDED_TYPE_BYTES = frozenset(MESSAGE_LENGTHS) - _MARKET_WIDE_TYPE_BYTES
_MARKET_WIDE_TYPES = (SystemEvent, MwcbDeclineLevel, MwcbStatus)
_SIDES = {"B": pb.SIDE_BUY, "S": pb.SIDE_SELL}
_LOG_AT_COUNTS = frozenset(10**power for power in range(20))
_EVENT_FIELD_BY_TOPIC = {MD_TRADES: "trade", MD_QUOTES: "quote", MD_STATUS: "status"}


# --------------------------------------------------------------------------------------------
# Values handed out
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NormalizedEvent:
    """One event for the bus: its topic, its symbol ("" market-wide) and the serialized
    ``pb.Trade`` / ``pb.Quote`` / ``pb.Status``."""

    topic: str
    symbol: str
    payload: bytes


@dataclass(slots=True)
class NormalizerStats:
    """Counts since the normalizer was made. All are totals except ``stale_symbols``, the
    number of symbols stale right now."""

    messages: int = 0  # handed to process / process_message, whatever became of them
    skipped_other_shard: int = 0  # for a locate another shard owns
    unknown_symbol: int = 0  # for a locate no Stock Directory announced
    unknown_order: int = 0  # for a reference number no book knows
    inconsistent_order: int = 0  # refused by the book for another reason
    decode_errors: int = 0  # bytes that are not an ITCH 5.0 message
    trades: int = 0  # Trade events queued
    quotes: int = 0  # Quote events queued
    statuses: int = 0  # Status events queued
    stale_symbols: int = 0  # symbols stale now (a gauge)


@dataclass(frozen=True, slots=True)
class LocateShard:
    """Owns the stock locates with ``locate % count == index``."""

    index: int
    count: int

    def __call__(self, stock_locate: int) -> bool:
        return stock_locate % self.count == self.index


def locate_shard(index: int, count: int) -> LocateShard:
    """The shard predicate of process ``index`` of ``count``: ``locate % count == index``."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if not 0 <= index < count:
        raise ValueError(f"index must be in 0..{count - 1}, got {index}")
    return LocateShard(index, count)


def batch_records(events: Iterable[NormalizedEvent]) -> list[tuple[str, bytes, bytes]]:
    """Bus records ``(topic, key, value)``: one ``pb.EventBatch`` per (topic, symbol).

    The key is the symbol in ASCII (``b""`` for market-wide events). Records come in the
    order each (topic, symbol) first appears; inside a batch the events keep feed order, so
    per-key order survives a bus that partitions by key.
    """
    groups: dict[tuple[str, str], list[bytes]] = {}
    for event in events:
        groups.setdefault((event.topic, event.symbol), []).append(event.payload)
    records: list[tuple[str, bytes, bytes]] = []
    for (topic, symbol), payloads in groups.items():
        field = _EVENT_FIELD_BY_TOPIC.get(topic)
        if field is None:
            raise ValueError(
                f"topic {topic!r} cannot be batched; accepted: {sorted(_EVENT_FIELD_BY_TOPIC)}"
            )
        batch = pb.EventBatch(symbol=symbol)
        for payload in payloads:
            getattr(batch.events.add(), field).MergeFromString(payload)
        records.append((topic, symbol.encode("ascii"), batch.SerializeToString()))
    return records


# --------------------------------------------------------------------------------------------
# The normalizer
# --------------------------------------------------------------------------------------------


class _Symbol:
    """What the normalizer knows about one announced locate."""

    __slots__ = ("book", "halted_by_action", "halted_operationally", "quoted", "stale", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.book = OrderBook(symbol)
        self.quoted: Bbo = EMPTY_BBO  # the BBO of the last Quote published
        self.stale = False
        self.halted_by_action = False  # last 'H' said anything but 'T'
        self.halted_operationally = False  # last 'h' said 'H'

    @property
    def halted(self) -> bool:
        return self.halted_by_action or self.halted_operationally


class Normalizer:
    """ITCH 5.0 messages in, normalized events out; the rules are in the module docstring.

    ``midnight_ns`` is the session date's midnight in ns since the Unix epoch (ITCH times are
    ns since midnight); ``session`` the MoldUDP64 session stamped on every event; ``shard``
    says which stock locates this instance owns (all when None); ``match_memory`` how many
    published trades a Broken Trade can still be matched to (0 forgets them all).
    """

    def __init__(
        self,
        *,
        midnight_ns: int,
        session: str = "",
        shard: Callable[[int], bool] | None = None,
        match_memory: int = 1 << 20,
    ) -> None:
        if match_memory < 0:
            raise ValueError(f"match_memory must be >= 0, got {match_memory}")
        self.stats = NormalizerStats()
        self._midnight_ns = midnight_ns
        self._session = session
        # One byte per locate, so the shard check is an index, not a call.
        self._owned = bytes(
            [1] * _LOCATES if shard is None else [bool(shard(locate)) for locate in range(_LOCATES)]
        )
        self._publishes_market_wide = bool(self._owned[0])
        self._symbols: dict[int, _Symbol] = {}
        self._pending: list[tuple[str, str, Any]] = []  # (topic, symbol, unstamped pb message)
        self._last_timestamp = 0  # ITCH timestamp of the last message dispatched
        self._match_memory = match_memory
        self._matches: dict[int, tuple[int, int, int]] = {}  # match -> (price, size, side)
        self._match_order: deque[int] = deque()  # oldest first, for eviction
        self._problem_counts: dict[str, int] = {}
        self._handlers: dict[type, Callable[[Any, int, int], None]] = {
            AddOrder: self._on_add,
            AddOrderWithMpid: self._on_add,
            OrderExecuted: self._on_executed,
            OrderExecutedWithPrice: self._on_executed_with_price,
            OrderCancel: self._on_cancel,
            OrderDelete: self._on_delete,
            OrderReplace: self._on_replace,
            NonCrossTrade: self._on_non_cross_trade,
            CrossTrade: self._on_cross_trade,
            BrokenTrade: self._on_broken_trade,
            StockDirectory: self._on_stock_directory,
            SystemEvent: self._on_system_event,
            StockTradingAction: self._on_trading_action,
            RegShoRestriction: self._on_reg_sho,
            MwcbDeclineLevel: self._on_mwcb_decline_level,
            MwcbStatus: self._on_mwcb_status,
            OperationalHalt: self._on_operational_halt,
            LuldAuctionCollar: self._on_luld_collar,
            IpoQuotingPeriodUpdate: self._on_ipo_quoting,
        }

    # ------------------------------------------------------------------------------- input

    def process_messages(
        self, payloads: Iterable[bytes | memoryview], *, first_seq: int, receive_ts_ns: int
    ) -> int:
        """Apply consecutive messages (one MoldUDP64 packet's); message i has first_seq + i."""
        count = 0
        for count, payload in enumerate(payloads, start=1):
            self.process(payload, seq=first_seq + count - 1, receive_ts_ns=receive_ts_ns)
        return count

    def process(self, payload: bytes | memoryview, *, seq: int, receive_ts_ns: int) -> None:
        """Apply one ITCH message given as its exact bytes (a MoldUDP64 message block)."""
        stats = self.stats
        stats.messages += 1
        if (
            len(payload) >= 3
            and payload[0] in _SHARDED_TYPE_BYTES
            and not self._owned[(payload[1] << 8) | payload[2]]
        ):
            stats.skipped_other_shard += 1
            return
        try:
            message = decode(payload, 0, len(payload))
        except DecodeError as exc:
            stats.decode_errors += 1
            self._note(f"undecodable message ({type(exc).__name__})", exc)
            return
        self._last_timestamp = message.timestamp
        handler = self._handlers.get(type(message))
        if handler is not None:
            handler(message, seq, receive_ts_ns)

    def process_message(self, message: Message, *, seq: int, receive_ts_ns: int) -> None:
        """Apply one already-decoded ITCH message."""
        self.stats.messages += 1
        if not isinstance(message, _MARKET_WIDE_TYPES) and not self._owned[message.stock_locate]:
            self.stats.skipped_other_shard += 1
            return
        self._last_timestamp = message.timestamp
        handler = self._handlers.get(type(message))
        if handler is not None:
            handler(message, seq, receive_ts_ns)

    def mark_stale(self, *, seq: int, receive_ts_ns: int, reason: str) -> None:
        """Messages were lost for good: every owned symbol's book is stale until the next 'O'.

        ``seq`` is the sequence number the Status events carry (the first lost one, say).
        """
        exchange_ts_ns = self._midnight_ns + self._last_timestamp
        newly_stale = 0
        for locate in sorted(self._symbols):
            state = self._symbols[locate]
            if state.stale:
                continue
            state.stale = True
            newly_stale += 1
            self._status(
                state.symbol,
                pb.STATUS_KIND_FEED_STALE,
                "",
                reason,
                state.halted,
                exchange_ts_ns,
                seq,
                receive_ts_ns,
            )
        self.stats.stale_symbols += newly_stale
        _LOG.info(
            "marked %d symbol book(s) stale (%d stale now) at sequence %d: %s",
            newly_stale,
            self.stats.stale_symbols,
            seq,
            reason,
        )

    # ------------------------------------------------------------------------------ output

    def take_events(self, *, publish_ts_ns: int) -> list[NormalizedEvent]:
        """The events queued since the last call, in feed order, stamped ``publish_ts_ns``."""
        pending, self._pending = self._pending, []
        events: list[NormalizedEvent] = []
        append = events.append
        for topic, symbol, message in pending:
            message.publish_ts_ns = publish_ts_ns
            append(NormalizedEvent(topic, symbol, message.SerializeToString()))
        return events

    def take_records(self, *, publish_ts_ns: int) -> list[tuple[str, bytes, bytes]]:
        """The queued events as bus records: ``batch_records(take_events(...))``."""
        return batch_records(self.take_events(publish_ts_ns=publish_ts_ns))

    @property
    def pending_events(self) -> int:
        """How many events ``take_events`` would return now."""
        return len(self._pending)

    @property
    def last_exchange_ts_ns(self) -> int:
        """Exchange time (epoch ns) of the last message dispatched; 0 before any."""
        return self._midnight_ns + self._last_timestamp if self._last_timestamp else 0

    # ----------------------------------------------------------------------------- queries

    def book(self, stock_locate: int) -> OrderBook | None:
        """The book of an announced, owned locate, or None."""
        state = self._symbols.get(stock_locate)
        return None if state is None else state.book

    def symbols(self) -> dict[int, str]:
        """Every announced, owned locate and its symbol."""
        return {locate: state.symbol for locate, state in sorted(self._symbols.items())}

    def is_stale(self, stock_locate: int) -> bool:
        """Whether the book of ``stock_locate`` is stale (False for an unknown locate)."""
        state = self._symbols.get(stock_locate)
        return state is not None and state.stale

    def problem_counts(self) -> dict[str, int]:
        """How many messages were skipped, by kind of problem (what the log reports)."""
        return dict(self._problem_counts)

    # ---------------------------------------------------------------------- order messages

    def _change_book(
        self, m: Message, operation: Callable[[OrderBook], _T]
    ) -> tuple[_Symbol, _T] | None:
        """Apply ``operation`` to the book of ``m``'s symbol; ``None`` (counted) if it can't be."""
        state = self._symbols.get(m.stock_locate)
        if state is None:
            self._unknown_symbol(m)
            return None
        try:
            return state, operation(state.book)
        except OrderBookError as exc:
            self._refused(exc)
            return None

    def _on_add(self, m: AddOrder | AddOrderWithMpid, seq: int, receive_ts_ns: int) -> None:
        applied = self._change_book(
            m,
            lambda book: book.add(
                m.order_reference_number, m.buy_sell_indicator, m.price, m.shares
            ),
        )
        if applied is not None:
            state, change = applied
            self._quote_if_changed(
                state, change.side, change.price, m.timestamp, seq, receive_ts_ns
            )

    def _on_executed(self, m: OrderExecuted, seq: int, receive_ts_ns: int) -> None:
        self._execution(m, seq, receive_ts_ns, None, pb.TRADE_KIND_EXECUTION)

    def _on_executed_with_price(
        self, m: OrderExecutedWithPrice, seq: int, receive_ts_ns: int
    ) -> None:
        # A non-printable execution reduces the book but prints no trade.
        self._execution(
            m,
            seq,
            receive_ts_ns,
            m.execution_price,
            pb.TRADE_KIND_EXECUTION_WITH_PRICE,
            printable=m.printable == "Y",
        )

    def _execution(
        self,
        m: OrderExecuted | OrderExecutedWithPrice,
        seq: int,
        receive_ts_ns: int,
        price: int | None,
        kind: int,
        *,
        printable: bool = True,
    ) -> None:
        """Execute against a resting order; when ``printable``, print a trade at ``price``
        (``None``: the resting order's own price)."""
        applied = self._change_book(
            m, lambda book: book.execute(m.order_reference_number, m.executed_shares)
        )
        if applied is None:
            return
        state, change = applied
        if printable:
            self._trade(
                state.symbol,
                m.timestamp,
                seq,
                receive_ts_ns,
                change.price if price is None else price,
                m.executed_shares,
                _SIDES[change.side],
                m.match_number,
                kind,
            )
        self._quote_if_changed(state, change.side, change.price, m.timestamp, seq, receive_ts_ns)

    def _on_cancel(self, m: OrderCancel, seq: int, receive_ts_ns: int) -> None:
        applied = self._change_book(
            m, lambda book: book.cancel(m.order_reference_number, m.cancelled_shares)
        )
        if applied is not None:
            state, change = applied
            self._quote_if_changed(
                state, change.side, change.price, m.timestamp, seq, receive_ts_ns
            )

    def _on_delete(self, m: OrderDelete, seq: int, receive_ts_ns: int) -> None:
        applied = self._change_book(m, lambda book: book.delete(m.order_reference_number))
        if applied is not None:
            state, change = applied
            self._quote_if_changed(
                state, change.side, change.price, m.timestamp, seq, receive_ts_ns
            )

    def _on_replace(self, m: OrderReplace, seq: int, receive_ts_ns: int) -> None:
        applied = self._change_book(
            m,
            lambda book: book.replace(
                m.original_order_reference_number,
                m.new_order_reference_number,
                m.price,
                m.shares,
            ),
        )
        if applied is None:
            return
        state, (removed, added) = applied
        # Both levels are on one side; the better of the two decides whether the top moved.
        side = removed.side
        better = max if side == BUY else min
        price = better(removed.price, added.price)
        self._quote_if_changed(state, side, price, m.timestamp, seq, receive_ts_ns)

    # ---------------------------------------------------------------------- trade messages

    def _on_non_cross_trade(self, m: NonCrossTrade, seq: int, receive_ts_ns: int) -> None:
        state = self._symbols.get(m.stock_locate)
        if state is None:
            self._unknown_symbol(m)
            return
        self._trade(
            state.symbol,
            m.timestamp,
            seq,
            receive_ts_ns,
            m.price,
            m.shares,
            _SIDES.get(m.buy_sell_indicator, pb.SIDE_UNSPECIFIED),
            m.match_number,
            pb.TRADE_KIND_NON_CROSS,
        )

    def _on_cross_trade(self, m: CrossTrade, seq: int, receive_ts_ns: int) -> None:
        state = self._symbols.get(m.stock_locate)
        if state is None:
            self._unknown_symbol(m)
            return
        if m.shares == 0:  # the cross happened without a match: nothing printed
            return
        self._trade(
            state.symbol,
            m.timestamp,
            seq,
            receive_ts_ns,
            m.cross_price,
            m.shares,
            pb.SIDE_UNSPECIFIED,
            m.match_number,
            pb.TRADE_KIND_CROSS,
            m.cross_type,
        )

    def _on_broken_trade(self, m: BrokenTrade, seq: int, receive_ts_ns: int) -> None:
        state = self._symbols.get(m.stock_locate)
        if state is None:
            self._unknown_symbol(m)
            return
        price, size, side = self._matches.pop(m.match_number, (0, 0, pb.SIDE_UNSPECIFIED))
        self.stats.trades += 1
        self._pending.append(
            (
                MD_TRADES,
                state.symbol,
                pb.Trade(
                    symbol=state.symbol,
                    exchange_ts_ns=self._midnight_ns + m.timestamp,
                    seq=seq,
                    receive_ts_ns=receive_ts_ns,
                    price=price,
                    size=size,
                    side=side,
                    match_number=m.match_number,
                    kind=pb.TRADE_KIND_BROKEN,
                    session=self._session,
                ),
            )
        )

    # --------------------------------------------------------------------- status messages

    def _on_stock_directory(self, m: StockDirectory, seq: int, receive_ts_ns: int) -> None:
        state = self._symbols.get(m.stock_locate)
        if state is not None:
            if state.symbol == m.stock:
                return  # announced again (a replay, a second directory pass): keep the book
            if state.stale:
                self.stats.stale_symbols -= 1
        self._symbols[m.stock_locate] = _Symbol(m.stock)

    def _on_system_event(self, m: SystemEvent, seq: int, receive_ts_ns: int) -> None:
        exchange_ts_ns = self._midnight_ns + m.timestamp
        if self._publishes_market_wide:
            self._status(
                "",
                pb.STATUS_KIND_SYSTEM_EVENT,
                m.event_code,
                "",
                False,
                exchange_ts_ns,
                seq,
                receive_ts_ns,
            )
        if m.event_code == START_OF_MESSAGES:
            self._start_of_day(exchange_ts_ns, seq, receive_ts_ns)

    def _start_of_day(self, exchange_ts_ns: int, seq: int, receive_ts_ns: int) -> None:
        recovered = 0
        for locate in sorted(self._symbols):
            state = self._symbols[locate]
            state.book.clear()
            state.halted_by_action = False
            state.halted_operationally = False
            if state.stale:
                state.stale = False
                recovered += 1
                self._status(
                    state.symbol,
                    pb.STATUS_KIND_FEED_RECOVERED,
                    "",
                    "start of messages: the book restarts empty",
                    False,
                    exchange_ts_ns,
                    seq,
                    receive_ts_ns,
                )
            if state.quoted != EMPTY_BBO:
                self._quote(state, EMPTY_BBO, exchange_ts_ns, seq, receive_ts_ns)
        self.stats.stale_symbols -= recovered
        self._matches.clear()
        self._match_order.clear()
        if recovered:
            _LOG.info("start of messages at sequence %d: %d stale book(s) recover", seq, recovered)

    def _on_trading_action(self, m: StockTradingAction, seq: int, receive_ts_ns: int) -> None:
        state = self._symbols.get(m.stock_locate)
        if state is None:
            self._unknown_symbol(m)
            return
        state.halted_by_action = m.trading_state != "T"
        self._symbol_status(
            state, m, pb.STATUS_KIND_TRADING_ACTION, m.trading_state, m.reason, seq, receive_ts_ns
        )

    def _on_reg_sho(self, m: RegShoRestriction, seq: int, receive_ts_ns: int) -> None:
        state = self._symbols.get(m.stock_locate)
        if state is None:
            self._unknown_symbol(m)
            return
        self._symbol_status(
            state, m, pb.STATUS_KIND_REG_SHO, m.reg_sho_action, "", seq, receive_ts_ns
        )

    def _on_operational_halt(self, m: OperationalHalt, seq: int, receive_ts_ns: int) -> None:
        state = self._symbols.get(m.stock_locate)
        if state is None:
            self._unknown_symbol(m)
            return
        state.halted_operationally = m.operational_halt_action == "H"
        self._symbol_status(
            state,
            m,
            pb.STATUS_KIND_OPERATIONAL_HALT,
            m.operational_halt_action,
            m.market_code,
            seq,
            receive_ts_ns,
        )

    def _on_luld_collar(self, m: LuldAuctionCollar, seq: int, receive_ts_ns: int) -> None:
        state = self._symbols.get(m.stock_locate)
        if state is None:
            self._unknown_symbol(m)
            return
        reason = (
            f"reference={m.auction_collar_reference_price} "
            f"upper={m.upper_auction_collar_price} lower={m.lower_auction_collar_price} "
            f"extension={m.auction_collar_extension}"
        )
        self._symbol_status(state, m, pb.STATUS_KIND_LULD_COLLAR, "", reason, seq, receive_ts_ns)

    def _on_ipo_quoting(self, m: IpoQuotingPeriodUpdate, seq: int, receive_ts_ns: int) -> None:
        state = self._symbols.get(m.stock_locate)
        if state is None:
            self._unknown_symbol(m)
            return
        reason = f"release_time={m.ipo_quotation_release_time} price={m.ipo_price}"
        self._symbol_status(
            state,
            m,
            pb.STATUS_KIND_IPO_QUOTING,
            m.ipo_quotation_release_qualifier,
            reason,
            seq,
            receive_ts_ns,
        )

    def _on_mwcb_decline_level(self, m: MwcbDeclineLevel, seq: int, receive_ts_ns: int) -> None:
        if self._publishes_market_wide:
            reason = f"level_1={m.level_1} level_2={m.level_2} level_3={m.level_3}"
            self._status(
                "",
                pb.STATUS_KIND_MWCB,
                "",
                reason,
                False,
                self._midnight_ns + m.timestamp,
                seq,
                receive_ts_ns,
            )

    def _on_mwcb_status(self, m: MwcbStatus, seq: int, receive_ts_ns: int) -> None:
        if self._publishes_market_wide:
            self._status(
                "",
                pb.STATUS_KIND_MWCB,
                m.breached_level,
                "",
                False,
                self._midnight_ns + m.timestamp,
                seq,
                receive_ts_ns,
            )

    # ---------------------------------------------------------------------------- emitting

    def _trade(
        self,
        symbol: str,
        timestamp: int,
        seq: int,
        receive_ts_ns: int,
        price: int,
        size: int,
        side: int,
        match_number: int,
        kind: int,
        cross_type: str = "",
    ) -> None:
        self.stats.trades += 1
        self._pending.append(
            (
                MD_TRADES,
                symbol,
                pb.Trade(
                    symbol=symbol,
                    exchange_ts_ns=self._midnight_ns + timestamp,
                    seq=seq,
                    receive_ts_ns=receive_ts_ns,
                    price=price,
                    size=size,
                    side=side,
                    match_number=match_number,
                    kind=kind,
                    cross_type=cross_type,
                    session=self._session,
                ),
            )
        )
        if self._match_memory:
            self._matches[match_number] = (price, size, side)
            order = self._match_order
            order.append(match_number)
            if len(order) > self._match_memory:
                self._matches.pop(order.popleft(), None)

    def _quote_if_changed(
        self, state: _Symbol, side: str, price: int, timestamp: int, seq: int, receive_ts_ns: int
    ) -> None:
        """Publish a Quote if the change at (``side``, ``price``) moved the symbol's BBO.

        While the symbol is not stale, ``state.quoted`` is the BBO before this message, so a
        change strictly behind the quoted best price of a non-empty side cannot have moved
        the BBO and the book is not asked (most order traffic rests away from the top). Any
        other change is settled by comparing the book's BBO with the quoted one.
        """
        if state.stale:
            return
        bid_price, bid_size, ask_price, ask_size = state.quoted
        if side == BUY:
            if bid_size and price < bid_price:
                return
        elif ask_size and price > ask_price:
            return
        bbo = state.book.bbo()
        if bbo != state.quoted:
            self._quote(state, bbo, self._midnight_ns + timestamp, seq, receive_ts_ns)

    def _quote(
        self, state: _Symbol, bbo: Bbo, exchange_ts_ns: int, seq: int, receive_ts_ns: int
    ) -> None:
        state.quoted = bbo
        bid_price, bid_size, ask_price, ask_size = bbo
        self.stats.quotes += 1
        self._pending.append(
            (
                MD_QUOTES,
                state.symbol,
                pb.Quote(
                    symbol=state.symbol,
                    exchange_ts_ns=exchange_ts_ns,
                    seq=seq,
                    receive_ts_ns=receive_ts_ns,
                    bid_price=bid_price,
                    bid_size=bid_size,
                    ask_price=ask_price,
                    ask_size=ask_size,
                    session=self._session,
                ),
            )
        )

    def _symbol_status(
        self,
        state: _Symbol,
        m: Message,
        kind: int,
        code: str,
        reason: str,
        seq: int,
        receive_ts_ns: int,
    ) -> None:
        self._status(
            state.symbol,
            kind,
            code,
            reason,
            state.halted,
            self._midnight_ns + m.timestamp,
            seq,
            receive_ts_ns,
        )

    def _status(
        self,
        symbol: str,
        kind: int,
        code: str,
        reason: str,
        halted: bool,
        exchange_ts_ns: int,
        seq: int,
        receive_ts_ns: int,
    ) -> None:
        self.stats.statuses += 1
        self._pending.append(
            (
                MD_STATUS,
                symbol,
                pb.Status(
                    symbol=symbol,
                    exchange_ts_ns=exchange_ts_ns,
                    seq=seq,
                    receive_ts_ns=receive_ts_ns,
                    kind=kind,
                    code=code,
                    reason=reason,
                    halted=halted,
                    session=self._session,
                ),
            )
        )

    # ------------------------------------------------------------------------ bad messages

    def _unknown_symbol(self, m: Message) -> None:
        self.stats.unknown_symbol += 1
        self._note(
            "message for an unannounced stock locate",
            f"{m.message_type!r} for locate {m.stock_locate}",
        )

    def _refused(self, exc: OrderBookError) -> None:
        if isinstance(exc, UnknownOrder):
            self.stats.unknown_order += 1
            self._note("order message for an unknown reference number", exc)
        else:
            self.stats.inconsistent_order += 1
            self._note(f"order message the book refused ({type(exc).__name__})", exc)

    def _note(self, kind: str, latest: object) -> None:
        """Count a skipped message; log its kind at counts 1, 10, 100, … only."""
        count = self._problem_counts.get(kind, 0) + 1
        self._problem_counts[kind] = count
        if count in _LOG_AT_COUNTS:
            _LOG.warning("skipped %d ITCH message(s) so far: %s; latest: %s", count, kind, latest)
