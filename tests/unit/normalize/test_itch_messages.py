"""ITCH 5.0 codec against byte strings built field by field from the specification.

Each ``*_BYTES`` constant below is written in the order and widths of the specification's
"Message Formats" tables (section 1.x), independently of ``normalize.itch``'s layouts.
"""

from __future__ import annotations

import dataclasses

import pytest

from normalize.errors import (
    DecodeError,
    EncodeError,
    InvalidAlphaField,
    LengthMismatch,
    NormalizeError,
    TruncatedMessage,
    UnknownMessageType,
)
from normalize.itch import (
    MESSAGE_LAYOUTS,
    MESSAGE_LENGTHS,
    AddOrder,
    AddOrderWithMpid,
    BrokenTrade,
    CrossTrade,
    DirectListingCapitalRaisePriceDiscovery,
    IpoQuotingPeriodUpdate,
    LuldAuctionCollar,
    MarketParticipantPosition,
    MwcbDeclineLevel,
    MwcbStatus,
    NetOrderImbalanceIndicator,
    NonCrossTrade,
    OperationalHalt,
    OrderCancel,
    OrderDelete,
    OrderExecuted,
    OrderExecutedWithPrice,
    OrderReplace,
    RegShoRestriction,
    RetailPriceImprovementIndicator,
    StockDirectory,
    StockTradingAction,
    SystemEvent,
    decode,
    encode,
)
from tickerplant.errors import TickerplantError


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def u48(value: int) -> bytes:
    return value.to_bytes(6, "big")


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


# 1.1 System Event
SYSTEM_EVENT_BYTES = (
    b"S"
    + u16(0)  # Stock Locate: always 0
    + u16(0)  # Tracking Number
    + u48(11_039_687_760_787)  # Timestamp: 03:03:59.687760787
    + b"O"  # Event Code: Start of Messages
)
SYSTEM_EVENT = SystemEvent(0, 0, 11_039_687_760_787, "O")

# 1.2.1 Stock Directory
STOCK_DIRECTORY_BYTES = (
    b"R"
    + u16(13)  # Stock Locate
    + u16(0)  # Tracking Number
    + u48(11_314_234_545_561)  # Timestamp
    + b"AAPL    "  # Stock
    + b"Q"  # Market Category: Nasdaq Global Select Market
    + b"N"  # Financial Status Indicator: Normal
    + u32(100)  # Round Lot Size
    + b"N"  # Round Lots Only
    + b"C"  # Issue Classification: Common Stock
    + b"Z "  # Issue Sub-Type (2 bytes, space padded)
    + b"P"  # Authenticity: Live/Production
    + b"N"  # Short Sale Threshold Indicator
    + b" "  # IPO Flag: not available
    + b"1"  # LULD Reference Price Tier
    + b"N"  # ETP Flag
    + u32(0)  # ETP Leverage Factor
    + b"N"  # Inverse Indicator
)
STOCK_DIRECTORY = StockDirectory(
    stock_locate=13,
    tracking_number=0,
    timestamp=11_314_234_545_561,
    stock="AAPL",
    market_category="Q",
    financial_status_indicator="N",
    round_lot_size=100,
    round_lots_only="N",
    issue_classification="C",
    issue_sub_type="Z",
    authenticity="P",
    short_sale_threshold_indicator="N",
    ipo_flag=" ",
    luld_reference_price_tier="1",
    etp_flag="N",
    etp_leverage_factor=0,
    inverse_indicator="N",
)

# 1.2.2 Stock Trading Action
STOCK_TRADING_ACTION_BYTES = (
    b"H"
    + u16(13)  # Stock Locate
    + u16(1)  # Tracking Number
    + u48(14_400_000_000_000)  # Timestamp: 04:00:00
    + b"AAPL    "  # Stock
    + b"H"  # Trading State: Halted
    + b" "  # Reserved
    + b"T1  "  # Reason: halt, news pending (4 bytes, space padded)
)
STOCK_TRADING_ACTION = StockTradingAction(13, 1, 14_400_000_000_000, "AAPL", "H", " ", "T1")

