"""NASDAQ TotalView-ITCH 5.0 messages: frozen value types, a decoder and an encoder.

Pure and sans-I/O: ``decode`` takes a buffer and an offset and returns one message;
``encode`` takes one message and returns exactly the bytes the specification lays out.
Framing (MoldUDP64 message blocks, the 2-byte length prefix of NASDAQ's daily files) is the
caller's business; ``MESSAGE_LENGTHS`` gives the fixed length of every message type for it.

Wire format (specification section "Data Types"):

- integers are unsigned big-endian; the Timestamp is 6 bytes of nanoseconds since midnight,
  read here as a 2-byte high part and a 4-byte low part (``>HI``) and combined;
- Price(4) is a 4-byte integer with 4 implied decimals, Price(8) an 8-byte integer with 8;
  both are kept as the raw ``int`` (no floats anywhere);
- Alpha fields are ASCII, left justified and padded on the right with spaces. Multi-byte
  Alpha fields (Stock, MPID, Attribution, Reason, Issue Sub-Type) are decoded to ``str`` with
  the padding stripped and re-padded by ``encode``; one-byte Alpha fields (codes such as
  Buy/Sell Indicator) are kept exactly, because a lone space is a meaningful code there
  ("not available").

Every message class lists its fields in wire order; the ``itch`` metadata on each field says
how it is laid out, and the layouts, ``struct`` formats and lengths are derived from those
declarations once, at import. The per-type decoders and encoders are generated from the same
layouts as straight-line code (as ``dataclasses`` and ``namedtuple`` generate theirs): one
``unpack_from`` and one slot store per field, with no per-field loop or dispatch, because this
decoder is the reference implementation the compiled hot path is measured against.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeAlias

from normalize.errors import (
    DecodeError,
    EncodeError,
    InvalidAlphaField,
    LengthMismatch,
    TruncatedMessage,
    UnknownMessageType,
)

__all__ = [
    "MESSAGE_LAYOUTS",
    "MESSAGE_LENGTHS",
    "AddOrder",
    "AddOrderWithMpid",
    "BrokenTrade",
    "CrossTrade",
    "DirectListingCapitalRaisePriceDiscovery",
    "FieldLayout",
    "IpoQuotingPeriodUpdate",
    "ItchMessage",
    "LuldAuctionCollar",
    "MarketParticipantPosition",
    "Message",
    "MessageLayout",
    "MwcbDeclineLevel",
    "MwcbStatus",
    "NetOrderImbalanceIndicator",
    "NonCrossTrade",
    "OperationalHalt",
    "OrderCancel",
    "OrderDelete",
    "OrderExecuted",
    "OrderExecutedWithPrice",
    "OrderReplace",
    "RegShoRestriction",
    "RetailPriceImprovementIndicator",
    "StockDirectory",
    "StockTradingAction",
    "SystemEvent",
    "decode",
    "encode",
]


# --------------------------------------------------------------------------------------------
# Field layouts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldLayout:
    """How one field sits on the wire.

    ``kind`` is the specification's value type: ``"integer"``, ``"price"`` (``decimals``
    implied decimal places), ``"timestamp"`` (6 bytes) or ``"alpha"`` (ASCII, space padded).
    """

    name: str
    kind: str
    size: int
    decimals: int = 0


# ``field(metadata=...)`` values for the message classes: (kind, size on the wire, decimals).
_U16 = {"itch": ("integer", 2, 0)}
_U32 = {"itch": ("integer", 4, 0)}
_U64 = {"itch": ("integer", 8, 0)}
_TIMESTAMP = {"itch": ("timestamp", 6, 0)}
_PRICE4 = {"itch": ("price", 4, 4)}  # Price(4): 4 bytes, 4 implied decimals
_PRICE8 = {"itch": ("price", 8, 8)}  # Price(8): 8 bytes, 8 implied decimals
_ALPHA1 = {"itch": ("alpha", 1, 0)}
_ALPHA2 = {"itch": ("alpha", 2, 0)}
_ALPHA4 = {"itch": ("alpha", 4, 0)}
_ALPHA8 = {"itch": ("alpha", 8, 0)}


# --------------------------------------------------------------------------------------------
# Messages (specification section 1, "Message Formats"), fields in wire order
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItchMessage:
    """The header every ITCH 5.0 message carries after its type byte."""

    message_type: ClassVar[str]

    stock_locate: int = field(metadata=_U16)
    tracking_number: int = field(metadata=_U16)
    timestamp: int = field(metadata=_TIMESTAMP)  # nanoseconds since midnight


@dataclass(frozen=True, slots=True)
class SystemEvent(ItchMessage):
    """'S' (1.1): a market or data-feed event (start/end of messages, system, market hours)."""

    message_type: ClassVar[str] = "S"

    event_code: str = field(metadata=_ALPHA1)


@dataclass(frozen=True, slots=True)
class StockDirectory(ItchMessage):
    """'R' (1.2.1): a security's listing data, sent for every active symbol at start of day."""

    message_type: ClassVar[str] = "R"

    stock: str = field(metadata=_ALPHA8)
    market_category: str = field(metadata=_ALPHA1)
    financial_status_indicator: str = field(metadata=_ALPHA1)
    round_lot_size: int = field(metadata=_U32)
    round_lots_only: str = field(metadata=_ALPHA1)
    issue_classification: str = field(metadata=_ALPHA1)
    issue_sub_type: str = field(metadata=_ALPHA2)
    authenticity: str = field(metadata=_ALPHA1)
    short_sale_threshold_indicator: str = field(metadata=_ALPHA1)
    ipo_flag: str = field(metadata=_ALPHA1)
    luld_reference_price_tier: str = field(metadata=_ALPHA1)
    etp_flag: str = field(metadata=_ALPHA1)
    etp_leverage_factor: int = field(metadata=_U32)
    inverse_indicator: str = field(metadata=_ALPHA1)


