"""The receiver's GapRecoverer: exact actions for each way a feed can misbehave."""

from __future__ import annotations

import pytest

from ingest.errors import FieldRangeError
from ingest.moldudp64 import Packet, PacketKind, Request
from ingest.sequencer import (
    Deliver,
    EndOfSession,
    GapDetected,
    GapRecovered,
    GapRecoverer,
    RecoveryStats,
    SessionStarted,
    Unrecoverable,
)


def messages(first: int, count: int) -> tuple[bytes, ...]:
    return tuple(b"m%d" % sequence for sequence in range(first, first + count))


def data(first: int, count: int = 1, session: str = "S") -> Packet:
    return Packet(session, first, messages(first, count))


def deliver(first: int, count: int, session: str = "S") -> Deliver:
    return Deliver(session, first, messages(first, count))


def heartbeat(next_sequence: int, session: str = "S") -> Packet:
    return Packet(session, next_sequence, (), PacketKind.HEARTBEAT)


def end_of_session(next_sequence: int, session: str = "S") -> Packet:
    return Packet(session, next_sequence, (), PacketKind.END_OF_SESSION)


def test_in_order_packets_are_delivered_as_they_come():
    """Packets 1..3 and 4..5 in order: the session starts, then both runs are delivered."""
    recoverer = GapRecoverer()
    assert recoverer.on_packet(data(1, 3), 0) == [SessionStarted("S", None), deliver(1, 3)]
    assert recoverer.on_packet(data(4, 2), 1) == [deliver(4, 2)]
    assert recoverer.next_sequence == 6
    assert recoverer.caught_up
    assert recoverer.stats == RecoveryStats(packets=2, messages=5)


def test_a_duplicate_packet_is_dropped_and_counted():
    """The same packet twice (an A/B feed, say) delivers once; the copy counts 3 duplicates."""
    recoverer = GapRecoverer()
    recoverer.on_packet(data(1, 3), 0)
    assert recoverer.on_packet(data(1, 3), 1) == []
    assert (recoverer.stats.messages, recoverer.stats.duplicates) == (3, 3)


def test_a_partly_overlapping_packet_delivers_only_its_new_messages():
    """After 1..3, a packet 2..5 delivers 4 and 5 and counts 2 and 3 as duplicates."""
    recoverer = GapRecoverer()
    recoverer.on_packet(data(1, 3), 0)
    assert recoverer.on_packet(data(2, 4), 1) == [deliver(4, 2)]
    assert recoverer.stats.duplicates == 2


def test_reordered_packets_are_buffered_until_the_gap_fills():
    """1..2, then 5..6 early (gap 3..4 requested), then 3..4: 3..6 delivered in one run."""
    recoverer = GapRecoverer()
    recoverer.on_packet(data(1, 2), 0)
    assert recoverer.on_packet(data(5, 2), 1) == [GapDetected("S", 3, 2), Request("S", 3, 2)]
    assert recoverer.buffered_messages == 2
    assert recoverer.on_packet(data(3, 2), 2) == [deliver(3, 4), GapRecovered("S", 3, 2)]
    assert recoverer.caught_up
    assert recoverer.next_deadline_ns is None
    assert recoverer.stats == RecoveryStats(
        packets=3, messages=6, reordered=2, gaps=1, recovered=1, requests=1
    )


def test_a_retransmission_filling_the_gap_stops_the_retries():
    """A gap 3..7 re-requested at t=0 and answered in two packets: no retry at the deadline."""
    recoverer = GapRecoverer(request_timeout_ns=100)
    recoverer.on_packet(data(1, 2), 0)
    assert recoverer.on_packet(data(8), 10) == [GapDetected("S", 3, 5), Request("S", 3, 5)]
    assert recoverer.next_deadline_ns == 110
    assert recoverer.on_packet(data(3, 3), 50) == [deliver(3, 3)]
    assert recoverer.on_packet(data(6, 2), 60) == [deliver(6, 3), GapRecovered("S", 3, 5)]
    assert recoverer.on_timer(110) == []
    assert recoverer.stats.requests == 1