# 1.2.3 Reg SHO Short Sale Price Test Restricted Indicator
REG_SHO_RESTRICTION_BYTES = (
    b"Y"
    + u16(13)  # Locate Code
    + u16(2)  # Tracking Number
    + u48(14_400_000_000_001)  # Timestamp
    + b"AAPL    "  # Stock
    + b"1"  # Reg SHO Action: restriction in effect (intra-day drop)
)
REG_SHO_RESTRICTION = RegShoRestriction(13, 2, 14_400_000_000_001, "AAPL", "1")

# 1.2.4 Market Participant Position
MARKET_PARTICIPANT_POSITION_BYTES = (
    b"L"
    + u16(13)  # Stock Locate
    + u16(3)  # Tracking Number
    + u48(14_400_000_000_002)  # Timestamp
    + b"NITE"  # MPID
    + b"AAPL    "  # Stock
    + b"Y"  # Primary Market Maker
    + b"N"  # Market Maker Mode: normal
    + b"A"  # Market Participant State: active
)
MARKET_PARTICIPANT_POSITION = MarketParticipantPosition(
    13, 3, 14_400_000_000_002, "NITE", "AAPL", "Y", "N", "A"
)

# 1.2.5.1 MWCB Decline Level, Price(8)
MWCB_DECLINE_LEVEL_BYTES = (
    b"V"
    + u16(0)  # Stock Locate: always 0
    + u16(4)  # Tracking Number
    + u48(30_600_000_000_000)  # Timestamp: 08:30:00
    + u64(541_284_500_000)  # Level 1: 5412.84500000
    + u64(500_110_000_000)  # Level 2: 5001.10000000
    + u64(470_110_000_000)  # Level 3: 4701.10000000
)
MWCB_DECLINE_LEVEL = MwcbDeclineLevel(
    0, 4, 30_600_000_000_000, 541_284_500_000, 500_110_000_000, 470_110_000_000
)

# 1.2.5.2 MWCB Status
MWCB_STATUS_BYTES = (
    b"W"
    + u16(0)  # Stock Locate: always 0
    + u16(5)  # Tracking Number
    + u48(36_000_000_000_000)  # Timestamp: 10:00:00
    + b"1"  # Breached Level
)
MWCB_STATUS = MwcbStatus(0, 5, 36_000_000_000_000, "1")

# 1.2.6 IPO Quoting Period Update
IPO_QUOTING_PERIOD_UPDATE_BYTES = (
    b"K"
    + u16(0)  # Stock Locate
    + u16(6)  # Tracking Number
    + u48(25_200_000_000_000)  # Timestamp: 07:00:00
    + b"ZVZZT   "  # Stock
    + u32(41_400)  # IPO Quotation Release Time: 11:30:00, seconds since midnight
    + b"A"  # IPO Quotation Release Qualifier: anticipated
    + u32(200_000)  # IPO Price: 20.0000
)
IPO_QUOTING_PERIOD_UPDATE = IpoQuotingPeriodUpdate(
    0, 6, 25_200_000_000_000, "ZVZZT", 41_400, "A", 200_000
)

# 1.2.7 LULD Auction Collar
LULD_AUCTION_COLLAR_BYTES = (
    b"J"
    + u16(13)  # Stock Locate
    + u16(7)  # Tracking Number
    + u48(39_600_000_000_000)  # Timestamp: 11:00:00
    + b"AAPL    "  # Stock
    + u32(1_912_500)  # Auction Collar Reference Price: 191.2500
    + u32(2_008_100)  # Upper Auction Collar Price: 200.8100
    + u32(1_816_900)  # Lower Auction Collar Price: 181.6900
    + u32(1)  # Auction Collar Extension
)
LULD_AUCTION_COLLAR = LuldAuctionCollar(
    13, 7, 39_600_000_000_000, "AAPL", 1_912_500, 2_008_100, 1_816_900, 1
)

# 1.2.8 Operational Halt
OPERATIONAL_HALT_BYTES = (
    b"h"
    + u16(13)  # Stock Locate
    + u16(8)  # Tracking Number
    + u48(39_600_000_000_001)  # Timestamp
    + b"AAPL    "  # Stock
    + b"Q"  # Market Code: Nasdaq
    + b"H"  # Operational Halt Action: halted
)
OPERATIONAL_HALT = OperationalHalt(13, 8, 39_600_000_000_001, "AAPL", "Q", "H")