@dataclass(frozen=True, slots=True)
class StockTradingAction(ItchMessage):
    """'H' (1.2.2): a security's trading state (halted, paused, quotation only, trading)."""

    message_type: ClassVar[str] = "H"

    stock: str = field(metadata=_ALPHA8)
    trading_state: str = field(metadata=_ALPHA1)
    reserved: str = field(metadata=_ALPHA1)
    reason: str = field(metadata=_ALPHA4)


@dataclass(frozen=True, slots=True)
class RegShoRestriction(ItchMessage):
    """'Y' (1.2.3): Reg SHO Short Sale Price Test Restricted Indicator."""

    message_type: ClassVar[str] = "Y"

    stock: str = field(metadata=_ALPHA8)
    reg_sho_action: str = field(metadata=_ALPHA1)


@dataclass(frozen=True, slots=True)
class MarketParticipantPosition(ItchMessage):
    """'L' (1.2.4): a market participant's registration in an issue."""

    message_type: ClassVar[str] = "L"

    mpid: str = field(metadata=_ALPHA4)
    stock: str = field(metadata=_ALPHA8)
    primary_market_maker: str = field(metadata=_ALPHA1)
    market_maker_mode: str = field(metadata=_ALPHA1)
    market_participant_state: str = field(metadata=_ALPHA1)


@dataclass(frozen=True, slots=True)
class MwcbDeclineLevel(ItchMessage):
    """'V' (1.2.5.1): the day's Market-Wide Circuit Breaker levels, Price(8)."""

    message_type: ClassVar[str] = "V"

    level_1: int = field(metadata=_PRICE8)
    level_2: int = field(metadata=_PRICE8)
    level_3: int = field(metadata=_PRICE8)


@dataclass(frozen=True, slots=True)
class MwcbStatus(ItchMessage):
    """'W' (1.2.5.2): a Market-Wide Circuit Breaker level was breached."""

    message_type: ClassVar[str] = "W"

    breached_level: str = field(metadata=_ALPHA1)


