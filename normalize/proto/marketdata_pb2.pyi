from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    SIDE_BUY: _ClassVar[Side]
    SIDE_SELL: _ClassVar[Side]

class TradeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRADE_KIND_UNSPECIFIED: _ClassVar[TradeKind]
    TRADE_KIND_EXECUTION: _ClassVar[TradeKind]
    TRADE_KIND_EXECUTION_WITH_PRICE: _ClassVar[TradeKind]
    TRADE_KIND_NON_CROSS: _ClassVar[TradeKind]
    TRADE_KIND_CROSS: _ClassVar[TradeKind]
    TRADE_KIND_BROKEN: _ClassVar[TradeKind]

class StatusKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_KIND_UNSPECIFIED: _ClassVar[StatusKind]
    STATUS_KIND_SYSTEM_EVENT: _ClassVar[StatusKind]
    STATUS_KIND_TRADING_ACTION: _ClassVar[StatusKind]
    STATUS_KIND_REG_SHO: _ClassVar[StatusKind]
    STATUS_KIND_MWCB: _ClassVar[StatusKind]
    STATUS_KIND_OPERATIONAL_HALT: _ClassVar[StatusKind]
    STATUS_KIND_LULD_COLLAR: _ClassVar[StatusKind]
    STATUS_KIND_IPO_QUOTING: _ClassVar[StatusKind]
    STATUS_KIND_FEED_STALE: _ClassVar[StatusKind]
    STATUS_KIND_FEED_RECOVERED: _ClassVar[StatusKind]
SIDE_UNSPECIFIED: Side
SIDE_BUY: Side
SIDE_SELL: Side
TRADE_KIND_UNSPECIFIED: TradeKind
TRADE_KIND_EXECUTION: TradeKind
TRADE_KIND_EXECUTION_WITH_PRICE: TradeKind
TRADE_KIND_NON_CROSS: TradeKind
TRADE_KIND_CROSS: TradeKind
TRADE_KIND_BROKEN: TradeKind
STATUS_KIND_UNSPECIFIED: StatusKind
STATUS_KIND_SYSTEM_EVENT: StatusKind
STATUS_KIND_TRADING_ACTION: StatusKind
STATUS_KIND_REG_SHO: StatusKind
STATUS_KIND_MWCB: StatusKind
STATUS_KIND_OPERATIONAL_HALT: StatusKind
STATUS_KIND_LULD_COLLAR: StatusKind
STATUS_KIND_IPO_QUOTING: StatusKind
STATUS_KIND_FEED_STALE: StatusKind
STATUS_KIND_FEED_RECOVERED: StatusKind

class Trade(_message.Message):
    __slots__ = ("symbol", "exchange_ts_ns", "seq", "receive_ts_ns", "publish_ts_ns", "price", "size", "side", "match_number", "kind", "cross_type", "session")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_TS_NS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TS_NS_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_TS_NS_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    MATCH_NUMBER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CROSS_TYPE_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    exchange_ts_ns: int
    seq: int
    receive_ts_ns: int
    publish_ts_ns: int
    price: int
    size: int
    side: Side
    match_number: int
    kind: TradeKind
    cross_type: str
    session: str
    def __init__(self, symbol: _Optional[str] = ..., exchange_ts_ns: _Optional[int] = ..., seq: _Optional[int] = ..., receive_ts_ns: _Optional[int] = ..., publish_ts_ns: _Optional[int] = ..., price: _Optional[int] = ..., size: _Optional[int] = ..., side: _Optional[_Union[Side, str]] = ..., match_number: _Optional[int] = ..., kind: _Optional[_Union[TradeKind, str]] = ..., cross_type: _Optional[str] = ..., session: _Optional[str] = ...) -> None: ...

