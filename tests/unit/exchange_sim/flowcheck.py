"""A tiny independent referee for simulated order flow: replays messages, asserts the rules.

It keeps its own book of live orders (ref -> locate, side, price, shares) and fails with the
offending message's index and content as soon as a rule is broken. It shares no code with
the simulator, so a bug in one is not mirrored in the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from normalize.itch import (
    AddOrder,
    AddOrderWithMpid,
    BrokenTrade,
    CrossTrade,
    Message,
    NetOrderImbalanceIndicator,
    NonCrossTrade,
    OrderCancel,
    OrderDelete,
    OrderExecuted,
    OrderExecutedWithPrice,
    OrderReplace,
    StockDirectory,
    StockTradingAction,
    SystemEvent,
)

SYSTEM_ORDER = "OSQMEC"


class FlowViolation(AssertionError):
    def __init__(self, index: int, message: Message, rule: str) -> None:
        super().__init__(f"message {index} {message!r}: {rule}")


@dataclass
class FlowReport:
    """What the referee saw: counts the tests assert on."""

    messages: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    by_locate: dict[int, int] = field(default_factory=dict)
    system_events: list[str] = field(default_factory=list)
    live_orders: int = 0
    halts: int = 0
    resumes: int = 0
    broken: int = 0
    crossed_books: int = 0


def check_flow(messages: Iterable[Message]) -> FlowReport:
    """Replay ``messages``; raise ``FlowViolation`` at the first broken rule."""
    report = FlowReport()
    stocks: dict[int, str] = {}  # locate -> stock, from 'R'
    state: dict[int, str] = {}  # locate -> trading state, from 'H'
    orders: dict[int, list] = {}  # ref -> [locate, side, price, shares]
    highest_ref = 0
    last_match = 0
    printed: set[int] = set()  # match numbers of printable executions and trades
    broken: set[int] = set()
    last_time = -1
    by_type = report.by_type
    by_locate = report.by_locate

    for index, message in enumerate(messages):
        kind = message.message_type
        by_type[kind] = by_type.get(kind, 0) + 1
        locate = message.stock_locate
        by_locate[locate] = by_locate.get(locate, 0) + 1

        def fail(rule: str, index: int = index, message: Message = message) -> FlowViolation:
            return FlowViolation(index, message, rule)

        if message.timestamp < last_time:
            raise fail(f"timestamp went back from {last_time}")
        last_time = message.timestamp
        if isinstance(message, SystemEvent):
            report.system_events.append(message.event_code)
            if SYSTEM_ORDER.find(message.event_code) <= max(
                (SYSTEM_ORDER.find(code) for code in report.system_events[:-1]), default=-1
            ):
                raise fail("system event out of schedule order")
            continue
        if isinstance(message, StockDirectory):
            if locate in stocks or message.stock in stocks.values():
                raise fail("symbol announced twice")
            stocks[locate] = message.stock
            continue
        if locate not in stocks:
            raise fail("symbol used before its Stock Directory message")
        stock = getattr(message, "stock", None)
        if stock is not None and stock != stocks[locate]:
            raise fail(f"stock {stock!r} does not match locate {locate} ({stocks[locate]!r})")
        trading = state.get(locate) == "T"

        if isinstance(message, AddOrder | AddOrderWithMpid):
            ref = message.order_reference_number
            if ref <= highest_ref:
                raise fail(f"order ref not new (highest so far {highest_ref})")
            if message.price < 1_0000 or message.price % 100 or message.shares <= 0:
                raise fail("price below $1, off the cent grid, or no shares")
            if message.buy_sell_indicator not in ("B", "S"):
                raise fail("side is not B or S")
            highest_ref = ref
            orders[ref] = [locate, message.buy_sell_indicator, message.price, message.shares]
        elif isinstance(message, OrderExecuted | OrderExecutedWithPrice):
            order = orders.get(message.order_reference_number)
            if order is None or order[0] != locate:
                raise fail("execution of an order that is not live on this symbol")
            if not 0 < message.executed_shares <= order[3]:
                raise fail(f"executes {message.executed_shares} of {order[3]} remaining")
            if message.match_number <= last_match:
                raise fail(f"match number not increasing (last {last_match})")
            last_match = message.match_number
            printable = isinstance(message, OrderExecuted) or message.printable == "Y"
            if isinstance(message, OrderExecutedWithPrice) and message.printable not in "YN":
                raise fail("printable is not Y or N")
            if printable:
                if not trading:
                    raise fail("printable execution while the symbol is not trading")
                printed.add(last_match)
            order[3] -= message.executed_shares
            if order[3] == 0:
                del orders[message.order_reference_number]
        elif isinstance(message, OrderCancel):
            order = orders.get(message.order_reference_number)
            if order is None or order[0] != locate:
                raise fail("cancel of an order that is not live on this symbol")
            if not 0 < message.cancelled_shares < order[3]:
                raise fail(f"cancels {message.cancelled_shares} of {order[3]}: not partial")
            order[3] -= message.cancelled_shares
        elif isinstance(message, OrderDelete):
            order = orders.pop(message.order_reference_number, None)
            if order is None or order[0] != locate:
                raise fail("delete of an order that is not live on this symbol")
        elif isinstance(message, OrderReplace):
            order = orders.pop(message.original_order_reference_number, None)
            if order is None or order[0] != locate:
                raise fail("replace of an order that is not live on this symbol")
            ref = message.new_order_reference_number
            if ref <= highest_ref:
                raise fail(f"replacement ref not new (highest so far {highest_ref})")
            if message.price < 1_0000 or message.price % 100 or message.shares <= 0:
                raise fail("replacement price below $1, off the grid, or no shares")
            highest_ref = ref
            orders[ref] = [locate, order[1], message.price, message.shares]
        elif isinstance(message, NonCrossTrade | CrossTrade):
            if message.match_number <= last_match:
                raise fail(f"match number not increasing (last {last_match})")
            last_match = message.match_number
            if isinstance(message, NonCrossTrade):
                if not trading:
                    raise fail("trade while the symbol is not trading")
                printed.add(last_match)
        elif isinstance(message, BrokenTrade):
            if message.match_number not in printed:
                raise fail("breaks a match number never printed")
            if message.match_number in broken:
                raise fail("breaks the same match twice")
            broken.add(message.match_number)
            report.broken += 1
        elif isinstance(message, StockTradingAction):
            previous = state.get(locate)
            if message.trading_state == "H":
                if previous != "T":
                    raise fail(f"halt while in state {previous!r}")
                report.halts += 1
            elif message.trading_state == "T" and previous == "H":
                report.resumes += 1
            state[locate] = message.trading_state
        elif isinstance(message, NetOrderImbalanceIndicator):
            if message.cross_type not in ("O", "C"):
                raise fail("NOII for an unknown cross")
        else:
            raise fail("unexpected message type")
    report.messages = sum(by_type.values())
    report.live_orders = len(orders)
    best: dict[int, list[int]] = {}
    for locate, side, price, _ in orders.values():
        bid_ask = best.setdefault(locate, [0, 1 << 40])
        if side == "B":
            bid_ask[0] = max(bid_ask[0], price)
        else:
            bid_ask[1] = min(bid_ask[1], price)
    report.crossed_books = sum(1 for bid, ask in best.values() if bid >= ask)
    return report