@dataclass(frozen=True, slots=True)
class IpoQuotingPeriodUpdate(ItchMessage):
    """'K' (1.2.6): the anticipated IPO quotation release time of a security."""

    message_type: ClassVar[str] = "K"

    stock: str = field(metadata=_ALPHA8)
    ipo_quotation_release_time: int = field(metadata=_U32)  # seconds since midnight
    ipo_quotation_release_qualifier: str = field(metadata=_ALPHA1)
    ipo_price: int = field(metadata=_PRICE4)


@dataclass(frozen=True, slots=True)
class LuldAuctionCollar(ItchMessage):
    """'J' (1.2.7): the collars within which a LULD-paused security can reopen."""

    message_type: ClassVar[str] = "J"

    stock: str = field(metadata=_ALPHA8)
    auction_collar_reference_price: int = field(metadata=_PRICE4)
    upper_auction_collar_price: int = field(metadata=_PRICE4)
    lower_auction_collar_price: int = field(metadata=_PRICE4)
    auction_collar_extension: int = field(metadata=_U32)


@dataclass(frozen=True, slots=True)
class OperationalHalt(ItchMessage):
    """'h' (1.2.8): an operational halt of a security on one Nasdaq market center."""

    message_type: ClassVar[str] = "h"

    stock: str = field(metadata=_ALPHA8)
    market_code: str = field(metadata=_ALPHA1)
    operational_halt_action: str = field(metadata=_ALPHA1)


@dataclass(frozen=True, slots=True)
class AddOrder(ItchMessage):
    """'A' (1.3.1): a displayed order was added to the book, without MPID attribution."""

    message_type: ClassVar[str] = "A"

    order_reference_number: int = field(metadata=_U64)
    buy_sell_indicator: str = field(metadata=_ALPHA1)
    shares: int = field(metadata=_U32)
    stock: str = field(metadata=_ALPHA8)
    price: int = field(metadata=_PRICE4)


@dataclass(frozen=True, slots=True)
class AddOrderWithMpid(ItchMessage):
    """'F' (1.3.2): a displayed order was added to the book, attributed to an MPID."""

    message_type: ClassVar[str] = "F"

    order_reference_number: int = field(metadata=_U64)
    buy_sell_indicator: str = field(metadata=_ALPHA1)
    shares: int = field(metadata=_U32)
    stock: str = field(metadata=_ALPHA8)
    price: int = field(metadata=_PRICE4)
    attribution: str = field(metadata=_ALPHA4)


@dataclass(frozen=True, slots=True)
class OrderExecuted(ItchMessage):
    """'E' (1.4.1): a resting order was executed, in whole or in part, at its display price."""

    message_type: ClassVar[str] = "E"

    order_reference_number: int = field(metadata=_U64)
    executed_shares: int = field(metadata=_U32)
    match_number: int = field(metadata=_U64)


@dataclass(frozen=True, slots=True)
class OrderExecutedWithPrice(ItchMessage):
    """'C' (1.4.2): a resting order was executed at a price other than its display price."""

    message_type: ClassVar[str] = "C"

    order_reference_number: int = field(metadata=_U64)
    executed_shares: int = field(metadata=_U32)
    match_number: int = field(metadata=_U64)
    printable: str = field(metadata=_ALPHA1)
    execution_price: int = field(metadata=_PRICE4)


@dataclass(frozen=True, slots=True)
class OrderCancel(ItchMessage):
    """'X' (1.4.3): part of a resting order was cancelled."""

    message_type: ClassVar[str] = "X"

    order_reference_number: int = field(metadata=_U64)
    cancelled_shares: int = field(metadata=_U32)


@dataclass(frozen=True, slots=True)
class OrderDelete(ItchMessage):
    """'D' (1.4.4): a resting order was removed from the book."""

    message_type: ClassVar[str] = "D"

    order_reference_number: int = field(metadata=_U64)


@dataclass(frozen=True, slots=True)
class OrderReplace(ItchMessage):
    """'U' (1.4.5): a resting order was cancel-replaced; side, stock and MPID carry over."""

    message_type: ClassVar[str] = "U"

    original_order_reference_number: int = field(metadata=_U64)
    new_order_reference_number: int = field(metadata=_U64)
    shares: int = field(metadata=_U32)
    price: int = field(metadata=_PRICE4)