# 1.3.1 Add Order, no MPID attribution
ADD_ORDER_BYTES = (
    b"A"
    + u16(13)  # Stock Locate
    + u16(9)  # Tracking Number
    + u48(34_200_000_000_123)  # Timestamp: 09:30:00.000000123
    + u64(335_531_633)  # Order Reference Number
    + b"B"  # Buy/Sell Indicator
    + u32(100)  # Shares
    + b"AAPL    "  # Stock
    + u32(1_912_500)  # Price: 191.2500
)
ADD_ORDER = AddOrder(13, 9, 34_200_000_000_123, 335_531_633, "B", 100, "AAPL", 1_912_500)

# 1.3.2 Add Order with MPID attribution
ADD_ORDER_WITH_MPID_BYTES = (
    b"F"
    + u16(13)  # Stock Locate
    + u16(10)  # Tracking Number
    + u48(34_200_000_000_456)  # Timestamp
    + u64(335_531_634)  # Order Reference Number
    + b"S"  # Buy/Sell Indicator
    + u32(250)  # Shares
    + b"AAPL    "  # Stock
    + u32(1_912_600)  # Price: 191.2600
    + b"NSDQ"  # Attribution
)
ADD_ORDER_WITH_MPID = AddOrderWithMpid(
    13, 10, 34_200_000_000_456, 335_531_634, "S", 250, "AAPL", 1_912_600, "NSDQ"
)

# 1.4.1 Order Executed
ORDER_EXECUTED_BYTES = (
    b"E"
    + u16(13)  # Stock Locate
    + u16(11)  # Tracking Number
    + u48(34_200_100_000_000)  # Timestamp
    + u64(335_531_633)  # Order Reference Number
    + u32(60)  # Executed Shares
    + u64(4_242_424)  # Match Number
)
ORDER_EXECUTED = OrderExecuted(13, 11, 34_200_100_000_000, 335_531_633, 60, 4_242_424)

# 1.4.2 Order Executed With Price
ORDER_EXECUTED_WITH_PRICE_BYTES = (
    b"C"
    + u16(13)  # Stock Locate
    + u16(12)  # Tracking Number
    + u48(34_200_200_000_000)  # Timestamp
    + u64(335_531_633)  # Order Reference Number
    + u32(40)  # Executed Shares
    + u64(4_242_425)  # Match Number
    + b"Y"  # Printable
    + u32(1_912_400)  # Execution Price: 191.2400
)
ORDER_EXECUTED_WITH_PRICE = OrderExecutedWithPrice(
    13, 12, 34_200_200_000_000, 335_531_633, 40, 4_242_425, "Y", 1_912_400
)

# 1.4.3 Order Cancel
ORDER_CANCEL_BYTES = (
    b"X"
    + u16(13)  # Stock Locate
    + u16(13)  # Tracking Number
    + u48(34_200_300_000_000)  # Timestamp
    + u64(335_531_634)  # Order Reference Number
    + u32(50)  # Cancelled Shares
)
ORDER_CANCEL = OrderCancel(13, 13, 34_200_300_000_000, 335_531_634, 50)

# 1.4.4 Order Delete
ORDER_DELETE_BYTES = (
    b"D"
    + u16(13)  # Stock Locate
    + u16(14)  # Tracking Number
    + u48(34_200_400_000_000)  # Timestamp
    + u64(335_531_634)  # Order Reference Number
)
ORDER_DELETE = OrderDelete(13, 14, 34_200_400_000_000, 335_531_634)

# 1.4.5 Order Replace
ORDER_REPLACE_BYTES = (
    b"U"
    + u16(13)  # Stock Locate
    + u16(15)  # Tracking Number
    + u48(34_200_500_000_000)  # Timestamp
    + u64(335_531_635)  # Original Order Reference Number
    + u64(335_531_701)  # New Order Reference Number
    + u32(300)  # Shares
    + u32(1_912_700)  # Price: 191.2700
)
ORDER_REPLACE = OrderReplace(13, 15, 34_200_500_000_000, 335_531_635, 335_531_701, 300, 1_912_700)

