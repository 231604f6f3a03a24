"""The reference order book of one symbol: exact BBO, levels and errors after each operation."""

from __future__ import annotations

import pytest

from normalize.book import BUY, EMPTY_BBO, SELL, BookChange, OrderBook, RestingOrder
from normalize.errors import (
    DuplicateOrder,
    InvalidOrder,
    NormalizeError,
    OrderBookError,
    UnknownOrder,
)


def two_sided_book() -> OrderBook:
    """Bids 100.00 x 300 (refs 1, 2), 99.50 x 500 (3); asks 100.25 x 200 (4), 101.00 x 700 (5)."""
    book = OrderBook("AAPL")
    book.add(1, BUY, 1_000_000, 100)
    book.add(2, BUY, 1_000_000, 200)
    book.add(3, BUY, 995_000, 500)
    book.add(4, SELL, 1_002_500, 200)
    book.add(5, SELL, 1_010_000, 700)
    return book


def test_an_empty_book_reports_zero_price_and_size_on_both_sides():
    """A new book has no orders, no levels and the all-zero BBO."""
    book = OrderBook("AAPL")
    assert book.bbo() == EMPTY_BBO == (0, 0, 0, 0)
    assert len(book) == 0
    assert book.levels(BUY) == []
    assert book.levels(SELL) == []


def test_adds_aggregate_shares_per_level_and_the_best_levels_form_the_bbo():
    """Two bids at one price sum; the highest bid and lowest ask are the BBO."""
    book = two_sided_book()
    assert book.bbo() == (1_000_000, 300, 1_002_500, 200)
    assert book.levels(BUY) == [(1_000_000, 300), (995_000, 500)]
    assert book.levels(SELL) == [(1_002_500, 200), (1_010_000, 700)]
    assert len(book) == 5


def test_an_add_returns_the_level_change_it_made():
    """Adding 100 shares reports +100 at its side and price, 100 remaining."""
    book = OrderBook("AAPL")
    assert book.add(7, SELL, 1_500_000, 100) == BookChange(7, SELL, 1_500_000, 100, 100)
    assert book.order(7) == RestingOrder(SELL, 1_500_000, 100)


def test_a_one_sided_book_reports_zero_for_the_empty_side():
    """Only asks: the bid price and size are 0."""
    book = OrderBook("AAPL")
    book.add(1, SELL, 1_002_500, 200)
    assert book.bbo() == (0, 0, 1_002_500, 200)
    book.delete(1)
    book.add(2, BUY, 995_000, 10)
    assert book.bbo() == (995_000, 10, 0, 0)


def test_a_partial_execution_reduces_the_order_and_its_level():
    """Executing 60 of order 1 (100 at 100.00) leaves 40 on it and 240 at the level."""
    book = two_sided_book()
    change = book.execute(1, 60)
    assert change == BookChange(1, BUY, 1_000_000, -60, 40)
    assert book.order(1) == RestingOrder(BUY, 1_000_000, 40)
    assert book.bbo() == (1_000_000, 240, 1_002_500, 200)


def test_executing_the_whole_best_level_moves_the_bbo_to_the_next_level():
    """Both orders at 100.00 fully executed: the best bid becomes 99.50 x 500."""
    book = two_sided_book()
    assert book.execute(1, 100).remaining == 0
    assert book.execute(2, 200) == BookChange(2, BUY, 1_000_000, -200, 0)
    assert 1 not in book
    assert 2 not in book
    assert book.bbo() == (995_000, 500, 1_002_500, 200)
    assert book.levels(BUY) == [(995_000, 500)]


def test_a_partial_cancel_reduces_the_level_and_a_full_cancel_removes_the_order():
    """Cancelling 50 then 150 of the 200-share ask leaves the next ask level best."""
    book = two_sided_book()
    assert book.cancel(4, 50) == BookChange(4, SELL, 1_002_500, -50, 150)
    assert book.bbo() == (1_000_000, 300, 1_002_500, 150)
    assert book.cancel(4, 150) == BookChange(4, SELL, 1_002_500, -150, 0)
    assert book.bbo() == (1_000_000, 300, 1_010_000, 700)
    assert book.order(4) is None


def test_a_delete_removes_the_remaining_shares_of_the_order():
    """Deleting order 2 after 50 of it executed removes its last 150 shares."""
    book = two_sided_book()
    book.execute(2, 50)
    assert book.delete(2) == BookChange(2, BUY, 1_000_000, -150, 0)
    assert book.bbo() == (1_000_000, 100, 1_002_500, 200)
    assert len(book) == 4


def test_deleting_every_order_leaves_the_empty_bbo():
    """All five orders deleted: no levels on either side."""
    book = two_sided_book()
    for ref in (1, 2, 3, 4, 5):
        book.delete(ref)
    assert book.bbo() == EMPTY_BBO
    assert book.levels(BUY) == []
    assert book.levels(SELL) == []


def test_a_replace_keeps_the_side_and_moves_the_shares_to_the_new_price():
    """Replacing bid 3 (99.50 x 500) by ref 30 at 100.10 x 250 makes it the best bid."""
    book = two_sided_book()
    removed, added = book.replace(3, 30, 1_001_000, 250)
    assert removed == BookChange(3, BUY, 995_000, -500, 0)
    assert added == BookChange(30, BUY, 1_001_000, 250, 250)
    assert book.order(3) is None
    assert book.order(30) == RestingOrder(BUY, 1_001_000, 250)
    assert book.bbo() == (1_001_000, 250, 1_002_500, 200)
    assert book.levels(BUY) == [(1_001_000, 250), (1_000_000, 300)]


