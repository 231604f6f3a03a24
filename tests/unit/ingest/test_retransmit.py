"""The sender's retransmission buffer: answers, clamping, expiry."""

from __future__ import annotations

import pytest

from ingest.errors import FieldRangeError
from ingest.moldudp64 import Request, decode_packet, encode_packet
from ingest.retransmit import AnswerStatus, Retransmission, RetransmissionBuffer


def message(sequence: int) -> bytes:
    return b"m%d" % sequence


def filled(count: int, **options: int) -> RetransmissionBuffer:
    buffer = RetransmissionBuffer("FEED", **options)
    for sequence in range(1, count + 1):
        assert buffer.append(message(sequence)) == sequence
    return buffer


def test_a_request_is_answered_with_a_packet_of_the_stored_messages():
    """Messages 3..5 of 10 sent come back as one downstream packet numbered from 3."""
    buffer = filled(10)
    request = Request("FEED", 3, 3)
    answer = buffer.answer(request)
    packet = encode_packet("FEED", 3, [b"m3", b"m4", b"m5"])
    assert answer == Retransmission(request, AnswerStatus.ANSWERED, 3, 3, (packet,))


def test_a_request_past_the_last_message_sent_is_clamped_to_it():
    """Asking for 10 from 8 when 10 were sent answers 8, 9 and 10, marked clamped."""
    answer = filled(10).answer(Request("FEED", 8, 10))
    assert (answer.status, answer.sequence, answer.count) == (AnswerStatus.CLAMPED, 8, 3)
    assert decode_packet(answer.packets[0]).messages == (b"m8", b"m9", b"m10")


def test_a_request_larger_than_the_answer_limit_is_clamped_to_it():
    """With max_answer_count 4, a request for 6 messages answers the first 4."""
    answer = filled(10, max_answer_count=4).answer(Request("FEED", 2, 6))
    assert (answer.status, answer.sequence, answer.count) == (AnswerStatus.CLAMPED, 2, 4)
    assert decode_packet(answer.packets[0]).messages == (b"m2", b"m3", b"m4", b"m5")


def test_a_request_whose_first_message_was_evicted_is_expired_and_unanswered():
    """Capacity 3 after 5 sent keeps 3..5: asking from 2 gets nothing, from 3 gets 3..5."""
    buffer = filled(5, capacity=3)
    assert (buffer.first_available, len(buffer)) == (3, 3)
    expired = buffer.answer(Request("FEED", 2, 2))
    assert (expired.status, expired.count, expired.packets) == (AnswerStatus.EXPIRED, 0, ())
    assert buffer.get(2) is None
    kept = buffer.answer(Request("FEED", 3, 3))
    assert (kept.status, kept.count) == (AnswerStatus.ANSWERED, 3)


def test_requests_for_unsent_messages_or_another_session_are_unanswered():
    """Nothing is sent for sequence numbers not yet sent or for a different session."""
    buffer = filled(5)
    future = buffer.answer(Request("FEED", 6, 1))
    other = buffer.answer(Request("OTHER", 1, 1))
    assert (future.status, future.packets) == (AnswerStatus.NOT_YET_SENT, ())
    assert (other.status, other.packets) == (AnswerStatus.WRONG_SESSION, ())


def test_a_long_answer_is_split_into_packets_within_the_payload_limit():
    """100 messages of 50 bytes at max_payload 400 come back in 15 packets of at most 400."""
    buffer = RetransmissionBuffer("FEED", max_payload=400)
    buffer.extend(bytes([sequence]) * 50 for sequence in range(100))
    answer = buffer.answer(Request("FEED", 1, 100))
    assert len(answer.packets) == 15
    assert max(len(packet) for packet in answer.packets) <= 400
    decoded = [decode_packet(packet) for packet in answer.packets]
    assert [m[0] for packet in decoded for m in packet.messages] == list(range(100))


def test_a_buffer_needs_room_for_at_least_one_message():
    """Capacity 0 is refused with the accepted range."""
    with pytest.raises(FieldRangeError) as excinfo:
        RetransmissionBuffer("FEED", capacity=0)
    assert str(excinfo.value) == f"capacity=0 is out of range: expected 1..{2**64 - 1}"
