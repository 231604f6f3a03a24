"""MoldUDP64 framing (NASDAQ MoldUDP64 Protocol Specification v1.00), pure and sans-I/O.

Downstream packet, all integers big-endian::

    offset  size  field
         0    10  Session          ASCII, space padded on the right
        10     8  Sequence Number  sequence number of the first message in the packet
        18     2  Message Count    0 = heartbeat, 0xFFFF = end of session, else data
        20     …  Message Blocks   Message Length (2, not counting itself) + Message Data

A heartbeat or end-of-session packet has no message blocks and its Sequence Number is the
next sequence number the sender will use. A re-request (sent by a receiver, unicast, to the
re-request server) is Session (10) + Sequence Number (8) + Requested Message Count (2); the
answer is an ordinary downstream packet.

Messages are returned as ``bytes`` slices (copies), never views, so a receiver may reuse its
``recv_into`` buffer while messages are still held in a reorder buffer.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from ingest.errors import (
    FieldRangeError,
    MessageCountMismatchError,
    MessageTooLargeError,
    PacketTooShortError,
    RequestSizeError,
    SessionFieldError,
    SessionNameError,
    TrailingBytesError,
    TruncatedLengthError,
    TruncatedMessageError,
)

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "END_OF_SESSION_COUNT",
    "HEADER_SIZE",
    "MAX_MESSAGE_LENGTH",
    "MAX_SEQUENCE",
    "REQUEST_SIZE",
    "SESSION_SIZE",
    "Packet",
    "PacketBuilder",
    "PacketKind",
    "Request",
    "decode_packet",
    "decode_request",
    "encode_end_of_session",
    "encode_heartbeat",
    "encode_packet",
    "encode_packets",
    "encode_request",
    "session_field",
]

SESSION_SIZE = 10
HEADER_SIZE = 20
REQUEST_SIZE = 20
END_OF_SESSION_COUNT = 0xFFFF
MAX_DATA_COUNT = 0xFFFE  # 0xFFFF is reserved for end of session
MAX_MESSAGE_LENGTH = 0xFFFF
MAX_SEQUENCE = 2**64 - 1
DEFAULT_MAX_PAYLOAD = 1400  # fits a 1500-byte Ethernet MTU with IP/UDP headers and margin
MAX_UDP_PAYLOAD = 65507

_HEADER = struct.Struct(">10sQH")  # downstream header and request packet share this layout
_LENGTH = struct.Struct(">H")
_unpack_header = _HEADER.unpack_from
_unpack_length = _LENGTH.unpack_from
_pack_header = _HEADER.pack
_pack_length = _LENGTH.pack


class PacketKind(StrEnum):
    """What a downstream packet is, decided by its Message Count."""

    DATA = "data"
    HEARTBEAT = "heartbeat"
    END_OF_SESSION = "end_of_session"


@dataclass(frozen=True, slots=True)
class Packet:
    """One decoded downstream packet.

    ``sequence`` is the first message's sequence number for data; for a heartbeat or end of
    session it is the next sequence number the sender will use (and ``messages`` is empty).
    """

    session: str
    sequence: int
    messages: tuple[bytes, ...]
    kind: PacketKind = PacketKind.DATA

    @property
    def next_sequence(self) -> int:
        """The sequence number that follows this packet's last message."""
        return self.sequence + len(self.messages)


@dataclass(frozen=True, slots=True)
class Request:
    """A re-request: ``count`` messages of ``session`` starting at ``sequence``."""

    session: str
    sequence: int
    count: int

    @property
    def end(self) -> int:
        """One past the last requested sequence number."""
        return self.sequence + self.count


@lru_cache(maxsize=64)
def session_field(session: str) -> bytes:
    """The 10-byte wire form of ``session``: validated, space padded on the right."""
    if not isinstance(session, str):
        raise SessionNameError(session, "not a string")
    if not 1 <= len(session) <= SESSION_SIZE:
        raise SessionNameError(session, f"{len(session)} characters")
    if not (session.isascii() and session.isalnum()):
        raise SessionNameError(session, "not ASCII letters or digits")
    return session.encode("ascii").ljust(SESSION_SIZE, b" ")


