"""The entries of each ledger operation, built as data. Pure: balances in, postings out.

Sign convention: an entry's amount is added to its account's balance. A user's accounts hold
what the user owns and never go below zero; the broker's accounts are the other side of every
movement (``bank`` is the outside world's money, ``street`` the market's, ``fees`` the broker's
revenue, ``holds`` the contra of reservations) and may be negative. Every transaction's entries
sum to zero per asset.

Holds are reservations booked as a memo pair (user ``cash_held``/``position_held`` +x, broker
``holds`` -x), so settled and unsettled balances keep saying what the user owns and:

* buying power = settled + unsettled - held, per asset (cash, or a position for sells);
* withdrawable = settled - holds on settled, where holds are charged to settled cash first
  (the conservative choice: a hold never leaves settled cash looking free).

A buy pays from settled cash first, then from unsettled sale proceeds; a sell delivers settled
shares first, then unsettled ones. Settlement therefore moves, per fill, the *remaining* part of
what the fill credited to an unsettled account (what was already spent needs no settling).

The booking functions of migration 0003 (``ledger_place_hold``, ``ledger_book_fill`` …) apply
this same arithmetic server-side, under the locks; settlement uses these rules directly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from ledger.errors import InsufficientFundsError, InvalidAmountError, UnbalancedTransactionError
from ledger.money import USD, AccountId, Asset


class AccountKind(StrEnum):
    CASH_SETTLED = "cash_settled"
    CASH_UNSETTLED = "cash_unsettled"
    CASH_HELD = "cash_held"
    POSITION_SETTLED = "position_settled"
    POSITION_UNSETTLED = "position_unsettled"
    POSITION_HELD = "position_held"
    BROKER_BANK = "broker_bank"
    BROKER_STREET = "broker_street"
    BROKER_FEES = "broker_fees"
    BROKER_HOLDS = "broker_holds"

    @property
    def is_user(self) -> bool:
        return not self.value.startswith("broker_")


USER_CASH_KINDS = (AccountKind.CASH_SETTLED, AccountKind.CASH_UNSETTLED, AccountKind.CASH_HELD)
USER_POSITION_KINDS = (
    AccountKind.POSITION_SETTLED,
    AccountKind.POSITION_UNSETTLED,
    AccountKind.POSITION_HELD,
)
BROKER_KINDS_USD = (
    AccountKind.BROKER_BANK,
    AccountKind.BROKER_STREET,
    AccountKind.BROKER_FEES,
    AccountKind.BROKER_HOLDS,
)
BROKER_KINDS_SECURITY = (AccountKind.BROKER_STREET, AccountKind.BROKER_HOLDS)


def user_kinds(asset: Asset) -> tuple[AccountKind, ...]:
    return USER_CASH_KINDS if asset == USD else USER_POSITION_KINDS


def broker_kinds(asset: Asset) -> tuple[AccountKind, ...]:
    return BROKER_KINDS_USD if asset == USD else BROKER_KINDS_SECURITY


class TransactionKind(StrEnum):
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    HOLD = "hold"
    HOLD_RELEASE = "hold_release"
    FILL = "fill"
    SETTLEMENT = "settlement"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


@dataclass(frozen=True, slots=True)
class Posting:
    """One entry before it has an account id: whose (user or broker) account, asset, kind."""

    asset: Asset
    kind: AccountKind
    amount: int


@dataclass(frozen=True, slots=True)
class AssetBalances:
    """A user's three balances of one asset (cents of USD, or shares)."""

    settled: int = 0
    unsettled: int = 0
    held: int = 0

    @property
    def buying_power(self) -> int:
        """settled + unsettled - held (for a security: shares that can still be sold)."""
        return self.settled + self.unsettled - self.held

    @property
    def holds_on_settled(self) -> int:
        return min(self.held, self.settled)

    @property
    def withdrawable(self) -> int:
        """settled - holds on settled (holds are charged to settled cash first)."""
        return self.settled - self.holds_on_settled


def check_balanced(postings: Iterable[Posting]) -> None:
    """Raise :class:`UnbalancedTransactionError` unless entries sum to zero for every asset."""
    totals: dict[Asset, int] = defaultdict(int)
    for posting in postings:
        totals[posting.asset] += posting.amount
    for asset, total in sorted(totals.items()):
        if total:
            raise UnbalancedTransactionError(asset, total)


def _nonzero(postings: Iterable[Posting]) -> list[Posting]:
    return [p for p in postings if p.amount != 0]


def deposit(amount: int) -> list[Posting]:
    """External bank → the user's settled cash."""
    return [
        Posting(USD, AccountKind.BROKER_BANK, -amount),
        Posting(USD, AccountKind.CASH_SETTLED, amount),
    ]


def withdrawal(account_id: AccountId, cash: AssetBalances, amount: int) -> list[Posting]:
    """The user's settled cash not held → external bank; refused beyond withdrawable."""
    if amount > cash.withdrawable:
        raise InsufficientFundsError(account_id, amount, cash.withdrawable, "withdrawable cash")
    return [
        Posting(USD, AccountKind.CASH_SETTLED, -amount),
        Posting(USD, AccountKind.BROKER_BANK, amount),
    ]


