"""The stream protocol (JSON over WebSocket, Alpaca/Polygon style). Pure: no I/O.

Client → server: ``{"action":"auth","token":…}``,
``{"action":"subscribe"|"unsubscribe","trades":[…],"quotes":[…],"bars":[…],"statuses":[…]}``
(``"*"`` for every symbol). ``parse_client_message`` turns a frame into a command or raises
the ``StreamError`` whose code and message the client gets.

Server → client: every frame is a JSON array of messages, each with a type ``T``:
``success``, ``subscription``, ``error``, and the data messages ``t`` (trade), ``q`` (quote),
``b`` (bar), ``s`` (status). Data messages are encoded once per update as JSON *fragments*
(``encode_update``) and joined per client into frames (``frame``), so fan-out costs one
string join per client, not one ``json.dumps`` per client and message.

Prices are exact decimal literals from the 4-implied-decimal integers (``1234500`` →
``123.45``); times are RFC 3339 UTC with nanoseconds.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from conflate import BarUpdate, Channel, QuoteUpdate, StatusUpdate, TradeUpdate, Update
from fanout.errors import InvalidSubscribeActionError, InvalidSyntaxError, StreamError
from normalize.proto import marketdata_pb2 as pb

WILDCARD = "*"
SYMBOL_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9.\-/]{0,15}")
MAX_SYMBOLS_PER_MESSAGE = 10_000
ACTIONS = ("auth", "subscribe", "unsubscribe")
_CHANNEL_NAMES = tuple(channel.value for channel in Channel)


@dataclass(frozen=True, slots=True)
class Auth:
    token: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Symbols per channel to add; a channel absent from the message maps to ``()``."""

    symbols: Mapping[Channel, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    symbols: Mapping[Channel, tuple[str, ...]]


Command = Auth | Subscribe | Unsubscribe


def parse_client_message(data: str | bytes) -> Command:
    """The command in one client frame, or raise the ``StreamError`` to answer with."""
    if not isinstance(data, str):
        raise InvalidSyntaxError("binary frames are not accepted; send JSON text")
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        raise InvalidSyntaxError("not valid JSON") from None
    if not isinstance(message, dict):
        raise InvalidSyntaxError("expected a JSON object with an 'action'")
    action = message.get("action")
    if action not in ACTIONS:
        raise InvalidSyntaxError(f"'action' must be one of {', '.join(ACTIONS)}")
    if action == "auth":
        token = message.get("token")
        if not isinstance(token, str):
            raise InvalidSyntaxError("auth needs a string 'token'")
        return Auth(token)
    symbols = _channels(message, action)
    return Subscribe(symbols) if action == "subscribe" else Unsubscribe(symbols)


def _channels(message: dict, action: str) -> dict[Channel, tuple[str, ...]]:
    unknown = sorted(set(message) - {"action", *_CHANNEL_NAMES})
    if unknown:
        raise InvalidSubscribeActionError(
            f"unknown field {unknown[0]!r}; expected {', '.join(_CHANNEL_NAMES)}"
        )
    if not any(name in message for name in _CHANNEL_NAMES):
        raise InvalidSubscribeActionError(
            f"{action} needs at least one of {', '.join(_CHANNEL_NAMES)}"
        )
    out: dict[Channel, tuple[str, ...]] = {}
    total = 0
    for channel in Channel:
        value = message.get(channel.value, [])
        if not isinstance(value, list):
            raise InvalidSubscribeActionError(f"'{channel.value}' must be a list of symbols")
        total += len(value)
        if total > MAX_SYMBOLS_PER_MESSAGE:
            raise InvalidSubscribeActionError(
                f"at most {MAX_SYMBOLS_PER_MESSAGE} symbols per message"
            )
        symbols: dict[str, None] = {}
        for item in value:
            if not isinstance(item, str):
                raise InvalidSubscribeActionError(f"'{channel.value}' must be a list of strings")
            symbol = item.strip().upper()
            if symbol != WILDCARD and not SYMBOL_PATTERN.fullmatch(symbol):
                raise InvalidSubscribeActionError(
                    f"bad symbol {item[:20]!r} in '{channel.value}': use 1 to 16 of A-Z 0-9 . - /"
                    " or '*'"
                )
            symbols[symbol] = None
        out[channel] = tuple(symbols)
    return out


# -- server messages ---------------------------------------------------------------------------


def frame(fragments: Iterable[str]) -> str:
    """One frame: a JSON array of already encoded messages."""
    return "[" + ",".join(fragments) + "]"


def success(msg: str) -> str:
    return json.dumps({"T": "success", "msg": msg}, separators=(",", ":"))


def error(exc: StreamError) -> str:
    return json.dumps({"T": "error", "code": exc.code, "msg": exc.msg}, separators=(",", ":"))


def subscription(current: Mapping[Channel, list[str]]) -> str:
    """The acknowledgement: the full current subscription set, every channel present."""
    body: dict[str, object] = {"T": "subscription"}
    for channel in Channel:
        body[channel.value] = list(current.get(channel, []))
    return json.dumps(body, separators=(",", ":"))


def price(value: int) -> str:
    """An exact JSON number from a 4-implied-decimal integer: 1234500 → ``123.45``."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10_000)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:04d}".rstrip("0")


def rfc3339(ts_ns: int) -> str:
    """``2024-11-20T14:30:00.123456789Z``."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


_STATUS_KINDS = {
    value.number: value.name.removeprefix("STATUS_KIND_").lower()
    for value in pb.StatusKind.DESCRIPTOR.values
}


def encode_update(update: Update) -> str:
    """One data message as a JSON object (text), ready for ``frame``."""
    symbol = json.dumps(update.symbol)
    if isinstance(update, QuoteUpdate):
        q = update.quote
        return (
            f'{{"T":"q","S":{symbol},"bp":{price(q.bid_price)},"bs":{q.bid_size},'
            f'"ap":{price(q.ask_price)},"as":{q.ask_size},"t":"{rfc3339(q.exchange_ts_ns)}",'
            f'"i":{q.seq}}}'
        )
    if isinstance(update, TradeUpdate):
        t = update.trade
        return (
            f'{{"T":"t","S":{symbol},"p":{price(t.price)},"s":{t.size},'
            f'"t":"{rfc3339(t.exchange_ts_ns)}","i":{t.seq},"v":{update.volume},'
            f'"n":{update.count},"cv":{update.total_volume},"cn":{update.total_count}}}'
        )
    if isinstance(update, BarUpdate):
        b = update.bar
        return (
            f'{{"T":"b","S":{symbol},"o":{price(b.open)},"h":{price(b.high)},'
            f'"l":{price(b.low)},"c":{price(b.close)},"v":{b.volume},"n":{b.trade_count},'
            f'"t":"{rfc3339(b.start_ts_ns)}","e":"{rfc3339(b.end_ts_ns)}","i":{b.seq},'
            f'"r":{"true" if b.revised else "false"}}}'
        )
    if isinstance(update, StatusUpdate):
        s = update.status
        return json.dumps(
            {
                "T": "s",
                "S": s.symbol,
                "k": _STATUS_KINDS.get(s.kind, "unspecified"),
                "sc": s.code,
                "rm": s.reason,
                "h": s.halted,
                "t": rfc3339(s.exchange_ts_ns),
                "i": s.seq,
            },
            separators=(",", ":"),
        )
    raise TypeError(f"not an update: {type(update).__name__}")