# 1.5.1 Trade (Non-Cross)
NON_CROSS_TRADE_BYTES = (
    b"P"
    + u16(21)  # Stock Locate
    + u16(16)  # Tracking Number
    + u48(34_200_600_000_000)  # Timestamp
    + u64(0)  # Order Reference Number: zero since 2010
    + b"B"  # Buy/Sell Indicator: always "B" since 2014
    + u32(200)  # Shares
    + b"MSFT    "  # Stock
    + u32(4_151_200)  # Price: 415.1200
    + u64(4_242_426)  # Match Number
)
NON_CROSS_TRADE = NonCrossTrade(
    21, 16, 34_200_600_000_000, 0, "B", 200, "MSFT", 4_151_200, 4_242_426
)

# 1.5.2 Cross Trade
CROSS_TRADE_BYTES = (
    b"Q"
    + u16(13)  # Stock Locate
    + u16(17)  # Tracking Number
    + u48(34_200_000_000_000)  # Timestamp: 09:30:00
    + u64(5_000_000_123)  # Shares (8 bytes in this message)
    + b"AAPL    "  # Stock
    + u32(1_912_500)  # Cross Price
    + u64(4_242_427)  # Match Number
    + b"O"  # Cross Type: Nasdaq Opening Cross
)
CROSS_TRADE = CrossTrade(
    13, 17, 34_200_000_000_000, 5_000_000_123, "AAPL", 1_912_500, 4_242_427, "O"
)

# 1.5.3 Broken Trade / Order Execution
BROKEN_TRADE_BYTES = (
    b"B"
    + u16(13)  # Stock Locate
    + u16(18)  # Tracking Number
    + u48(50_000_000_000_000)  # Timestamp
    + u64(4_242_424)  # Match Number
)
BROKEN_TRADE = BrokenTrade(13, 18, 50_000_000_000_000, 4_242_424)

# 1.6 Net Order Imbalance Indicator (NOII)
NOII_BYTES = (
    b"I"
    + u16(13)  # Stock Locate
    + u16(19)  # Tracking Number
    + u48(57_000_000_000_000)  # Timestamp: 15:50:00
    + u64(1_200_000)  # Paired Shares
    + u64(35_000)  # Imbalance Shares
    + b"S"  # Imbalance Direction: sell imbalance
    + b"AAPL    "  # Stock
    + u32(1_911_000)  # Far Price
    + u32(1_911_500)  # Near Price
    + u32(1_912_000)  # Current Reference Price
    + b"C"  # Cross Type: Nasdaq Closing Cross
    + b"L"  # Price Variation Indicator: less than 1%
)
NOII = NetOrderImbalanceIndicator(
    stock_locate=13,
    tracking_number=19,
    timestamp=57_000_000_000_000,
    paired_shares=1_200_000,
    imbalance_shares=35_000,
    imbalance_direction="S",
    stock="AAPL",
    far_price=1_911_000,
    near_price=1_911_500,
    current_reference_price=1_912_000,
    cross_type="C",
    price_variation_indicator="L",
)

# 1.7 Retail Price Improvement Indicator
RPII_BYTES = (
    b"N"
    + u16(13)  # Stock Locate
    + u16(20)  # Tracking Number
    + u48(40_000_000_000_000)  # Timestamp
    + b"AAPL    "  # Stock
    + b"A"  # Interest Flag: both sides
)
RPII = RetailPriceImprovementIndicator(13, 20, 40_000_000_000_000, "AAPL", "A")

# 1.8 Direct Listing with Capital Raise Price Discovery
DLCR_BYTES = (
    b"O"
    + u16(77)  # Stock Locate
    + u16(21)  # Tracking Number
    + u48(45_000_000_000_000)  # Timestamp
    + b"DLCR    "  # Stock
    + b"Y"  # Open Eligibility Status
    + u32(80_000)  # Minimum Allowable Price: 8.0000
    + u32(180_000)  # Maximum Allowable Price: 18.0000
    + u32(125_000)  # Near Execution Price: 12.5000
    + u64(44_999_000_000_000)  # Near Execution Time
    + u32(112_500)  # Lower Price Range Collar
    + u32(137_500)  # Upper Price Range Collar
)
DLCR = DirectListingCapitalRaisePriceDiscovery(
    stock_locate=77,
    tracking_number=21,
    timestamp=45_000_000_000_000,
    stock="DLCR",
    open_eligibility_status="Y",
    minimum_allowable_price=80_000,
    maximum_allowable_price=180_000,
    near_execution_price=125_000,
    near_execution_time=44_999_000_000_000,
    lower_price_range_collar=112_500,
    upper_price_range_collar=137_500,
)