def test_an_unanswered_gap_is_retried_then_declared_unrecoverable_and_delivery_resumes():
    """Gap 3..4 with 2 retries of 100 ns: re-sent at 100 and 200, given up at 300; 5..6 go."""
    recoverer = GapRecoverer(request_timeout_ns=100, max_retries=2)
    recoverer.on_packet(data(1, 2), 0)
    assert recoverer.on_packet(data(5, 2), 0) == [GapDetected("S", 3, 2), Request("S", 3, 2)]
    assert recoverer.on_timer(99) == []
    assert recoverer.on_timer(100) == [Request("S", 3, 2)]
    assert recoverer.next_deadline_ns == 200
    assert recoverer.on_timer(200) == [Request("S", 3, 2)]
    assert recoverer.on_timer(300) == [Unrecoverable("S", 3, 2), deliver(5, 2)]
    assert recoverer.caught_up
    assert recoverer.on_packet(data(7), 301) == [deliver(7, 1)]
    # The lost messages arriving at last are not delivered out of order.
    assert recoverer.on_packet(data(3, 2), 302) == []
    assert recoverer.stats == RecoveryStats(
        packets=4,
        messages=5,
        duplicates=2,
        reordered=2,
        gaps=1,
        unrecoverable=2,
        requests=3,
        retries=2,
    )


def test_a_partial_answer_is_progress_and_does_not_use_up_a_retry():
    """Gap 3..6 answered only for 3..4 (a clamping server): the rest is re-sent, no retry."""
    recoverer = GapRecoverer(request_timeout_ns=100, max_retries=0)
    recoverer.on_packet(data(1, 2), 0)
    recoverer.on_packet(data(7), 0)
    assert recoverer.on_packet(data(3, 2), 10) == [deliver(3, 2)]
    assert recoverer.on_timer(100) == [Request("S", 5, 2)]
    assert recoverer.stats.retries == 0
    assert recoverer.on_timer(200) == [Unrecoverable("S", 5, 2), deliver(7, 1)]


def test_a_later_range_can_be_given_up_while_an_earlier_one_is_still_recovering():
    """Gaps 2..3 and 5: 2 arrives (progress) so 3 is re-sent, 5 is given up and skipped
    when 3 arrives; 5 arriving after it was given up is dropped as late."""
    recoverer = GapRecoverer(request_timeout_ns=100, max_retries=0)
    recoverer.on_packet(data(1), 0)
    assert recoverer.on_packet(data(4), 0) == [GapDetected("S", 2, 2), Request("S", 2, 2)]
    assert recoverer.on_packet(data(6), 0) == [GapDetected("S", 5, 1), Request("S", 5, 1)]
    assert recoverer.on_packet(data(2), 10) == [deliver(2, 1)]
    assert recoverer.on_timer(100) == [Request("S", 3, 1), Unrecoverable("S", 5, 1)]
    assert recoverer.on_packet(data(5), 110) == []
    assert recoverer.stats.late == 1
    assert recoverer.on_packet(data(3), 120) == [
        deliver(3, 2),
        deliver(6, 1),
        GapRecovered("S", 2, 2),
    ]
    assert recoverer.caught_up


def test_an_earlier_request_overtaken_by_a_later_answer_has_failed():
    """Gaps at 2 and 4; 4's answer comes first, so 2's answer was lost: it is given up."""
    recoverer = GapRecoverer(max_retries=0)
    recoverer.on_packet(data(1), 0)
    assert recoverer.on_packet(data(3), 1) == [GapDetected("S", 2, 1), Request("S", 2, 1)]
    assert recoverer.on_packet(data(5), 2) == [GapDetected("S", 4, 1), Request("S", 4, 1)]
    assert recoverer.on_packet(data(4), 3, retransmission=True) == [
        Unrecoverable("S", 2, 1),
        deliver(3, 3),
        GapRecovered("S", 4, 1),
    ]


