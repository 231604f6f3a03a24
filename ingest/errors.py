"""The ingest error hierarchy: one root, specific subclasses that carry their facts.

Malformed datagrams raise a ``PacketError`` subclass whose ``offset`` is where the offending
field starts in the datagram, ``expected`` what the protocol needed there and ``actual`` what
was found, so a capture can be inspected at exactly that byte.
"""

from __future__ import annotations

from tickerplant.errors import TickerplantError


class IngestError(TickerplantError):
    """Root of every error raised by the ``ingest`` package."""


class SessionNameError(IngestError):
    """A MoldUDP64 session name that cannot be put on the wire."""

    def __init__(self, session: object, reason: str) -> None:
        self.session = session
        self.reason = reason
        super().__init__(
            f"session name {session!r} is invalid: {reason}; "
            "expected 1 to 10 ASCII letters or digits"
        )


class FieldRangeError(IngestError):
    """A number that does not fit the wire field it is destined for."""

    def __init__(self, field: str, value: int, low: int, high: int) -> None:
        self.field = field
        self.value = value
        self.low = low
        self.high = high
        super().__init__(f"{field}={value} is out of range: expected {low}..{high}")


class MessageTooLargeError(IngestError):
    """A message that cannot be carried in one packet of the configured size."""

    def __init__(self, length: int, limit: int) -> None:
        self.length = length
        self.limit = limit
        super().__init__(
            f"message of {length} bytes cannot be sent: at most {limit} bytes fit in one packet"
        )


class PacketError(IngestError):
    """A datagram that is not a well-formed MoldUDP64 packet.

    ``offset`` is where the offending field starts; ``expected`` and ``actual`` are what the
    protocol required there and what the datagram holds.
    """

    def __init__(self, message: str, offset: int, expected: object, actual: object) -> None:
        self.offset = offset
        self.expected = expected
        self.actual = actual
        super().__init__(message)


class PacketTooShortError(PacketError):
    """Fewer bytes than the 20-byte downstream header."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(
            f"packet too short at offset 0: the header needs {expected} bytes, got {actual}",
            0,
            expected,
            actual,
        )


class SessionFieldError(PacketError):
    """A session field that is not printable ASCII."""

    def __init__(self, offset: int, actual: bytes) -> None:
        super().__init__(
            f"session field at offset {offset} is not printable ASCII: {actual!r}",
            offset,
            "printable ASCII",
            actual,
        )


class MessageCountMismatchError(PacketError):
    """The packet ends cleanly after fewer message blocks than its header declares."""

    def __init__(self, offset: int, expected: int, actual: int) -> None:
        super().__init__(
            f"packet declares {expected} messages but ends at offset {offset} after {actual}",
            offset,
            expected,
            actual,
        )


class TruncatedLengthError(PacketError):
    """A message length field cut off by the end of the packet."""

    def __init__(self, offset: int, expected: int, actual: int) -> None:
        super().__init__(
            f"message length field at offset {offset} needs {expected} bytes, "
            f"only {actual} remain",
            offset,
            expected,
            actual,
        )


class TruncatedMessageError(PacketError):
    """A message block whose declared length runs past the end of the packet."""

    def __init__(self, offset: int, expected: int, actual: int) -> None:
        super().__init__(
            f"message block at offset {offset} declares {expected} bytes of data, "
            f"only {actual} remain",
            offset,
            expected,
            actual,
        )


class TrailingBytesError(PacketError):
    """Bytes left over after the last declared message block (or after a bare header).

    ``expected`` is the length the packet should have had, ``actual`` its length.
    """

    def __init__(self, offset: int, expected: int, actual: int) -> None:
        super().__init__(
            f"packet of {actual} bytes has {actual - expected} trailing bytes at offset {offset}, "
            "after its declared messages",
            offset,
            expected,
            actual,
        )


class RequestSizeError(PacketError):
    """A re-request datagram that is not exactly 20 bytes."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(
            f"request packet at offset 0 is {actual} bytes: expected exactly {expected}",
            0,
            expected,
            actual,
        )