# (spec bytes, decoded message, length the specification states)
SPEC_CASES = {
    "S system event": (SYSTEM_EVENT_BYTES, SYSTEM_EVENT, 12),
    "R stock directory": (STOCK_DIRECTORY_BYTES, STOCK_DIRECTORY, 39),
    "H stock trading action": (STOCK_TRADING_ACTION_BYTES, STOCK_TRADING_ACTION, 25),
    "Y reg sho restriction": (REG_SHO_RESTRICTION_BYTES, REG_SHO_RESTRICTION, 20),
    "L market participant position": (
        MARKET_PARTICIPANT_POSITION_BYTES,
        MARKET_PARTICIPANT_POSITION,
        26,
    ),
    "V mwcb decline level": (MWCB_DECLINE_LEVEL_BYTES, MWCB_DECLINE_LEVEL, 35),
    "W mwcb status": (MWCB_STATUS_BYTES, MWCB_STATUS, 12),
    "K ipo quoting period update": (IPO_QUOTING_PERIOD_UPDATE_BYTES, IPO_QUOTING_PERIOD_UPDATE, 28),
    "J luld auction collar": (LULD_AUCTION_COLLAR_BYTES, LULD_AUCTION_COLLAR, 35),
    "h operational halt": (OPERATIONAL_HALT_BYTES, OPERATIONAL_HALT, 21),
    "A add order": (ADD_ORDER_BYTES, ADD_ORDER, 36),
    "F add order with mpid": (ADD_ORDER_WITH_MPID_BYTES, ADD_ORDER_WITH_MPID, 40),
    "E order executed": (ORDER_EXECUTED_BYTES, ORDER_EXECUTED, 31),
    "C order executed with price": (ORDER_EXECUTED_WITH_PRICE_BYTES, ORDER_EXECUTED_WITH_PRICE, 36),
    "X order cancel": (ORDER_CANCEL_BYTES, ORDER_CANCEL, 23),
    "D order delete": (ORDER_DELETE_BYTES, ORDER_DELETE, 19),
    "U order replace": (ORDER_REPLACE_BYTES, ORDER_REPLACE, 35),
    "P non-cross trade": (NON_CROSS_TRADE_BYTES, NON_CROSS_TRADE, 44),
    "Q cross trade": (CROSS_TRADE_BYTES, CROSS_TRADE, 40),
    "B broken trade": (BROKEN_TRADE_BYTES, BROKEN_TRADE, 19),
    "I noii": (NOII_BYTES, NOII, 50),
    "N retail price improvement indicator": (RPII_BYTES, RPII, 20),
    "O direct listing with capital raise": (DLCR_BYTES, DLCR, 48),
}
CASES = pytest.mark.parametrize(
    ("raw", "message", "spec_length"), list(SPEC_CASES.values()), ids=list(SPEC_CASES)
)


# --- every message type, both directions ---------------------------------------------------


@CASES
def test_each_spec_byte_string_has_the_length_the_specification_states(raw, message, spec_length):
    """The hand-built bytes and the codec's length table both give the spec's total length."""
    assert len(raw) == spec_length
    assert MESSAGE_LENGTHS[raw[0]] == spec_length


@CASES
def test_each_message_type_decodes_its_spec_bytes_to_exact_field_values(raw, message, spec_length):
    """Decoding the spec bytes gives the message class with every field value as written."""
    decoded = decode(raw)

    assert type(decoded) is type(message)
    assert dataclasses.asdict(decoded) == dataclasses.asdict(message)
    assert decoded.message_type == chr(raw[0])


@CASES
def test_each_message_type_encodes_to_exactly_its_spec_bytes(raw, message, spec_length):
    """Encoding the message gives the spec bytes, symbol and text fields space padded."""
    assert encode(message) == raw


