"""``fanout._fastwrite.write_direct``: which clients it writes, the exact frames, the rest.

The clients here are plain records with the attributes ``FanoutServer._flush`` reads, and a
transport that keeps what is written; the same function is exercised over real sockets by
``tests/integration/fanout`` (every pulled tick goes through it).
"""

from __future__ import annotations

import time
from operator import itemgetter

import pytest
from websockets.frames import OP_TEXT, Frame
from websockets.protocol import State

from fanout._fastwrite import write_direct

UNKNOWN = float("inf")  # an update without a publish time
BASE = 0  # publish times are ns after BASE


class Transport:
    def __init__(self, fail: bool = False) -> None:
        self.written: list[bytes] = []
        self.fail = fail

    def write(self, data: bytes) -> None:
        if self.fail:
            raise ConnectionResetError("gone")
        self.written.append(data)


class Protocol:
    def __init__(self, state: State) -> None:
        self.state = state


class Ws:
    def __init__(self, *, paused: bool = False, state: State = State.OPEN, fail: bool = False):
        self.paused = paused
        self.protocol = Protocol(state)
        self.transport = Transport(fail)


class Stats:
    sent = 0


class Outbox:
    def __init__(self, waiting: int = 0) -> None:
        self.waiting = [None] * waiting
        self.stats = Stats()


class Client:
    def __init__(self, *, pending=(), evicted=False, sending=False, waiting=0, **ws) -> None:
        self.pending = list(pending)
        self.evicted = evicted
        self.sending = sending
        self.outbox = Outbox(waiting)
        self.ws = Ws(**ws)


def text_frame(payload: bytes) -> bytes:
    return Frame(OP_TEXT, payload).serialize(mask=False, extensions=[])


ENTRIES = [(b'{"a":1}', 1_000.0), None, (b'{"c":3}', 3_000.0), (b'{"d":4}', 500.0)]


def test_a_caught_up_client_gets_one_text_frame_of_its_fragments_and_a_delay():
    """Slots 0, 1 (no update this tick), 2: one frame [a,c]; counts, bytes, the sent
    counter and one delay measured from the oldest of its publish times (1,000 ns)."""
    client = Client()
    getter = itemgetter(0, 1, 2)
    before = time.time_ns()
    frames, payload, messages, rest, delays = write_direct(
        [(client, getter)], {client: getter}, ENTRIES, 500, State.OPEN, BASE
    )
    after = time.time_ns()
    body = b'[{"a":1},{"c":3}]'
    assert client.ws.transport.written == [text_frame(body)]
    assert (frames, payload, messages, rest) == (1, len(body), 2, [])
    assert client.outbox.stats.sent == 2
    [delay] = delays
    assert before - 1_000 <= delay <= after - 1_000


@pytest.mark.parametrize("size", [1, 125, 126, 65_535, 65_536, 200_000])
def test_frames_of_every_header_size_are_the_frames_websockets_writes(size: int):
    """One fragment making a payload of ``size`` bytes ("[" + fragment + "]"), with no
    publish time."""
    client = Client()
    getter = itemgetter(slice(0, 1))
    fragment = b"x" * (size - 2) if size >= 2 else b""
    *_, delays = write_direct(
        [(client, getter)], {client: getter}, [(fragment, UNKNOWN)], 500, State.OPEN, BASE
    )
    assert delays == []  # no publish time, no latency observation
    if size < 2:
        assert client.ws.transport.written == [text_frame(b"[]")]
    else:
        assert client.ws.transport.written == [text_frame(b"[" + fragment + b"]")]


@pytest.mark.parametrize(
    "client",
    [
        Client(pending=[3]),
        Client(evicted=True),
        Client(sending=True),
        Client(waiting=1),
        Client(paused=True),
        Client(state=State.CLOSING),
    ],
    ids=["pushed share", "evicted", "relay sending", "queued", "paused", "closing"],
)
def test_a_client_not_caught_up_is_returned_for_the_python_path_untouched(client):
    getter = itemgetter(0, 2)
    item = (client, getter)
    result = write_direct([item], {client: getter}, ENTRIES, 500, State.OPEN, BASE)
    assert result == (0, 0, 0, [item], [])
    assert client.ws.transport.written == []
    assert client.outbox.stats.sent == 0


def test_changed_getters_push_only_and_big_shares_go_back_in_order_empty_shares_vanish():
    """Work: a client whose getter changed since routing, a push-only client (no getter),
    a client with more messages than ``batch_max`` (the Python path splits frames), a
    client with no update this tick (skipped), and a caught-up one (written)."""
    changed, push_only, big, idle, fine = Client(), Client(), Client(), Client(), Client()
    work = [
        (changed, itemgetter(0, 2)),
        (push_only, None),
        (big, itemgetter(0, 2, 3)),
        (idle, itemgetter(slice(1, 2))),
        (fine, itemgetter(2, 3)),
    ]
    getters = {changed: itemgetter(0), big: work[2][1], idle: work[3][1], fine: work[4][1]}
    frames, payload, messages, rest, delays = write_direct(
        work, getters, ENTRIES, 2, State.OPEN, BASE
    )
    assert rest == [work[0], work[1], work[2]]
    assert (frames, messages, len(delays)) == (1, 2, 1)
    assert fine.ws.transport.written == [text_frame(b'[{"c":3},{"d":4}]')]
    assert [c.ws.transport.written for c in (changed, push_only, big, idle)] == [[], [], [], []]


def test_a_write_that_raises_is_dropped_and_the_others_are_still_written():
    gone, fine = Client(fail=True), Client()
    getter = itemgetter(0, 2)
    frames, _, messages, rest, _ = write_direct(
        [(gone, getter), (fine, getter)],
        {gone: getter, fine: getter},
        ENTRIES,
        500,
        State.OPEN,
        BASE,
    )
    assert (frames, messages, rest) == (1, 2, [])
    assert gone.outbox.stats.sent == 0
    assert fine.ws.transport.written == [text_frame(b'[{"a":1},{"c":3}]')]


def test_bad_arguments_raise_clear_errors():
    client = Client()
    getter = itemgetter(slice(0, 1))
    for bad in (["text"], [("text", 1.0)], [(b"{}", 1)], [(b"{}",)]):
        with pytest.raises(TypeError, match=r"entries must be None or \(bytes, float\) pairs"):
            write_direct([(client, getter)], {client: getter}, bad, 500, State.OPEN, BASE)
    with pytest.raises(TypeError, match="work items are"):
        write_direct([client], {}, [], 500, State.OPEN, BASE)
    with pytest.raises(TypeError, match="takes 6 arguments"):
        write_direct([], {}, [])
    assert client.ws.transport.written == []