@dataclass(frozen=True, slots=True)
class NonCrossTrade(ItchMessage):
    """'P' (1.5.1): a match involving a non-displayed order (no book change)."""

    message_type: ClassVar[str] = "P"

    order_reference_number: int = field(metadata=_U64)
    buy_sell_indicator: str = field(metadata=_ALPHA1)
    shares: int = field(metadata=_U32)
    stock: str = field(metadata=_ALPHA8)
    price: int = field(metadata=_PRICE4)
    match_number: int = field(metadata=_U64)


@dataclass(frozen=True, slots=True)
class CrossTrade(ItchMessage):
    """'Q' (1.5.2): the bulk print of a Nasdaq cross; Shares is 8 bytes here."""

    message_type: ClassVar[str] = "Q"

    shares: int = field(metadata=_U64)
    stock: str = field(metadata=_ALPHA8)
    cross_price: int = field(metadata=_PRICE4)
    match_number: int = field(metadata=_U64)
    cross_type: str = field(metadata=_ALPHA1)


@dataclass(frozen=True, slots=True)
class BrokenTrade(ItchMessage):
    """'B' (1.5.3): an execution was broken (clearly erroneous); final."""

    message_type: ClassVar[str] = "B"

    match_number: int = field(metadata=_U64)


@dataclass(frozen=True, slots=True)
class NetOrderImbalanceIndicator(ItchMessage):
    """'I' (1.6): the Net Order Imbalance Indicator (NOII) ahead of a cross."""

    message_type: ClassVar[str] = "I"

    paired_shares: int = field(metadata=_U64)
    imbalance_shares: int = field(metadata=_U64)
    imbalance_direction: str = field(metadata=_ALPHA1)
    stock: str = field(metadata=_ALPHA8)
    far_price: int = field(metadata=_PRICE4)
    near_price: int = field(metadata=_PRICE4)
    current_reference_price: int = field(metadata=_PRICE4)
    cross_type: str = field(metadata=_ALPHA1)
    price_variation_indicator: str = field(metadata=_ALPHA1)


@dataclass(frozen=True, slots=True)
class RetailPriceImprovementIndicator(ItchMessage):
    """'N' (1.7): retail interest on the bid, the ask, both or neither."""

    message_type: ClassVar[str] = "N"

    stock: str = field(metadata=_ALPHA8)
    interest_flag: str = field(metadata=_ALPHA1)


@dataclass(frozen=True, slots=True)
class DirectListingCapitalRaisePriceDiscovery(ItchMessage):
    """'O' (1.8): price discovery of a Direct Listing with Capital Raise (DLCR) security."""

    message_type: ClassVar[str] = "O"

    stock: str = field(metadata=_ALPHA8)
    open_eligibility_status: str = field(metadata=_ALPHA1)
    minimum_allowable_price: int = field(metadata=_PRICE4)
    maximum_allowable_price: int = field(metadata=_PRICE4)
    near_execution_price: int = field(metadata=_PRICE4)
    near_execution_time: int = field(metadata=_U64)
    lower_price_range_collar: int = field(metadata=_PRICE4)
    upper_price_range_collar: int = field(metadata=_PRICE4)


Message: TypeAlias = (
    SystemEvent
    | StockDirectory
    | StockTradingAction
    | RegShoRestriction
    | MarketParticipantPosition
    | MwcbDeclineLevel
    | MwcbStatus
    | IpoQuotingPeriodUpdate
    | LuldAuctionCollar
    | OperationalHalt
    | AddOrder
    | AddOrderWithMpid
    | OrderExecuted
    | OrderExecutedWithPrice
    | OrderCancel
    | OrderDelete
    | OrderReplace
    | NonCrossTrade
    | CrossTrade
    | BrokenTrade
    | NetOrderImbalanceIndicator
    | RetailPriceImprovementIndicator
    | DirectListingCapitalRaisePriceDiscovery
)