def test_a_replace_at_the_same_price_loses_time_priority():
    """Order 1 replaced at its own price as ref 10 queues behind order 2."""
    book = two_sided_book()
    assert book.orders_at(BUY, 1_000_000) == [1, 2]
    book.replace(1, 10, 1_000_000, 100)
    assert book.orders_at(BUY, 1_000_000) == [2, 10]
    assert book.bbo() == (1_000_000, 300, 1_002_500, 200)


def test_a_partial_execution_keeps_time_priority():
    """Order 1 partly executed stays ahead of order 2 at its level."""
    book = two_sided_book()
    book.execute(1, 1)
    assert book.orders_at(BUY, 1_000_000) == [1, 2]


def test_a_sell_replace_stays_on_the_ask_side_even_below_the_best_bid_price():
    """Replacing ask 5 at 99.00 puts it on the asks (the book does not match orders)."""
    book = two_sided_book()
    book.replace(5, 50, 990_000, 700)
    assert book.order(50) == RestingOrder(SELL, 990_000, 700)
    assert book.bbo() == (1_000_000, 300, 990_000, 700)


def test_operations_on_an_unknown_reference_raise_unknown_order_and_change_nothing():
    """Execute, cancel, delete and replace of ref 99 each raise UnknownOrder naming it."""
    book = two_sided_book()
    for operation in (
        lambda: book.execute(99, 1),
        lambda: book.cancel(99, 1),
        lambda: book.delete(99),
        lambda: book.replace(99, 100, 1_000_000, 1),
    ):
        with pytest.raises(UnknownOrder) as caught:
            operation()
        assert caught.value.ref == 99
        assert caught.value.symbol == "AAPL"
        assert str(caught.value) == "order book 'AAPL' has no live order with reference number 99"
    assert book.bbo() == (1_000_000, 300, 1_002_500, 200)
    assert len(book) == 5


def test_adding_a_live_reference_again_raises_duplicate_order():
    """A second add of ref 1 is refused; the first order is untouched."""
    book = two_sided_book()
    with pytest.raises(DuplicateOrder) as caught:
        book.add(1, SELL, 1_100_000, 5)
    assert caught.value.ref == 1
    assert book.order(1) == RestingOrder(BUY, 1_000_000, 100)
    assert book.levels(SELL) == [(1_002_500, 200), (1_010_000, 700)]


def test_a_replace_onto_a_live_reference_is_refused_and_keeps_the_original():
    """Replacing 1 by the live ref 2 raises DuplicateOrder; order 1 still rests."""
    book = two_sided_book()
    with pytest.raises(DuplicateOrder):
        book.replace(1, 2, 1_001_000, 10)
    assert book.order(1) == RestingOrder(BUY, 1_000_000, 100)
    assert book.bbo() == (1_000_000, 300, 1_002_500, 200)


def test_executing_more_shares_than_rest_is_refused_with_the_accepted_range():
    """Executing 101 of a 100-share order raises InvalidOrder; the order keeps its 100."""
    book = two_sided_book()
    with pytest.raises(InvalidOrder) as caught:
        book.execute(1, 101)
    assert (caught.value.field, caught.value.value) == ("shares", 101)
    assert str(caught.value) == (
        "order book 'AAPL', order 1: shares=101 is invalid; accepted: 1..100, "
        "the shares still resting"
    )
    with pytest.raises(InvalidOrder):
        book.cancel(1, 0)
    assert book.order(1) == RestingOrder(BUY, 1_000_000, 100)


def test_an_add_with_a_bad_side_or_no_shares_is_refused():
    """Side 'X' and 0 shares each raise InvalidOrder; the book stays empty."""
    book = OrderBook("AAPL")
    with pytest.raises(InvalidOrder) as caught:
        book.add(1, "X", 1_000_000, 100)
    assert caught.value.field == "side"
    with pytest.raises(InvalidOrder) as caught:
        book.add(1, BUY, 1_000_000, 0)
    assert caught.value.field == "shares"
    assert len(book) == 0
    assert book.bbo() == EMPTY_BBO


def test_a_replace_with_no_shares_is_refused_and_keeps_the_original():
    """Replacing order 4 by ref 40 with 0 shares raises InvalidOrder; order 4 still rests."""
    book = two_sided_book()
    with pytest.raises(InvalidOrder) as caught:
        book.replace(4, 40, 1_002_000, 0)
    assert (caught.value.ref, caught.value.field) == (40, "shares")
    assert book.order(4) == RestingOrder(SELL, 1_002_500, 200)
    assert 40 not in book


def test_book_errors_belong_to_the_package_root():
    """Every book error is an OrderBookError and a NormalizeError."""
    for cls in (UnknownOrder, DuplicateOrder, InvalidOrder):
        assert issubclass(cls, OrderBookError)
        assert issubclass(cls, NormalizeError)


def test_clear_empties_orders_and_levels():
    """After clear the book has no orders and the empty BBO."""
    book = two_sided_book()
    book.clear()
    assert len(book) == 0
    assert list(book) == []
    assert book.bbo() == EMPTY_BBO


def test_levels_rejects_an_unknown_side():
    """levels('X') raises ValueError naming the accepted sides."""
    with pytest.raises(ValueError, match="side must be 'B' or 'S', got 'X'"):
        OrderBook().levels("X")