def _held_kind(asset: Asset) -> AccountKind:
    return AccountKind.CASH_HELD if asset == USD else AccountKind.POSITION_HELD


def hold(
    account_id: AccountId, asset: Asset, balances: AssetBalances, amount: int
) -> list[Posting]:
    """Reserve ``amount`` of ``asset`` (cash for a buy, shares for a sell) within buying power."""
    if amount > balances.buying_power:
        what = "buying power" if asset == USD else "position"
        raise InsufficientFundsError(account_id, amount, balances.buying_power, what)
    return [
        Posting(asset, _held_kind(asset), amount),
        Posting(asset, AccountKind.BROKER_HOLDS, -amount),
    ]


def release(asset: Asset, amount: int) -> list[Posting]:
    """Give back ``amount`` of a hold (order cancelled, or filled for less than reserved)."""
    return _nonzero(
        [
            Posting(asset, _held_kind(asset), -amount),
            Posting(asset, AccountKind.BROKER_HOLDS, amount),
        ]
    )


@dataclass(frozen=True, slots=True)
class FillPlan:
    postings: list[Posting]
    hold_consumed: int
    notional: int


def fill(
    account_id: AccountId,
    *,
    symbol: Asset,
    side: Side,
    quantity: int,
    price_cents: int,
    fee_cents: int,
    cash: AssetBalances,
    position: AssetBalances,
    hold_remaining: int,
) -> FillPlan:
    """The entries of an execution: cash ↔ shares with the street, the fee to the broker.

    The order's hold (``hold_remaining`` of cash for a buy, of shares for a sell; 0 without a
    hold) is consumed first; what the fill needs must then fit in buying power, so other orders'
    holds stay covered. Bought shares and sale proceeds land in the *unsettled* accounts.
    """
    notional = quantity * price_cents
    if side is Side.BUY:
        total = notional + fee_cents
        consumed = min(hold_remaining, total)
        free = cash.buying_power + consumed
        if total > free:
            raise InsufficientFundsError(account_id, total, free, "buying power")
        from_settled = min(total, cash.settled)
        postings = [
            *release(USD, consumed),
            Posting(USD, AccountKind.CASH_SETTLED, -from_settled),
            Posting(USD, AccountKind.CASH_UNSETTLED, -(total - from_settled)),
            Posting(USD, AccountKind.BROKER_STREET, notional),
            Posting(USD, AccountKind.BROKER_FEES, fee_cents),
            Posting(symbol, AccountKind.BROKER_STREET, -quantity),
            Posting(symbol, AccountKind.POSITION_UNSETTLED, quantity),
        ]
    else:
        if fee_cents >= notional:
            raise InvalidAmountError("fee", fee_cents, f"must be less than the proceeds {notional}")
        consumed = min(hold_remaining, quantity)
        free = position.buying_power + consumed
        if quantity > free:
            raise InsufficientFundsError(account_id, quantity, free, "position")
        from_settled = min(quantity, position.settled)
        postings = [
            *release(symbol, consumed),
            Posting(symbol, AccountKind.POSITION_SETTLED, -from_settled),
            Posting(symbol, AccountKind.POSITION_UNSETTLED, -(quantity - from_settled)),
            Posting(symbol, AccountKind.BROKER_STREET, quantity),
            Posting(USD, AccountKind.BROKER_STREET, -notional),
            Posting(USD, AccountKind.CASH_UNSETTLED, notional - fee_cents),
            Posting(USD, AccountKind.BROKER_FEES, fee_cents),
        ]
    postings = _nonzero(postings)
    check_balanced(postings)
    return FillPlan(postings, consumed, notional)


SETTLES_TO = {
    AccountKind.CASH_UNSETTLED: AccountKind.CASH_SETTLED,
    AccountKind.POSITION_UNSETTLED: AccountKind.POSITION_SETTLED,
}


def settlement(credited: Iterable[Posting], unsettled_now: dict[Asset, int]) -> list[Posting]:
    """Move what a fill credited to unsettled accounts into settled ones.

    ``credited`` are the fill's positive entries on unsettled accounts; ``unsettled_now`` the
    user's current unsettled balance per asset. Only what remains is moved: proceeds or shares
    already spent (a buy paid from unsettled cash, a sale of unsettled shares) left with the
    later transaction, so the unsettled balance never goes negative.
    """
    postings: list[Posting] = []
    remaining = dict(unsettled_now)
    for posting in credited:
        if posting.kind not in SETTLES_TO or posting.amount <= 0:
            continue
        moved = min(posting.amount, remaining.get(posting.asset, 0))
        remaining[posting.asset] = remaining.get(posting.asset, 0) - moved
        postings += [
            Posting(posting.asset, posting.kind, -moved),
            Posting(posting.asset, SETTLES_TO[posting.kind], moved),
        ]
    return _nonzero(postings)
