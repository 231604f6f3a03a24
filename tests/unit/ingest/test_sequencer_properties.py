"""Property tests: a lossy, duplicating, reordering feed through GapRecoverer.

A random message stream is packed into MoldUDP64 packets; the packets are randomly dropped,
duplicated and reordered on the way; a simulated re-request server backed by
``RetransmissionBuffer`` answers the receiver's requests (after a delay, sometimes not at
all). Whatever happens, every sequence number must come out exactly once: delivered in
strictly increasing order, or declared unrecoverable.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.moldudp64 import Request, decode_packet, encode_end_of_session, encode_packets
from ingest.retransmit import RetransmissionBuffer
from ingest.sequencer import (
    Deliver,
    EndOfSession,
    GapDetected,
    GapRecovered,
    GapRecoverer,
    SessionStarted,
    Unrecoverable,
)

SESSION = "FEED"
STEP_NS = 10  # between live packets
TIMEOUT_NS = 100


@dataclass(frozen=True)
class Feed:
    messages: list[bytes]
    arrivals: list[bytes]  # live packets as they reach the receiver, after the network's doing


@dataclass
class Outcome:
    delivered: list[tuple[int, bytes]] = field(default_factory=list)
    lost: list[tuple[int, int]] = field(default_factory=list)
    ends: list[EndOfSession] = field(default_factory=list)
    requests: int = 0


@st.composite
def feeds(draw: st.DrawFn) -> Feed:
    count = draw(st.integers(1, 250))
    sizes = draw(st.lists(st.integers(0, 40), min_size=count, max_size=count))
    messages = [b"%d:" % (index + 1) + b"x" * size for index, size in enumerate(sizes)]
    packets = encode_packets(SESSION, 1, messages, max_payload=draw(st.integers(70, 400)))
    copies = draw(
        st.lists(st.sampled_from([1, 1, 1, 0, 2]), min_size=len(packets), max_size=len(packets))
    )
    sent = [packet for packet, copy in zip(packets, copies, strict=True) for _ in range(copy)]
    # Reordering: each packet is displaced by up to `spread` positions (a huge spread is an
    # arbitrary permutation).
    spread = draw(st.sampled_from([0, 2, 8, 10_000]))
    jitter = draw(st.lists(st.integers(0, spread), min_size=len(sent), max_size=len(sent)))
    order = sorted(range(len(sent)), key=lambda index: (index + jitter[index], index))
    return Feed(messages, [sent[index] for index in order])


def simulate(
    feed: Feed,
    recoverer: GapRecoverer,
    server: RetransmissionBuffer,
    data: st.DataObject | None = None,
    *,
    lose_answers: bool = False,
    max_delay_ns: int = 0,
) -> Outcome:
    """Run the feed, the server and the timers in simulated time until nothing is pending.

    Per request, ``data`` draws whether its answer is lost (only if ``lose_answers``) and its
    delay (up to ``max_delay_ns``); without ``data`` every request is answered at once.
    """
    outcome = Outcome()
    answers: list[tuple[int, int, bytes]] = []  # (due_ns, order, packet): FIFO per due time
    order = 0

    def carry_out(actions: list, now: int) -> None:
        nonlocal order
        for action in actions:
            match action:
                case Deliver(sequence=first, messages=messages):
                    outcome.delivered.extend(enumerate(messages, first))
                case Unrecoverable(sequence=first, count=count):
                    outcome.lost.append((first, count))
                case EndOfSession():
                    outcome.ends.append(action)
                case Request():
                    outcome.requests += 1
                    delay = 0
                    if data is not None:
                        if lose_answers and data.draw(st.booleans(), label="answer lost"):
                            continue
                        delay = data.draw(st.integers(0, max_delay_ns), label="delay")
                    for packet in server.answer(action).packets:
                        order += 1
                        heapq.heappush(answers, (now + delay, order, packet))
                case SessionStarted() | GapDetected() | GapRecovered():
                    pass
                case _:
                    raise AssertionError(f"unexpected action {action!r}")

    live = [(index * STEP_NS, packet) for index, packet in enumerate(feed.arrivals)]
    end_at = len(live) * STEP_NS
    live.append((end_at, encode_end_of_session(SESSION, len(feed.messages) + 1)))
    live.reverse()
    now = 0
    for _ in range(1_000_000):
        deadline = recoverer.next_deadline_ns
        candidates = []
        if live:
            candidates.append(live[-1][0])
        if answers:
            candidates.append(answers[0][0])
        if deadline is not None:
            candidates.append(deadline)
        if not candidates:
            break
        now = max(now, min(candidates))
        if answers and answers[0][0] <= now:
            _, _, packet = heapq.heappop(answers)
            answer = recoverer.on_packet(decode_packet(packet), now, retransmission=True)
            carry_out(answer, now)
        elif live and live[-1][0] <= now:
            _, packet = live.pop()
            carry_out(recoverer.on_packet(decode_packet(packet), now), now)
        else:
            carry_out(recoverer.on_timer(now), now)
    else:
        raise AssertionError("the simulation did not settle")
    return outcome


def server_for(feed: Feed, **options: int) -> RetransmissionBuffer:
    server = RetransmissionBuffer(SESSION, **options)
    server.extend(feed.messages)
    return server


def assert_exactly_once(feed: Feed, outcome: Outcome) -> None:
    sequences = [sequence for sequence, _ in outcome.delivered]
    assert all(a < b for a, b in pairwise(sequences))
    for sequence, message in outcome.delivered:
        assert message == feed.messages[sequence - 1]
    lost = [s for first, count in outcome.lost for s in range(first, first + count)]
    assert sorted(sequences + lost) == list(range(1, len(feed.messages) + 1))
    assert outcome.ends == [EndOfSession(SESSION, len(feed.messages) + 1)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    feed=feeds(),
    max_request_count=st.integers(1, 64),
    max_answer_count=st.integers(1, 64),
    max_outstanding_requests=st.integers(1, 4),
)
def test_when_every_re_request_is_answered_the_stream_comes_out_exactly(
    feed, max_request_count, max_answer_count, max_outstanding_requests
):
    """Drops, duplicates and reordering, a server that answers everything (maybe clamped):
    the delivered messages are the original stream, in order, and nothing is unrecoverable."""
    recoverer = GapRecoverer(
        request_timeout_ns=TIMEOUT_NS,
        max_request_count=max_request_count,
        max_outstanding_requests=max_outstanding_requests,
        max_buffered_messages=10_000,
    )
    server = server_for(feed, max_answer_count=max_answer_count)
    outcome = simulate(feed, recoverer, server, None)
    assert outcome.delivered == list(enumerate(feed.messages, 1))
    assert outcome.lost == []
    assert outcome.ends == [EndOfSession(SESSION, len(feed.messages) + 1)]
    assert recoverer.caught_up
    assert recoverer.stats.unrecoverable == 0
    assert recoverer.stats.messages == len(feed.messages)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    feed=feeds(),
    max_retries=st.integers(0, 3),
    max_buffered_messages=st.sampled_from([0, 1, 5, 50, 10_000]),
    capacity=st.sampled_from([1, 10, 100, 10_000]),
    max_request_count=st.integers(1, 64),
    max_outstanding_requests=st.integers(1, 4),
    answer_fate=st.data(),
)
def test_with_lost_and_late_answers_every_sequence_is_delivered_or_lost_exactly_once(
    feed,
    max_retries,
    max_buffered_messages,
    capacity,
    max_request_count,
    max_outstanding_requests,
    answer_fate,
):
    """Answers lost, late past the timeout or expired on the server, a small reorder buffer:
    delivered sequence numbers strictly increase, and delivered plus declared-unrecoverable
    cover every sequence number exactly once."""
    recoverer = GapRecoverer(
        request_timeout_ns=TIMEOUT_NS,
        max_retries=max_retries,
        max_buffered_messages=max_buffered_messages,
        max_request_count=max_request_count,
        max_outstanding_requests=max_outstanding_requests,
    )
    server = server_for(feed, capacity=capacity)
    outcome = simulate(
        feed, recoverer, server, answer_fate, lose_answers=True, max_delay_ns=2 * TIMEOUT_NS
    )
    assert_exactly_once(feed, outcome)
    assert recoverer.caught_up
    lost_total = sum(count for _, count in outcome.lost)
    assert recoverer.stats.unrecoverable == lost_total
    assert recoverer.stats.messages == len(outcome.delivered)
    assert recoverer.buffered_messages == 0


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feed=feeds(), answer_fate=st.data())
def test_answers_late_but_within_the_timeout_with_retries_to_spare_lose_nothing(feed, answer_fate):
    """Every answer arrives, up to a full timeout late, with retries to spare for answers
    overtaken by reordered live packets: the stream still comes out exactly."""
    recoverer = GapRecoverer(request_timeout_ns=3 * TIMEOUT_NS + 1, max_retries=1_000)
    server = server_for(feed)
    outcome = simulate(feed, recoverer, server, answer_fate, max_delay_ns=3 * TIMEOUT_NS)
    assert outcome.delivered == list(enumerate(feed.messages, 1))
    assert outcome.lost == []