_MESSAGE_CLASSES: tuple[type[ItchMessage], ...] = (
    SystemEvent,
    StockDirectory,
    StockTradingAction,
    RegShoRestriction,
    MarketParticipantPosition,
    MwcbDeclineLevel,
    MwcbStatus,
    IpoQuotingPeriodUpdate,
    LuldAuctionCollar,
    OperationalHalt,
    AddOrder,
    AddOrderWithMpid,
    OrderExecuted,
    OrderExecutedWithPrice,
    OrderCancel,
    OrderDelete,
    OrderReplace,
    NonCrossTrade,
    CrossTrade,
    BrokenTrade,
    NetOrderImbalanceIndicator,
    RetailPriceImprovementIndicator,
    DirectListingCapitalRaisePriceDiscovery,
)


# --------------------------------------------------------------------------------------------
# The layout table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageLayout:
    """One message type on the wire: its type byte, class, full ``struct``, length, fields.

    ``struct`` packs and unpacks the whole message, type byte first (``B``), with the
    timestamp as two items (high 16 bits, low 32 bits).
    """

    type_byte: int
    message_class: type[ItchMessage]
    struct: struct.Struct
    length: int
    fields: tuple[FieldLayout, ...]


_INTEGER_CODES = {2: "H", 4: "I", 8: "Q"}


def _struct_code(layout: FieldLayout) -> str:
    if layout.kind == "timestamp":
        return "HI"
    if layout.kind == "alpha":
        return "B" if layout.size == 1 else f"{layout.size}s"
    return _INTEGER_CODES[layout.size]


def _build_layout(cls: type[ItchMessage]) -> MessageLayout:
    field_layouts = tuple(
        FieldLayout(f.name, *f.metadata["itch"]) for f in fields(cls) if "itch" in f.metadata
    )
    wire = struct.Struct(">B" + "".join(_struct_code(f) for f in field_layouts))
    length = 1 + sum(f.size for f in field_layouts)
    if wire.size != length:  # pragma: no cover - guards the declarations above
        raise AssertionError(f"{cls.__name__}: struct size {wire.size} != {length}")
    return MessageLayout(ord(cls.message_type), cls, wire, length, field_layouts)


MESSAGE_LAYOUTS: dict[int, MessageLayout] = {
    layout.type_byte: layout for layout in map(_build_layout, _MESSAGE_CLASSES)
}
"""Type byte (``ord("A")``) → the message's layout."""

MESSAGE_LENGTHS: dict[int, int] = {
    type_byte: layout.length for type_byte, layout in MESSAGE_LAYOUTS.items()
}
"""Type byte (``ord("A")``) → the message's fixed length in bytes, type byte included."""

_LAYOUT_BY_CLASS: dict[type[ItchMessage], MessageLayout] = {
    layout.message_class: layout for layout in MESSAGE_LAYOUTS.values()
}


# --------------------------------------------------------------------------------------------
# Alpha conversions shared by the generated code
# --------------------------------------------------------------------------------------------

# One-byte Alpha: index by the byte; bytes >= 0x80 raise IndexError (not ASCII).
_ALPHA1_FROM_BYTE: tuple[str, ...] = tuple(chr(code) for code in range(0x80))
# ...and back; anything but a one-character ASCII str raises KeyError (or TypeError).
_ALPHA1_TO_BYTE: dict[str, int] = {chr(code): code for code in range(0x80)}

# Multi-byte Alpha values repeat all day (a few thousand symbols, a few hundred MPIDs), so
# the decoded str is memoized by its raw bytes. Bounded so hostile input cannot grow it
# without limit; past the bound values are still decoded, just not remembered.
_ALPHA_CACHE: dict[bytes, str] = {}
_ALPHA_CACHE_LIMIT = 1 << 16


def _decode_alpha(raw: bytes) -> str:
    text = raw.decode("ascii").rstrip(" ")
    if len(_ALPHA_CACHE) < _ALPHA_CACHE_LIMIT:
        _ALPHA_CACHE[raw] = text
    return text


def _encode_alpha(value: str, size: int) -> bytes:
    raw = value.encode("ascii")
    if len(raw) > size:
        raise ValueError(value)
    return raw.ljust(size, b" ")


# --------------------------------------------------------------------------------------------
# Generated per-type decoders and encoders
# --------------------------------------------------------------------------------------------