class Quote(_message.Message):
    __slots__ = ("symbol", "exchange_ts_ns", "seq", "receive_ts_ns", "publish_ts_ns", "bid_price", "bid_size", "ask_price", "ask_size", "session")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_TS_NS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TS_NS_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_TS_NS_FIELD_NUMBER: _ClassVar[int]
    BID_PRICE_FIELD_NUMBER: _ClassVar[int]
    BID_SIZE_FIELD_NUMBER: _ClassVar[int]
    ASK_PRICE_FIELD_NUMBER: _ClassVar[int]
    ASK_SIZE_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    exchange_ts_ns: int
    seq: int
    receive_ts_ns: int
    publish_ts_ns: int
    bid_price: int
    bid_size: int
    ask_price: int
    ask_size: int
    session: str
    def __init__(self, symbol: _Optional[str] = ..., exchange_ts_ns: _Optional[int] = ..., seq: _Optional[int] = ..., receive_ts_ns: _Optional[int] = ..., publish_ts_ns: _Optional[int] = ..., bid_price: _Optional[int] = ..., bid_size: _Optional[int] = ..., ask_price: _Optional[int] = ..., ask_size: _Optional[int] = ..., session: _Optional[str] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("symbol", "exchange_ts_ns", "seq", "receive_ts_ns", "publish_ts_ns", "kind", "code", "reason", "halted", "session")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_TS_NS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TS_NS_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_TS_NS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    HALTED_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    exchange_ts_ns: int
    seq: int
    receive_ts_ns: int
    publish_ts_ns: int
    kind: StatusKind
    code: str
    reason: str
    halted: bool
    session: str
    def __init__(self, symbol: _Optional[str] = ..., exchange_ts_ns: _Optional[int] = ..., seq: _Optional[int] = ..., receive_ts_ns: _Optional[int] = ..., publish_ts_ns: _Optional[int] = ..., kind: _Optional[_Union[StatusKind, str]] = ..., code: _Optional[str] = ..., reason: _Optional[str] = ..., halted: _Optional[bool] = ..., session: _Optional[str] = ...) -> None: ...

class Bar(_message.Message):
    __slots__ = ("symbol", "start_ts_ns", "end_ts_ns", "open", "high", "low", "close", "volume", "trade_count", "vwap_e8", "revised", "publish_ts_ns", "seq", "exchange_ts_ns", "receive_ts_ns")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    START_TS_NS_FIELD_NUMBER: _ClassVar[int]
    END_TS_NS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    TRADE_COUNT_FIELD_NUMBER: _ClassVar[int]
    VWAP_E8_FIELD_NUMBER: _ClassVar[int]
    REVISED_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_TS_NS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_TS_NS_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TS_NS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    start_ts_ns: int
    end_ts_ns: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    trade_count: int
    vwap_e8: int
    revised: bool
    publish_ts_ns: int
    seq: int
    exchange_ts_ns: int
    receive_ts_ns: int
    def __init__(self, symbol: _Optional[str] = ..., start_ts_ns: _Optional[int] = ..., end_ts_ns: _Optional[int] = ..., open: _Optional[int] = ..., high: _Optional[int] = ..., low: _Optional[int] = ..., close: _Optional[int] = ..., volume: _Optional[int] = ..., trade_count: _Optional[int] = ..., vwap_e8: _Optional[int] = ..., revised: _Optional[bool] = ..., publish_ts_ns: _Optional[int] = ..., seq: _Optional[int] = ..., exchange_ts_ns: _Optional[int] = ..., receive_ts_ns: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("trade", "quote", "status", "bar")
    TRADE_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BAR_FIELD_NUMBER: _ClassVar[int]
    trade: Trade
    quote: Quote
    status: Status
    bar: Bar
    def __init__(self, trade: _Optional[_Union[Trade, _Mapping]] = ..., quote: _Optional[_Union[Quote, _Mapping]] = ..., status: _Optional[_Union[Status, _Mapping]] = ..., bar: _Optional[_Union[Bar, _Mapping]] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("symbol", "events")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, symbol: _Optional[str] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...