def test_a_reordered_live_packet_filling_a_later_gap_does_not_fail_an_earlier_request():
    """Gaps at 2 and 4; 4 arrives late on the live feed: the request for 2 stays pending."""
    recoverer = GapRecoverer(max_retries=0)
    recoverer.on_packet(data(1), 0)
    recoverer.on_packet(data(3), 1)
    recoverer.on_packet(data(5), 2)
    assert recoverer.on_packet(data(4), 3) == []
    assert (recoverer.stats.retries, recoverer.stats.unrecoverable) == (0, 0)
    assert recoverer.on_packet(data(2), 4, retransmission=True) == [
        deliver(2, 4),
        GapRecovered("S", 2, 1),
        GapRecovered("S", 4, 1),
    ]


def test_an_overtaken_request_with_retries_left_is_re_sent_at_once():
    """The same overtaking with one retry allowed re-sends the request for 2 immediately."""
    recoverer = GapRecoverer(max_retries=1)
    recoverer.on_packet(data(1), 0)
    recoverer.on_packet(data(3), 1)
    recoverer.on_packet(data(5), 2)
    assert recoverer.on_packet(data(4), 3, retransmission=True) == [Request("S", 2, 1)]
    assert recoverer.stats.retries == 1
    assert recoverer.on_packet(data(2), 4) == [
        deliver(2, 4),
        GapRecovered("S", 2, 1),
        GapRecovered("S", 4, 1),
    ]


def test_a_heartbeat_announcing_a_higher_sequence_reveals_a_gap():
    """Delivered up to 2, a heartbeat says 5 is next: 3..4 are missing and requested once."""
    recoverer = GapRecoverer()
    recoverer.on_packet(data(1, 2), 0)
    assert recoverer.on_packet(heartbeat(5), 1) == [GapDetected("S", 3, 2), Request("S", 3, 2)]
    assert recoverer.on_packet(heartbeat(5), 2) == []
    assert recoverer.announced_sequence == 5
    assert recoverer.on_packet(data(3, 2), 3) == [deliver(3, 2), GapRecovered("S", 3, 2)]


def test_a_heartbeat_at_the_expected_sequence_is_silent():
    """A heartbeat saying 3 is next after 1..2 changes nothing."""
    recoverer = GapRecoverer()
    recoverer.on_packet(data(1, 2), 0)
    assert recoverer.on_packet(heartbeat(3), 1) == []
    assert recoverer.stats == RecoveryStats(packets=2, messages=2)


def test_the_first_packet_past_sequence_one_is_a_gap_from_the_session_start():
    """Joining at 4 with first_sequence 1 requests 1..3 before delivering anything."""
    recoverer = GapRecoverer()
    assert recoverer.on_packet(data(4), 0) == [
        SessionStarted("S", None),
        GapDetected("S", 1, 3),
        Request("S", 1, 3),
    ]


def test_a_late_joiner_without_a_first_sequence_adopts_the_first_packet():
    """first_sequence=None starts at whatever sequence number arrives first."""
    recoverer = GapRecoverer(first_sequence=None)
    assert recoverer.on_packet(data(1000, 2), 0) == [SessionStarted("S", None), deliver(1000, 2)]


def test_a_large_gap_is_requested_in_chunks_with_a_bound_on_requests_in_flight():
    """Gap 2..2501 in chunks of 1000, 2 in flight: the third chunk waits for a slot."""
    recoverer = GapRecoverer(max_request_count=1000, max_outstanding_requests=2)
    recoverer.on_packet(data(1), 0)
    assert recoverer.on_packet(data(2502), 1) == [
        GapDetected("S", 2, 2500),
        Request("S", 2, 1000),
        Request("S", 1002, 1000),
    ]
    assert recoverer.outstanding_requests == 2
    actions = recoverer.on_packet(data(2, 1000), 2)
    assert actions == [deliver(2, 1000), Request("S", 2002, 500)]