def _decoder_source(layout: MessageLayout) -> str:
    """Straight-line source of one type's decoder ``(buf, offset) -> message``.

    It raises ``struct.error`` on a short buffer, and ``IndexError`` or
    ``UnicodeDecodeError`` on a non-ASCII Alpha field; ``decode`` explains those.
    """
    items: list[str] = []
    lines: list[str] = []
    stores: list[str] = []
    for f in layout.fields:
        name = f.name
        if f.kind == "timestamp":
            items += [f"{name}_hi", f"{name}_lo"]
            value = f"({name}_hi << 32) | {name}_lo"
        elif f.kind == "alpha" and f.size == 1:
            items.append(name)
            value = f"alpha1_from_byte[{name}]"
        elif f.kind == "alpha":
            items.append(f"{name}_raw")
            lines += [
                f"    {name} = alpha_cache_get({name}_raw)",
                f"    if {name} is None:",
                f"        {name} = decode_alpha({name}_raw)",
            ]
            value = name
        else:
            items.append(name)
            value = name
        stores.append(f"    set_{name}(message, {value})")
    return "\n".join(
        [
            "def decode_message(buf, offset):",
            f"    {', '.join(items)}, = unpack_from(buf, offset)",
            *lines,
            "    message = new(message_class)",
            *stores,
            "    return message",
        ]
    )


def _encoder_source(layout: MessageLayout) -> str:
    """Straight-line source of one type's encoder ``(message) -> bytes``.

    Bad values surface as whatever ``struct``/``str`` raise; ``encode`` explains them.
    """
    lines: list[str] = []
    values = [str(layout.type_byte)]
    for f in layout.fields:
        name = f.name
        if f.kind == "timestamp":
            lines.append(f"    {name} = message.{name}")
            values += [f"{name} >> 32", f"{name} & 0xFFFFFFFF"]
        elif f.kind == "alpha" and f.size == 1:
            values.append(f"alpha1_to_byte[message.{name}]")
        elif f.kind == "alpha":
            values.append(f"encode_alpha(message.{name}, {f.size})")
        else:
            values.append(f"message.{name}")
    return "\n".join(
        [
            "def encode_message(message):",
            *lines,
            f"    return pack({', '.join(values)})",
        ]
    )


def _compile(source: str, namespace: dict[str, Any], name: str, qualname: str) -> Any:
    exec(source, namespace)  # the source is generated from the layouts above, never input
    function = namespace[name]
    function.__qualname__ = qualname
    return function


def _make_decoder(layout: MessageLayout) -> Any:
    cls = layout.message_class
    # "x" skips the type byte: decode already dispatched on it.
    unpack_from = struct.Struct(">x" + layout.struct.format[2:]).unpack_from
    namespace: dict[str, Any] = {
        "unpack_from": unpack_from,
        "new": object.__new__,
        "message_class": cls,
        "alpha1_from_byte": _ALPHA1_FROM_BYTE,
        "alpha_cache_get": _ALPHA_CACHE.get,
        "decode_alpha": _decode_alpha,
    }
    # Storing through the slot descriptors sidesteps the frozen __setattr__ (as the
    # dataclass-generated __init__ does with object.__setattr__, only faster).
    for f in layout.fields:
        namespace[f"set_{f.name}"] = getattr(cls, f.name).__set__
    return _compile(_decoder_source(layout), namespace, "decode_message", f"decode_{cls.__name__}")


def _make_encoder(layout: MessageLayout) -> Any:
    namespace: dict[str, Any] = {
        "pack": layout.struct.pack,
        "alpha1_to_byte": _ALPHA1_TO_BYTE,
        "encode_alpha": _encode_alpha,
    }
    name = layout.message_class.__name__
    return _compile(_encoder_source(layout), namespace, "encode_message", f"encode_{name}")


