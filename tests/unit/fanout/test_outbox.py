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


class _ModelOutbox:
    """The outbox's contract in the plainest form: a list, searched backwards to merge."""

    def __init__(self, soft_limit: int, hard_limit: int) -> None:
        self.soft_limit = soft_limit
        self.hard_limit = hard_limit
        self.entries: list[list] = []  # [update or None, fragment]
        self.overflowed = False

    def push(self, update, fragment: str) -> bool:
        if self.overflowed:
            return False
        if update is not None and update.key is not None and len(self.entries) >= self.soft_limit:
            for entry in reversed(self.entries):
                if entry[0] is not None and entry[0].key == update.key:
                    entry[0] = entry[0].merge(update)
                    entry[1] = encode_update(entry[0])
                    return True
        self.entries.append([update, fragment])
        self.overflowed = len(self.entries) > self.hard_limit
        return not self.overflowed

    def take(self, max_items: int) -> list[str]:
        taken, self.entries = self.entries[:max_items], self.entries[max_items:]
        return [fragment for _, fragment in taken]

    def discard(self, symbol: str) -> int:
        kept = [e for e in self.entries if e[0] is None or e[0].symbol != symbol]
        removed = len(self.entries) - len(kept)
        self.entries = kept
        return removed


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("quote"), st.sampled_from("ABC")),
        st.tuples(st.just("trade"), st.sampled_from("ABC")),
        st.tuples(st.just("status"), st.sampled_from("ABC")),
        st.tuples(st.just("control"), st.just("")),
        st.tuples(st.just("take"), st.integers(1, 5)),
        st.tuples(st.just("discard"), st.sampled_from("ABC")),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(ops=_OPS, soft=st.integers(1, 6), extra=st.integers(0, 8))
def test_interleaved_pushes_takes_and_discards_match_the_plain_model(ops, soft, extra):
    """Any interleaving of pushes (quotes, trades, statuses, control messages), takes and
    discards yields the same frames, counts and overflow as a plain list that merges into
    the newest waiting entry of a key once the queue is at the soft limit."""
    box = ConflatingOutbox(soft_limit=soft, hard_limit=soft + extra, encode=encode_update)
    model = _ModelOutbox(soft, soft + extra)
    totals: dict[str, int] = {}
    for seq, (op, arg) in enumerate(ops, 1):
        if op in ("quote", "trade", "status"):
            if op == "quote":
                update = q(arg, seq)
            elif op == "trade":
                totals[arg] = totals.get(arg, 0) + 1
                update = t(arg, seq, 10, 10 * totals[arg], totals[arg])
            else:
                update = StatusUpdate(status(arg, seq).status)
            fragment = encode_update(update)
            assert box.push(update, fragment, seq) == model.push(update, fragment)
        elif op == "control":
            assert box.push_control('{"T":"success"}') == model.push(None, '{"T":"success"}')
        elif op == "take":
            assert box.take(arg).fragments == model.take(arg)
        else:
            assert box.discard(lambda u, gone=arg: u.symbol != gone) == model.discard(arg)
        assert len(box) == len(model.entries)
        assert box.overflowed == model.overflowed
        if box.overflowed:
            break
    assert box.take(10**6).fragments == model.take(10**6)
