"""The sender side of MoldUDP64 gap recovery: a bounded store answering re-requests, pure.

The exchange simulator appends every message it sends (in sequence order) and hands each
decoded ``Request`` to ``RetransmissionBuffer.answer``; the packets it returns are sent
unicast to the requester. Like a real re-request server, nothing is sent for a range that is
no longer stored: the receiver's timeout then declares it unrecoverable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from ingest.errors import FieldRangeError
from ingest.moldudp64 import (
    DEFAULT_MAX_PAYLOAD,
    MAX_SEQUENCE,
    Request,
    encode_packets,
    session_field,
)

__all__ = ["AnswerStatus", "Retransmission", "RetransmissionBuffer"]

DEFAULT_RETRANSMIT_CAPACITY = 1_000_000
DEFAULT_MAX_ANSWER_COUNT = 1000


class AnswerStatus(StrEnum):
    """How a re-request was answered."""

    ANSWERED = "answered"  # every requested message is in the packets
    CLAMPED = "clamped"  # a prefix: capped at max_answer_count or at the last message sent
    EXPIRED = "expired"  # the first requested message was evicted (or precedes the session)
    NOT_YET_SENT = "not_yet_sent"  # the first requested message has not been sent yet
    WRONG_SESSION = "wrong_session"  # the request names another session


@dataclass(frozen=True, slots=True)
class Retransmission:
    """The answer to ``request``: ``count`` messages from ``sequence``, packed in ``packets``."""

    request: Request
    status: AnswerStatus
    sequence: int
    count: int
    packets: tuple[bytes, ...]


class RetransmissionBuffer:
    """The last ``capacity`` messages a sender sent, by sequence number.

    A ring of ``capacity`` slots indexed by ``sequence % capacity``: appending evicts the
    message ``capacity`` sequence numbers older, so memory is bounded and lookups are O(1).
    """

    def __init__(
        self,
        session: str,
        *,
        capacity: int = DEFAULT_RETRANSMIT_CAPACITY,
        first_sequence: int = 1,
        max_answer_count: int = DEFAULT_MAX_ANSWER_COUNT,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        if capacity < 1:
            raise FieldRangeError("capacity", capacity, 1, MAX_SEQUENCE)
        if not 1 <= max_answer_count <= 0xFFFF:
            raise FieldRangeError("max_answer_count", max_answer_count, 1, 0xFFFF)
        session_field(session)  # validates the name now rather than at the first answer
        self._session = session
        self._capacity = capacity
        self._start = first_sequence
        self._next = first_sequence
        self._max_answer_count = max_answer_count
        self._max_payload = max_payload
        self._ring: list[bytes | None] = [None] * capacity

    @property
    def session(self) -> str:
        return self._session

    @property
    def next_sequence(self) -> int:
        """The sequence number the next appended message gets."""
        return self._next

    @property
    def first_available(self) -> int:
        """The oldest sequence number still stored (``next_sequence`` when empty)."""
        return max(self._start, self._next - self._capacity)

    def __len__(self) -> int:
        return self._next - self.first_available

    def append(self, message: bytes) -> int:
        """Store the next message sent; returns its sequence number."""
        sequence = self._next
        self._ring[sequence % self._capacity] = message
        self._next = sequence + 1
        return sequence

    def extend(self, messages: Iterable[bytes]) -> int:
        """Store consecutive messages; returns the sequence number of the first."""
        first = self._next
        for message in messages:
            self.append(message)
        return first

    def get(self, sequence: int) -> bytes | None:
        """The stored message numbered ``sequence``, or ``None`` if evicted or not yet sent."""
        if not self.first_available <= sequence < self._next:
            return None
        return self._ring[sequence % self._capacity]

    def answer(self, request: Request) -> Retransmission:
        """The packets answering ``request``, clamped to what is stored and allowed."""
        if request.session != self._session:
            return Retransmission(request, AnswerStatus.WRONG_SESSION, request.sequence, 0, ())
        first = request.sequence
        if first < self.first_available:
            return Retransmission(request, AnswerStatus.EXPIRED, first, 0, ())
        if request.count == 0:
            return Retransmission(request, AnswerStatus.ANSWERED, first, 0, ())
        if first >= self._next:
            return Retransmission(request, AnswerStatus.NOT_YET_SENT, first, 0, ())
        count = min(request.count, self._max_answer_count, self._next - first)
        status = AnswerStatus.ANSWERED if count == request.count else AnswerStatus.CLAMPED
        ring = self._ring
        capacity = self._capacity
        messages = [ring[sequence % capacity] for sequence in range(first, first + count)]
        packets = encode_packets(
            self._session,
            first,
            messages,  # type: ignore[arg-type]  # every slot in range is filled
            max_payload=self._max_payload,
        )
        return Retransmission(request, status, first, count, tuple(packets))