# type byte -> (decoder, length)
_DECODERS: dict[int, tuple[Any, int]] = {
    type_byte: (_make_decoder(layout), layout.length)
    for type_byte, layout in MESSAGE_LAYOUTS.items()
}
_ENCODERS: dict[type[ItchMessage], Any] = {
    cls: _make_encoder(layout) for cls, layout in _LAYOUT_BY_CLASS.items()
}


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def decode(
    buf: bytes | bytearray | memoryview, offset: int = 0, length: int | None = None
) -> Message:
    """Decode the one ITCH 5.0 message that starts at ``buf[offset]``.

    ``length`` is the message's length as its framing states it (the 2-byte prefix of a file
    or a MoldUDP64 message block); when given it must equal the type's fixed length. Bytes
    after the message are ignored.

    Raises ``UnknownMessageType``, ``LengthMismatch``, ``TruncatedMessage`` (fewer bytes than
    the type needs, or none at all) or ``InvalidAlphaField`` (non-ASCII text), all
    ``DecodeError``; ``ValueError`` for a negative offset.
    """
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    try:
        decoder, expected = _DECODERS[buf[offset]]
    except IndexError:
        raise TruncatedMessage(None, 1, max(len(buf) - offset, 0), offset) from None
    except KeyError:
        raise UnknownMessageType(buf[offset], offset) from None
    if length is not None and length != expected:
        raise LengthMismatch(buf[offset], expected, length, offset)
    try:
        return decoder(buf, offset)  # type: ignore[no-any-return]
    except (struct.error, IndexError, UnicodeDecodeError):
        raise _explain_decode_failure(buf, offset) from None


def encode(message: Message) -> bytes:
    """The exact wire bytes of ``message``, type byte first, Alpha fields space padded.

    Raises ``EncodeError`` naming the first field whose value does not fit (an integer out of
    its unsigned range, text that is not ASCII or is longer than the field, a one-byte code
    that is not exactly one character); ``TypeError`` for an object that is not a message.
    """
    try:
        encoder = _ENCODERS[type(message)]
    except KeyError:
        raise TypeError(f"not an ITCH 5.0 message: {type(message).__name__}") from None
    try:
        return encoder(message)  # type: ignore[no-any-return]
    except (struct.error, TypeError, KeyError, ValueError, AttributeError, OverflowError):
        raise _explain_encode_failure(message) from None


# --------------------------------------------------------------------------------------------
# Slow paths: find the fact that made the fast path fail
# --------------------------------------------------------------------------------------------


def _explain_decode_failure(buf: bytes | bytearray | memoryview, offset: int) -> DecodeError:
    type_byte = buf[offset]
    layout = MESSAGE_LAYOUTS[type_byte]
    available = len(buf) - offset
    if available < layout.length:
        return TruncatedMessage(type_byte, layout.length, available, offset)
    position = offset + 1
    for f in layout.fields:
        raw = bytes(buf[position : position + f.size])
        if f.kind == "alpha" and not raw.isascii():
            return InvalidAlphaField(type_byte, f.name, raw, offset)
        position += f.size
    return DecodeError(  # pragma: no cover - every fast-path failure is explained above
        f"ITCH 5.0 message at offset {offset} could not be decoded"
    )


def _field_problem(f: FieldLayout, value: object) -> str | None:
    """Why ``value`` cannot go in field ``f``, or None when it fits."""
    if f.kind == "alpha":
        if f.size == 1:
            if not (isinstance(value, str) and len(value) == 1 and value.isascii()):
                return "must be exactly one ASCII character"
            return None
        if not (isinstance(value, str) and value.isascii() and len(value) <= f.size):
            return f"must be ASCII text of at most {f.size} characters"
        return None
    bits = 8 * f.size
    if not isinstance(value, int) or not 0 <= value < 1 << bits:
        return f"must be an integer in 0..{(1 << bits) - 1} ({f.size} bytes unsigned)"
    return None


def _explain_encode_failure(message: ItchMessage) -> Exception:
    layout = _LAYOUT_BY_CLASS[type(message)]
    for f in layout.fields:
        value = getattr(message, f.name)
        problem = _field_problem(f, value)
        if problem is not None:
            return EncodeError(message.message_type, f.name, value, problem)
    return EncodeError(  # pragma: no cover - every fast-path failure is explained above
        message.message_type, "?", message, "could not be packed"
    )