@CASES
def test_each_message_type_decodes_the_same_from_a_frame_given_its_length(
    raw, message, spec_length
):
    """Passing the framing length (equal to the spec length) changes nothing."""
    assert decode(raw, 0, spec_length) == message


def test_the_length_table_covers_exactly_the_specified_message_types():
    """MESSAGE_LENGTHS has the 23 ITCH 5.0 types with the spec's lengths, and nothing else."""
    assert {chr(type_byte): length for type_byte, length in MESSAGE_LENGTHS.items()} == {
        "S": 12,
        "R": 39,
        "H": 25,
        "Y": 20,
        "L": 26,
        "V": 35,
        "W": 12,
        "K": 28,
        "J": 35,
        "h": 21,
        "A": 36,
        "F": 40,
        "E": 31,
        "C": 36,
        "X": 23,
        "D": 19,
        "U": 35,
        "P": 44,
        "Q": 40,
        "B": 19,
        "I": 50,
        "N": 20,
        "O": 48,
    }


def test_the_layout_table_gives_each_types_struct_class_and_length():
    """The Add Order layout packs type byte, header (timestamp as 2+4) and fields in order."""
    layout = MESSAGE_LAYOUTS[ord("A")]

    assert layout.message_class is AddOrder
    assert layout.length == 36
    assert layout.struct.format == ">BHHHIQBI8sI"
    assert layout.struct.size == 36
    assert [(f.name, f.kind, f.size) for f in layout.fields] == [
        ("stock_locate", "integer", 2),
        ("tracking_number", "integer", 2),
        ("timestamp", "timestamp", 6),
        ("order_reference_number", "integer", 8),
        ("buy_sell_indicator", "alpha", 1),
        ("shares", "integer", 4),
        ("stock", "alpha", 8),
        ("price", "price", 4),
    ]
    assert MESSAGE_LAYOUTS[ord("A")].fields[-1].decimals == 4
    assert MESSAGE_LAYOUTS[ord("V")].fields[-1].decimals == 8


# --- buffers, offsets, edge values ----------------------------------------------------------


def test_a_message_decodes_at_an_offset_inside_a_larger_buffer_ignoring_what_follows():
    """An Add Order 5 bytes into a buffer, followed by an Order Delete, decodes alone."""
    buffer = b"\x00" * 5 + ADD_ORDER_BYTES + ORDER_DELETE_BYTES

    assert decode(buffer, 5) == ADD_ORDER
    assert decode(buffer, 5 + 36) == ORDER_DELETE


def test_a_message_decodes_from_a_memoryview_and_a_bytearray():
    """A zero-copy view and a mutable buffer decode to the same message as bytes."""
    assert decode(memoryview(b"xx" + ADD_ORDER_BYTES), 2) == ADD_ORDER
    assert decode(bytearray(ADD_ORDER_BYTES)) == ADD_ORDER


def test_the_largest_timestamp_and_integers_survive_both_directions():
    """A 48-bit all-ones timestamp and 64-bit all-ones integers round-trip unchanged."""
    raw = b"E" + u16(0xFFFF) + u16(0xFFFF) + u48(2**48 - 1) + u64(2**64 - 1) + u32(2**32 - 1)
    raw += u64(2**64 - 1)
    message = OrderExecuted(0xFFFF, 0xFFFF, 2**48 - 1, 2**64 - 1, 2**32 - 1, 2**64 - 1)

    assert decode(raw) == message
    assert encode(message) == raw


def test_padding_is_stripped_from_text_fields_but_inner_spaces_and_one_byte_spaces_stay():
    """'BRK A   ' decodes to 'BRK A'; an all-space sub-type to ''; a one-byte ' ' stays ' '."""
    raw = STOCK_DIRECTORY_BYTES[:11] + b"BRK A   " + STOCK_DIRECTORY_BYTES[19:27] + b"  "
    raw += STOCK_DIRECTORY_BYTES[29:]

    decoded = decode(raw)

    assert (decoded.stock, decoded.issue_sub_type, decoded.ipo_flag) == ("BRK A", "", " ")
    assert encode(decoded) == raw


