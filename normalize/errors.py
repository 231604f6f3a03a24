"""The errors of ``normalize``: one root, specific subclasses that carry their facts.

Offsets are byte offsets into the buffer (or, for the file framing, the stream) that was being
read, so an operator can find the bad bytes with ``xxd -s OFFSET``.
"""

from __future__ import annotations

from tickerplant.errors import TickerplantError


def describe_type_byte(type_byte: int) -> str:
    """``'A' (0x41)`` for a printable ASCII type byte, ``0x00`` for anything else."""
    if 0x21 <= type_byte <= 0x7E:
        return f"{chr(type_byte)!r} (0x{type_byte:02x})"
    return f"0x{type_byte:02x}"


class NormalizeError(TickerplantError):
    """Root of every error raised by the ``normalize`` package."""


class DecodeError(NormalizeError):
    """Bytes that are not a valid ITCH 5.0 message (or not a valid frame of one)."""


class UnknownMessageType(DecodeError):
    """The type byte names no ITCH 5.0 message."""

    def __init__(self, type_byte: int, offset: int) -> None:
        self.type_byte = type_byte
        self.offset = offset
        super().__init__(
            f"unknown ITCH 5.0 message type {describe_type_byte(type_byte)} at offset {offset}"
        )


class LengthMismatch(DecodeError):
    """The framing says a message is ``actual`` bytes long; its type is ``expected`` long."""

    def __init__(self, type_byte: int, expected: int, actual: int, offset: int) -> None:
        self.type_byte = type_byte
        self.expected = expected
        self.actual = actual
        self.offset = offset
        super().__init__(
            f"ITCH 5.0 message type {describe_type_byte(type_byte)} at offset {offset} "
            f"is {expected} bytes long, but its frame says {actual}"
        )


class TruncatedMessage(DecodeError):
    """Fewer bytes are available than the message (or frame) at ``offset`` needs.

    ``type_byte`` is ``None`` when not even the type byte was available.
    """

    def __init__(self, type_byte: int | None, expected: int, available: int, offset: int) -> None:
        self.type_byte = type_byte
        self.expected = expected
        self.available = available
        self.offset = offset
        what = "message" if type_byte is None else f"message type {describe_type_byte(type_byte)}"
        unit = "byte" if expected == 1 else "bytes"
        super().__init__(
            f"truncated ITCH 5.0 {what} at offset {offset}: "
            f"needs {expected} {unit}, only {available} available"
        )


class InvalidAlphaField(DecodeError):
    """An Alpha field holds bytes that are not ASCII."""

    def __init__(self, type_byte: int, field: str, raw: bytes, offset: int) -> None:
        self.type_byte = type_byte
        self.field = field
        self.raw = raw
        self.offset = offset
        super().__init__(
            f"ITCH 5.0 message type {describe_type_byte(type_byte)} at offset {offset}: "
            f"field {field} holds non-ASCII bytes {raw!r}"
        )


class EncodeError(NormalizeError):
    """A field value does not fit its ITCH 5.0 wire representation."""

    def __init__(self, message_type: str, field: str, value: object, reason: str) -> None:
        self.message_type = message_type
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(
            f"cannot encode ITCH 5.0 message type {message_type!r}: "
            f"field {field}={value!r} {reason}"
        )


class OrderBookError(NormalizeError):
    """An order book operation that contradicts the book's state; the book is left unchanged."""


class UnknownOrder(OrderBookError):
    """No live order has reference number ``ref`` (never added, already gone, or lost in a gap)."""

    def __init__(self, symbol: str, ref: int) -> None:
        self.symbol = symbol
        self.ref = ref
        super().__init__(f"order book {symbol!r} has no live order with reference number {ref}")


class DuplicateOrder(OrderBookError):
    """An order with reference number ``ref`` is already live; reference numbers are unique."""

    def __init__(self, symbol: str, ref: int) -> None:
        self.symbol = symbol
        self.ref = ref
        super().__init__(
            f"order book {symbol!r} already has a live order with reference number {ref}"
        )


class InvalidOrder(OrderBookError):
    """A field of an order operation has a value the book cannot apply."""

    def __init__(self, symbol: str, ref: int, field: str, value: object, accepted: str) -> None:
        self.symbol = symbol
        self.ref = ref
        self.field = field
        self.value = value
        self.accepted = accepted
        super().__init__(
            f"order book {symbol!r}, order {ref}: {field}={value!r} is invalid; "
            f"accepted: {accepted}"
        )