def test_a_new_session_closes_the_old_one_and_restarts_the_sequence():
    """Session A with 3 missing and 4 buffered switches to B: 3 is lost, 4 delivered, B at 1."""
    recoverer = GapRecoverer()
    recoverer.on_packet(data(1, 2, session="A"), 0)
    recoverer.on_packet(data(4, session="A"), 1)
    assert recoverer.on_packet(data(1, 2, session="B"), 2) == [
        Unrecoverable("A", 3, 1),
        deliver(4, 1, session="A"),
        SessionStarted("B", "A"),
        deliver(1, 2, session="B"),
    ]
    assert recoverer.session == "B"
    assert recoverer.outstanding_requests == 0
    # A late retransmission for A must not switch back.
    assert recoverer.on_packet(data(3, session="A"), 3) == []
    assert recoverer.stats.stale_packets == 1
    assert recoverer.on_packet(data(3, session="B"), 4) == [deliver(3, 1, session="B")]


def test_end_of_session_is_reported_once_everything_before_it_is_delivered():
    """Delivered 1..3, end of session at 4: reported at once, and only once."""
    recoverer = GapRecoverer()
    recoverer.on_packet(data(1, 3), 0)
    assert recoverer.on_packet(end_of_session(4), 1) == [EndOfSession("S", 4)]
    assert recoverer.on_packet(end_of_session(4), 2) == []


def test_end_of_session_waits_for_the_gap_it_reveals_to_be_resolved():
    """End of session at 6 after 1..3 requests 4..5 and is reported after they arrive."""
    recoverer = GapRecoverer()
    recoverer.on_packet(data(1, 3), 0)
    assert recoverer.on_packet(end_of_session(6), 1) == [
        GapDetected("S", 4, 2),
        Request("S", 4, 2),
    ]
    assert recoverer.on_packet(data(4, 2), 2) == [
        deliver(4, 2),
        GapRecovered("S", 4, 2),
        EndOfSession("S", 6),
    ]


def test_overflowing_the_reorder_buffer_gives_up_the_oldest_missing_range():
    """With room for 3 buffered messages, a fourth behind the gap at 2 declares 2 lost."""
    recoverer = GapRecoverer(max_buffered_messages=3)
    recoverer.on_packet(data(1), 0)
    assert recoverer.on_packet(data(3), 1) == [GapDetected("S", 2, 1), Request("S", 2, 1)]
    assert recoverer.on_packet(data(4), 2) == []
    assert recoverer.on_packet(data(5), 3) == []
    assert recoverer.on_packet(data(6), 4) == [Unrecoverable("S", 2, 1), deliver(3, 4)]
    assert recoverer.buffered_messages == 0
    assert recoverer.outstanding_requests == 0
    assert recoverer.next_deadline_ns is None


def test_overflow_gives_up_one_range_at_a_time_keeping_later_gaps_in_recovery():
    """Gaps at 2 and 4, room for 2: the third buffered message gives up 2 only; 4 is still due."""
    recoverer = GapRecoverer(max_buffered_messages=2)
    recoverer.on_packet(data(1), 0)
    recoverer.on_packet(data(3), 1)
    recoverer.on_packet(data(5), 2)
    assert recoverer.on_packet(data(6), 3) == [Unrecoverable("S", 2, 1), deliver(3, 1)]
    assert (recoverer.next_sequence, recoverer.outstanding_requests) == (4, 1)
    assert recoverer.on_packet(data(4), 4) == [deliver(4, 3), GapRecovered("S", 4, 1)]


@pytest.mark.parametrize(
    ("option", "value", "text"),
    [
        ("max_request_count", 0, "max_request_count=0 is out of range: expected 1..65535"),
        ("max_retries", -1, f"max_retries=-1 is out of range: expected 0..{2**64 - 1}"),
        ("request_timeout_ns", 0, f"request_timeout_ns=0 is out of range: expected 1..{2**64 - 1}"),
    ],
)
def test_tuning_options_out_of_range_are_refused(option, value, text):
    """Each option names itself and the range it accepts."""
    with pytest.raises(FieldRangeError) as excinfo:
        GapRecoverer(**{option: value})
    assert str(excinfo.value) == text