@lru_cache(maxsize=64)
def _session_name(field: bytes) -> str:
    # Lenient on input: any printable ASCII is accepted; the padding is stripped.
    if not (field.isascii() and all(0x20 <= byte <= 0x7E for byte in field)):
        raise SessionFieldError(0, field)
    return field.decode("ascii").rstrip(" ")


def _check_range(field: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise FieldRangeError(field, value, low, high)


def decode_packet(buf: bytes | bytearray | memoryview) -> Packet:
    """Decode one downstream packet, strictly.

    Raises ``PacketTooShortError`` (under 20 bytes), ``SessionFieldError``,
    ``TruncatedLengthError`` / ``TruncatedMessageError`` (a block runs past the end),
    ``MessageCountMismatchError`` (the packet ends after fewer blocks than declared) and
    ``TrailingBytesError`` (bytes after the declared blocks).
    """
    if type(buf) is not bytes:
        buf = bytes(buf)
    size = len(buf)
    if size < HEADER_SIZE:
        raise PacketTooShortError(HEADER_SIZE, size)
    field, sequence, count = _unpack_header(buf)
    session = _session_name(field)
    if count == 0 or count == END_OF_SESSION_COUNT:
        if size != HEADER_SIZE:
            raise TrailingBytesError(HEADER_SIZE, HEADER_SIZE, size)
        kind = PacketKind.HEARTBEAT if count == 0 else PacketKind.END_OF_SESSION
        return Packet(session, sequence, (), kind)
    # Fast pass without per-block bounds checks: a slice past the end just comes back short
    # and unpacking a length past the end raises, so one check at the end (offset == size)
    # proves every block was whole; anything else is diagnosed by the careful pass.
    messages = []
    append = messages.append
    offset = HEADER_SIZE
    try:
        for _ in range(count):
            start = offset + 2
            offset = start + _unpack_length(buf, offset)[0]
            append(buf[start:offset])
    except struct.error:
        offset = -1
    if offset != size:
        _diagnose_blocks(buf, count)
    return Packet(session, sequence, tuple(messages), PacketKind.DATA)


def _diagnose_blocks(buf: bytes, count: int) -> None:
    """Raise the specific error for message blocks that do not fill the packet exactly."""
    size = len(buf)
    offset = HEADER_SIZE
    for index in range(count):
        if offset + 2 > size:
            if offset == size:
                raise MessageCountMismatchError(offset, count, index)
            raise TruncatedLengthError(offset, 2, size - offset)
        (length,) = _unpack_length(buf, offset)
        if offset + 2 + length > size:
            raise TruncatedMessageError(offset, length, size - offset - 2)
        offset += 2 + length
    raise TrailingBytesError(offset, offset, size)


def encode_packet(session: str, sequence: int, messages: Sequence[bytes]) -> bytes:
    """A data packet carrying ``messages``, the first numbered ``sequence``.

    Does not enforce a size limit (``PacketBuilder`` does); an empty ``messages`` would be a
    heartbeat and is refused, as are more than 65534 messages.
    """
    _check_range("message count", len(messages), 1, MAX_DATA_COUNT)
    _check_range("sequence", sequence, 0, MAX_SEQUENCE)
    parts = [_pack_header(session_field(session), sequence, len(messages))]
    append = parts.append
    for message in messages:
        length = len(message)
        if length > MAX_MESSAGE_LENGTH:
            raise MessageTooLargeError(length, MAX_MESSAGE_LENGTH)
        append(_pack_length(length))
        append(message)
    return b"".join(parts)


def encode_heartbeat(session: str, next_sequence: int) -> bytes:
    """A heartbeat: no messages, ``next_sequence`` is the next sequence number to be sent."""
    _check_range("sequence", next_sequence, 0, MAX_SEQUENCE)
    return _pack_header(session_field(session), next_sequence, 0)


def encode_end_of_session(session: str, next_sequence: int) -> bytes:
    """An end-of-session packet (Message Count 0xFFFF) carrying the next sequence number."""
    _check_range("sequence", next_sequence, 0, MAX_SEQUENCE)
    return _pack_header(session_field(session), next_sequence, END_OF_SESSION_COUNT)


def encode_request(request: Request) -> bytes:
    """The 20-byte re-request datagram for ``request``."""
    _check_range("sequence", request.sequence, 0, MAX_SEQUENCE)
    _check_range("requested message count", request.count, 0, 0xFFFF)
    return _pack_header(session_field(request.session), request.sequence, request.count)


def decode_request(buf: bytes | bytearray | memoryview) -> Request:
    """Decode a re-request datagram; it must be exactly 20 bytes."""
    if len(buf) != REQUEST_SIZE:
        raise RequestSizeError(REQUEST_SIZE, len(buf))
    field, sequence, count = _unpack_header(buf)
    return Request(_session_name(bytes(field)), sequence, count)


class PacketBuilder:
    """Packs a sender's messages into data packets of at most ``max_payload`` bytes.

    Messages are numbered consecutively from ``next_sequence``; a message is never split
    across packets. ``add`` returns the previous packet when the new message does not fit in
    it; ``flush`` returns whatever is pending (call it when the sender goes idle).
    """

    def __init__(
        self,
        session: str,
        *,
        next_sequence: int = 1,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        _check_range("max_payload", max_payload, HEADER_SIZE + 2, MAX_UDP_PAYLOAD)
        _check_range("next_sequence", next_sequence, 0, MAX_SEQUENCE)
        self._session = session
        self._field = session_field(session)
        self._max_payload = max_payload
        self._max_message = min(max_payload - HEADER_SIZE - 2, MAX_MESSAGE_LENGTH)
        self._first = next_sequence
        self._parts: list[bytes] = []
        self._count = 0
        self._size = HEADER_SIZE

    @property
    def session(self) -> str:
        return self._session

    @property
    def next_sequence(self) -> int:
        """The sequence number the next added message will get."""
        return self._first + self._count

    @property
    def pending(self) -> int:
        """Messages added but not yet returned in a packet."""
        return self._count

    def add(self, message: bytes) -> bytes | None:
        """Queue ``message``; return the finished previous packet if it had no room for it."""
        length = len(message)
        if length > self._max_message:
            raise MessageTooLargeError(length, self._max_message)
        finished = None
        if self._size + 2 + length > self._max_payload:
            finished = self.flush()
        self._parts.append(_pack_length(length))
        self._parts.append(message)
        self._count += 1
        self._size += 2 + length
        return finished

    def flush(self) -> bytes | None:
        """The pending packet, or ``None`` when nothing is pending."""
        if not self._count:
            return None
        header = _pack_header(self._field, self._first, self._count)
        packet = b"".join([header, *self._parts])
        self._first += self._count
        self._parts = []
        self._count = 0
        self._size = HEADER_SIZE
        return packet

    def pack(self, messages: Iterable[bytes]) -> list[bytes]:
        """Add every message and flush: the packets carrying them, in order."""
        packets = []
        for message in messages:
            finished = self.add(message)
            if finished is not None:
                packets.append(finished)
        last = self.flush()
        if last is not None:
            packets.append(last)
        return packets

    def heartbeat(self) -> bytes:
        """A heartbeat announcing the next sequence number not yet sent in a packet.

        Pending (unflushed) messages are not announced: a receiver would otherwise see a gap
        for messages that were never sent.
        """
        return encode_heartbeat(self._session, self._first)

    def end_of_session(self) -> bytes:
        """An end-of-session packet announcing the next sequence number not yet sent."""
        return encode_end_of_session(self._session, self._first)


def encode_packets(
    session: str,
    sequence: int,
    messages: Iterable[bytes],
    *,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> list[bytes]:
    """``messages`` numbered from ``sequence``, packed into packets of at most ``max_payload``."""
    return PacketBuilder(session, next_sequence=sequence, max_payload=max_payload).pack(messages)
