"""A client's outbox: FIFO until the soft limit, then only the newest value per key waits."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conflate import QuoteUpdate, StatusUpdate, TradeUpdate
from fanout.outbox import ConflatingOutbox
from fanout.protocol import encode_update
from tests.unit.conflate.builders import quote, status, trade


def q(symbol: str, seq: int) -> QuoteUpdate:
    return QuoteUpdate(quote(symbol, seq).quote)


def t(symbol: str, seq: int, size: int, total_volume: int, total_count: int) -> TradeUpdate:
    return TradeUpdate(trade(symbol, seq, size=size).trade, size, 1, total_volume, total_count)


def push(box: ConflatingOutbox, update, now: int = 0) -> bool:
    return box.push(update, encode_update(update), now)


def seqs(box: ConflatingOutbox) -> list[tuple[str, int]]:
    return [(m["S"], m["i"]) for m in json.loads("[" + ",".join(box.take(10**6).fragments) + "]")]


def test_below_the_soft_limit_every_update_waits_in_order():
    """Soft limit 10: three quotes of AAPL all wait, FIFO."""
    box = ConflatingOutbox(soft_limit=10, hard_limit=20, encode=encode_update)
    for seq in (1, 2, 3):
        assert push(box, q("AAPL", seq))
    assert seqs(box) == [("AAPL", 1), ("AAPL", 2), ("AAPL", 3)]
    assert box.behind_since_ns is None


def test_at_the_soft_limit_only_the_newest_quote_per_symbol_waits():
    """Soft limit 2 reached at t=5: 50 further AAPL quotes collapse into the last waiting one."""
    box = ConflatingOutbox(soft_limit=2, hard_limit=10, encode=encode_update)
    push(box, q("AAPL", 1))
    push(box, q("MSFT", 2))
    for seq in range(3, 53):
        assert push(box, q("AAPL", seq), now=5)
    assert len(box) == 2
    assert box.behind_since_ns == 5 and box.behind_ns(12) == 7
    assert box.stats.conflated == 50
    assert seqs(box) == [("AAPL", 52), ("MSFT", 2)]


def test_conflated_trades_keep_the_sum_of_volumes_and_counts():
    """Trades merged in a full outbox: last trade, volumes and counts summed, newest totals."""
    box = ConflatingOutbox(soft_limit=1, hard_limit=10, encode=encode_update)
    push(box, t("AAPL", 1, 100, 100, 1))
    push(box, t("AAPL", 2, 200, 300, 2))
    push(box, t("AAPL", 3, 300, 600, 3))
    [message] = json.loads("[" + ",".join(box.take(10).fragments) + "]")
    assert (message["i"], message["v"], message["n"], message["cv"], message["cn"]) == (
        3,
        600,
        3,
        600,
        3,
    )


def test_statuses_and_control_messages_are_never_merged_and_overflow_is_reported():
    """Full outbox: statuses still append; past the hard limit push returns False for good."""
    box = ConflatingOutbox(soft_limit=1, hard_limit=3, encode=encode_update)
    assert push(box, q("AAPL", 1))
    assert push(box, StatusUpdate(status("AAPL", 2).status))
    assert box.push_control('{"T":"success","msg":"x"}')
    assert not push(box, StatusUpdate(status("AAPL", 3).status))
    assert box.overflowed
    assert not push(box, q("AAPL", 4)) and len(box) == 4


def test_behind_is_cleared_only_once_a_send_leaves_the_queue_below_the_soft_limit():
    """take + mark_sent with the queue refilled to the soft limit keeps the client behind."""
    box = ConflatingOutbox(soft_limit=2, hard_limit=100, encode=encode_update)
    for seq in range(1, 4):
        push(box, q(f"S{seq}", seq), now=seq)
    assert box.behind_since_ns == 3
    batch = box.take(2)
    assert (batch.data_count, len(box)) == (2, 1)
    push(box, q("S9", 9), now=9)
    box.mark_sent()
    assert box.behind_since_ns == 3
    box.take(10)
    box.mark_sent()
    assert box.behind_since_ns is None


def test_discard_removes_unsubscribed_updates_and_keeps_control_messages():
    """Unsubscribing MSFT removes its waiting quotes only."""
    box = ConflatingOutbox(soft_limit=10, hard_limit=20, encode=encode_update)
    push(box, q("AAPL", 1))
    box.push_control('{"T":"success","msg":"x"}')
    push(box, q("MSFT", 2))
    assert box.discard(lambda u: u.symbol != "MSFT") == 1
    assert box.take(10).fragments[1] == '{"T":"success","msg":"x"}'
    assert box.stats.discarded == 1


def test_limits_must_be_ordered():
    """soft_limit must be between 1 and hard_limit."""
    with pytest.raises(ValueError, match="need 1 <= soft_limit <= hard_limit, got 5, 2"):
        ConflatingOutbox(soft_limit=5, hard_limit=2, encode=encode_update)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["A", "B", "C", "D"]), st.integers(1, 1000), st.booleans()),
        max_size=300,
    ),
    st.integers(1, 8),
)
def test_a_drained_outbox_delivers_every_trade_volume_and_the_latest_quote(ops, soft):
    """Whatever the soft limit and when the relay drains: summed volumes equal what was
    pushed, trade totals chain without gap or duplicate, the queue never exceeds the soft
    limit plus the number of distinct keys, and the last quote of each symbol arrives."""
    box = ConflatingOutbox(soft_limit=soft, hard_limit=10_000, encode=encode_update)
    totals: dict[str, tuple[int, int]] = {}
    delivered: list[dict] = []
    last_quote: dict[str, int] = {}
    for seq, (symbol, size, drain) in enumerate(ops, 1):
        volume, count = totals.get(symbol, (0, 0))
        totals[symbol] = (volume + size, count + 1)
        push(box, t(symbol, seq, size, volume + size, count + 1))
        push(box, q(symbol, seq))
        last_quote[symbol] = seq
        assert len(box) <= soft + 8
        if drain:
            delivered += json.loads("[" + ",".join(box.take(3).fragments) + "]")
    delivered += json.loads("[" + ",".join(box.take(10**6).fragments) + "]")
    for symbol, (volume, count) in totals.items():
        mine = [m for m in delivered if m["S"] == symbol and m["T"] == "t"]
        assert sum(m["v"] for m in mine) == volume
        running = 0
        for m in mine:
            running += m["n"]
            assert m["cn"] == running
        assert running == count
        assert [m["i"] for m in delivered if m["S"] == symbol and m["T"] == "q"][-1] == (
            last_quote[symbol]
        )