def test_messages_are_immutable_hashable_values():
    """Assigning a field raises FrozenInstanceError; equal messages hash equal."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        ADD_ORDER.shares = 1  # type: ignore[misc]
    assert decode(ADD_ORDER_BYTES) == ADD_ORDER
    assert hash(decode(ADD_ORDER_BYTES)) == hash(ADD_ORDER)
    assert {decode(ADD_ORDER_BYTES), ADD_ORDER} == {ADD_ORDER}


# --- decode errors --------------------------------------------------------------------------


def test_an_unknown_type_byte_raises_unknown_message_type_with_byte_and_offset():
    """'z' at offset 3 is not an ITCH 5.0 message type."""
    with pytest.raises(UnknownMessageType) as caught:
        decode(b"\x00\x00\x00z" + b"\x00" * 40, 3)

    assert (caught.value.type_byte, caught.value.offset) == (ord("z"), 3)
    assert str(caught.value) == "unknown ITCH 5.0 message type 'z' (0x7a) at offset 3"


def test_an_unprintable_unknown_type_byte_is_shown_in_hex():
    """A NUL type byte is reported as 0x00."""
    with pytest.raises(
        UnknownMessageType, match=r"^unknown ITCH 5.0 message type 0x00 at offset 0$"
    ):
        decode(b"\x00" * 36)


def test_a_framing_length_other_than_the_types_length_raises_length_mismatch():
    """An Add Order framed as 35 bytes is rejected before any field is read."""
    with pytest.raises(LengthMismatch) as caught:
        decode(ADD_ORDER_BYTES, 0, 35)

    error = caught.value
    assert (error.type_byte, error.expected, error.actual, error.offset) == (ord("A"), 36, 35, 0)
    assert str(error) == (
        "ITCH 5.0 message type 'A' (0x41) at offset 0 is 36 bytes long, but its frame says 35"
    )


def test_a_buffer_shorter_than_the_message_raises_truncated_message():
    """An Add Order cut after 20 of its 36 bytes is truncated."""
    with pytest.raises(TruncatedMessage) as caught:
        decode(ADD_ORDER_BYTES[:20])

    error = caught.value
    assert (error.type_byte, error.expected, error.available, error.offset) == (ord("A"), 36, 20, 0)
    assert str(error) == (
        "truncated ITCH 5.0 message type 'A' (0x41) at offset 0: needs 36 bytes, only 20 available"
    )


def test_a_frame_length_matching_the_type_but_a_short_buffer_is_still_truncated():
    """The framing says 36 but the buffer holds 35 bytes from the offset."""
    with pytest.raises(TruncatedMessage, match=r"at offset 1: needs 36 bytes, only 35 available$"):
        decode(b"\x00" + ADD_ORDER_BYTES[:-1], 1, 36)


def test_an_offset_at_the_end_of_the_buffer_raises_truncated_message_without_a_type():
    """Nothing at all to read: not even the type byte is available."""
    with pytest.raises(TruncatedMessage) as caught:
        decode(ADD_ORDER_BYTES, 36)

    assert caught.value.type_byte is None
    assert str(caught.value) == (
        "truncated ITCH 5.0 message at offset 36: needs 1 byte, only 0 available"
    )


def test_a_negative_offset_is_rejected():
    """Offsets count from the start of the buffer; -1 would silently read its last byte."""
    with pytest.raises(ValueError, match=r"^offset must be >= 0, got -1$"):
        decode(ADD_ORDER_BYTES, -1)


def test_a_non_ascii_byte_in_a_symbol_raises_invalid_alpha_field_naming_it():
    """0xC3 in the Stock field of an Add Order is not ASCII."""
    raw = ADD_ORDER_BYTES[:24] + b"\xc3PPL    " + ADD_ORDER_BYTES[32:]

    with pytest.raises(InvalidAlphaField) as caught:
        decode(raw)

    error = caught.value
    assert (error.type_byte, error.field, error.raw, error.offset) == (
        ord("A"),
        "stock",
        b"\xc3PPL    ",
        0,
    )
    assert str(error) == (
        "ITCH 5.0 message type 'A' (0x41) at offset 0: field stock holds non-ASCII bytes "
        "b'\\xc3PPL    '"
    )


def test_a_non_ascii_one_byte_code_raises_invalid_alpha_field_naming_it():
    """0x80 as the Buy/Sell Indicator is not ASCII."""
    raw = ADD_ORDER_BYTES[:19] + b"\x80" + ADD_ORDER_BYTES[20:]

    with pytest.raises(InvalidAlphaField, match=r"field buy_sell_indicator holds non-ASCII"):
        decode(raw)


def test_every_decode_error_is_a_normalize_and_tickerplant_error():
    """Callers can catch DecodeError, NormalizeError or TickerplantError."""
    for error_class in (UnknownMessageType, LengthMismatch, TruncatedMessage, InvalidAlphaField):
        assert issubclass(error_class, DecodeError)
    assert issubclass(DecodeError, NormalizeError)
    assert issubclass(EncodeError, NormalizeError)
    assert issubclass(NormalizeError, TickerplantError)
    assert not issubclass(EncodeError, DecodeError)


# --- encode errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "field", "value", "text"),
    [
        (
            dataclasses.replace(ADD_ORDER, shares=2**32),
            "shares",
            2**32,
            "field shares=4294967296 must be an integer in 0..4294967295 (4 bytes unsigned)",
        ),
        (
            dataclasses.replace(ADD_ORDER, stock_locate=-1),
            "stock_locate",
            -1,
            "field stock_locate=-1 must be an integer in 0..65535 (2 bytes unsigned)",
        ),
        (
            dataclasses.replace(ADD_ORDER, timestamp=2**48),
            "timestamp",
            2**48,
            "field timestamp=281474976710656 must be an integer in 0..281474976710655 "
            "(6 bytes unsigned)",
        ),
        (
            dataclasses.replace(ADD_ORDER, price=19.125),
            "price",
            19.125,
            "field price=19.125 must be an integer in 0..4294967295 (4 bytes unsigned)",
        ),
        (
            dataclasses.replace(ADD_ORDER, stock="GOOGLEPLX"),
            "stock",
            "GOOGLEPLX",
            "field stock='GOOGLEPLX' must be ASCII text of at most 8 characters",
        ),
        (
            dataclasses.replace(ADD_ORDER, stock="ÄPPL"),
            "stock",
            "ÄPPL",
            "field stock='ÄPPL' must be ASCII text of at most 8 characters",
        ),
        (
            dataclasses.replace(ADD_ORDER, buy_sell_indicator="BUY"),
            "buy_sell_indicator",
            "BUY",
            "field buy_sell_indicator='BUY' must be exactly one ASCII character",
        ),
        (
            dataclasses.replace(ADD_ORDER, buy_sell_indicator=""),
            "buy_sell_indicator",
            "",
            "field buy_sell_indicator='' must be exactly one ASCII character",
        ),
        (
            dataclasses.replace(MWCB_DECLINE_LEVEL, level_2=2**64),
            "level_2",
            2**64,
            "field level_2=18446744073709551616 must be an integer in 0..18446744073709551615 "
            "(8 bytes unsigned)",
        ),
        (
            dataclasses.replace(ADD_ORDER_WITH_MPID, attribution=b"NSDQ"),
            "attribution",
            b"NSDQ",
            "field attribution=b'NSDQ' must be ASCII text of at most 4 characters",
        ),
    ],
    ids=[
        "shares too big",
        "negative locate",
        "timestamp over 48 bits",
        "float price",
        "symbol too long",
        "non-ascii symbol",
        "code too long",
        "empty code",
        "price(8) too big",
        "bytes for text",
    ],
)
def test_a_value_that_does_not_fit_raises_encode_error_naming_the_field(
    message, field, value, text
):
    """The error carries the type, field and value, and says what would be accepted."""
    with pytest.raises(EncodeError) as caught:
        encode(message)

    error = caught.value
    assert (error.message_type, error.field, error.value) == (message.message_type, field, value)
    assert str(error) == f"cannot encode ITCH 5.0 message type {message.message_type!r}: {text}"


def test_encoding_something_that_is_not_a_message_raises_type_error():
    """A plain tuple is not an ITCH message."""
    with pytest.raises(TypeError, match=r"^not an ITCH 5.0 message: tuple$"):
        encode((1, 2, 3))  # type: ignore[arg-type]
