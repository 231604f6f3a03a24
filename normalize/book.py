"""The order book of one symbol: live orders by reference number, shares per price level.

The straightforward reference: every live order is kept by its ITCH order reference number as
``(side, price, shares)``, and each side keeps the aggregate shares per price level in a
``SortedDict``, so the best bid is the highest bid level and the best ask the lowest ask level.
It is the oracle a compiled book is checked against and the pure-Python peer it is benchmarked
against, so it favours plain data structures over cleverness.

Operations mirror the ITCH 5.0 order messages and return a ``BookChange`` (or two, for a
replace) saying which level changed by how much:

- ``add`` ('A', 'F'): a new order rests at (side, price);
- ``execute`` ('E', 'C') and ``cancel`` ('X'): shares leave a live order; it is removed when
  none remain. For the book an execution and a cancel are the same change: a 'C' execution
  reduces the resting order by its shares whatever its execution price or printable flag;
- ``delete`` ('D'): the whole remainder of an order leaves the book;
- ``replace`` ('U'): the original order is deleted and a new reference is added on the same
  side with the new price and shares. The new order joins the back of its level's queue: a
  replace loses time priority, even at an unchanged price.

An operation that contradicts the book (an unknown reference number, a reference that is
already live, a side other than 'B'/'S', shares that are not positive or exceed what still
rests) raises an ``OrderBookError`` and leaves the book unchanged, so a caller can count the
message and go on. Reference numbers are unique per day across the whole feed; each book only
checks uniqueness among its own orders.

Time priority is not needed for the BBO, so levels keep only aggregates. It is still
observable: ``orders_at`` lists a level's orders in the order they joined it, which is the
insertion order of the reference-number dict (a partial execution updates an order in place
and so keeps its position; a replace re-inserts it at the end).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from sortedcontainers import SortedDict

from normalize.errors import DuplicateOrder, InvalidOrder, UnknownOrder

__all__ = ["BUY", "EMPTY_BBO", "SELL", "Bbo", "BookChange", "OrderBook", "RestingOrder"]

BUY = "B"
"""ITCH Buy/Sell Indicator of a buy order (it rests on the bid side)."""
SELL = "S"
"""ITCH Buy/Sell Indicator of a sell order (it rests on the ask side)."""

Bbo = tuple[int, int, int, int]
"""``(bid_price, bid_size, ask_price, ask_size)``; price and size are 0 for an empty side."""

EMPTY_BBO: Bbo = (0, 0, 0, 0)


class RestingOrder(NamedTuple):
    """A live order: its side (``BUY``/``SELL``), price (4 implied decimals), shares left."""

    side: str
    price: int
    shares: int


class BookChange(NamedTuple):
    """What one operation did to one order and its price level.

    ``shares`` is the signed change of the level's aggregate: positive for an add, negative
    for an execution, cancel or delete. ``remaining`` is what the order has left afterwards
    (0 when it has left the book).
    """

    ref: int
    side: str
    price: int
    shares: int
    remaining: int


class OrderBook:
    """Live orders and aggregate price levels of one symbol; see the module docstring."""

    __slots__ = ("_asks", "_bids", "_orders", "symbol")

    def __init__(self, symbol: str = "") -> None:
        self.symbol = symbol
        self._orders: dict[int, RestingOrder] = {}
        # price -> aggregate shares of the live orders at that price; no empty levels.
        self._bids: SortedDict = SortedDict()
        self._asks: SortedDict = SortedDict()

    # ---------------------------------------------------------------------------- operations

    def add(self, ref: int, side: str, price: int, shares: int) -> BookChange:
        """A new order ``ref`` rests at ``price`` on ``side``; raises ``OrderBookError``."""
        if ref in self._orders:
            raise DuplicateOrder(self.symbol, ref)
        if side == BUY:
            levels = self._bids
        elif side == SELL:
            levels = self._asks
        else:
            raise InvalidOrder(self.symbol, ref, "side", side, "'B' (buy) or 'S' (sell)")
        if shares <= 0:
            raise InvalidOrder(self.symbol, ref, "shares", shares, "a positive number")
        self._orders[ref] = RestingOrder(side, price, shares)
        levels[price] = levels.get(price, 0) + shares
        return BookChange(ref, side, price, shares, shares)

    def execute(self, ref: int, shares: int) -> BookChange:
        """``shares`` of order ``ref`` were executed; the change names its side and price."""
        return self._reduce(ref, shares)

    def cancel(self, ref: int, shares: int) -> BookChange:
        """``shares`` of order ``ref`` were cancelled; the rest of it stays live."""
        return self._reduce(ref, shares)

    def delete(self, ref: int) -> BookChange:
        """Order ``ref`` left the book with all its remaining shares."""
        order = self._orders.pop(ref, None)
        if order is None:
            raise UnknownOrder(self.symbol, ref)
        side, price, shares = order
        self._take(side, price, shares)
        return BookChange(ref, side, price, -shares, 0)

    def replace(
        self, ref: int, new_ref: int, price: int, shares: int
    ) -> tuple[BookChange, BookChange]:
        """Order ``ref`` becomes ``new_ref`` on the same side at ``price`` with ``shares``.

        Returns the deletion of the original and the addition of the new order. The new
        order joins the back of its level (it loses time priority).
        """
        order = self._orders.get(ref)
        if order is None:
            raise UnknownOrder(self.symbol, ref)
        # Check everything before changing anything, so a refused replace changes nothing.
        if new_ref != ref and new_ref in self._orders:
            raise DuplicateOrder(self.symbol, new_ref)
        if shares <= 0:
            raise InvalidOrder(self.symbol, new_ref, "shares", shares, "a positive number")
        removed = self.delete(ref)
        added = self.add(new_ref, order.side, price, shares)
        return removed, added

    def clear(self) -> None:
        """Remove every order (a new trading day starts with an empty book)."""
        self._orders.clear()
        self._bids.clear()
        self._asks.clear()

    def _reduce(self, ref: int, shares: int) -> BookChange:
        order = self._orders.get(ref)
        if order is None:
            raise UnknownOrder(self.symbol, ref)
        side, price, resting = order
        if not 0 < shares <= resting:
            raise InvalidOrder(
                self.symbol, ref, "shares", shares, f"1..{resting}, the shares still resting"
            )
        remaining = resting - shares
        if remaining:
            self._orders[ref] = RestingOrder(side, price, remaining)  # keeps its queue place
        else:
            del self._orders[ref]
        self._take(side, price, shares)
        return BookChange(ref, side, price, -shares, remaining)

    def _take(self, side: str, price: int, shares: int) -> None:
        levels = self._bids if side == BUY else self._asks
        left = levels[price] - shares
        if left:
            levels[price] = left
        else:
            del levels[price]

    # ------------------------------------------------------------------------------ queries

    def bbo(self) -> Bbo:
        """``(bid_price, bid_size, ask_price, ask_size)`` at the best levels; 0, 0 if empty."""
        bids = self._bids
        asks = self._asks
        bid_price, bid_size = bids.peekitem(-1) if bids else (0, 0)
        ask_price, ask_size = asks.peekitem(0) if asks else (0, 0)
        return bid_price, bid_size, ask_price, ask_size

    def order(self, ref: int) -> RestingOrder | None:
        """The live order ``ref``, or None when it is unknown to this book."""
        return self._orders.get(ref)

    def __contains__(self, ref: object) -> bool:
        return ref in self._orders

    def __len__(self) -> int:
        """The number of live orders."""
        return len(self._orders)

    def __iter__(self) -> Iterator[tuple[int, RestingOrder]]:
        """``(ref, order)`` for every live order, oldest first."""
        return iter(self._orders.items())

    def levels(self, side: str) -> list[tuple[int, int]]:
        """``(price, aggregate shares)`` of every level on ``side``, best first."""
        if side == BUY:
            return list(reversed(self._bids.items()))
        if side == SELL:
            return list(self._asks.items())
        raise ValueError(f"side must be {BUY!r} or {SELL!r}, got {side!r}")

    def orders_at(self, side: str, price: int) -> list[int]:
        """Reference numbers of the live orders at (``side``, ``price``), in time priority."""
        return [ref for ref, order in self._orders.items() if order[:2] == (side, price)]

    def __repr__(self) -> str:
        return f"OrderBook({self.symbol!r}, orders={len(self._orders)}, bbo={self.bbo()})"
