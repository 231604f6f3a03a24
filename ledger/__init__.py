"""Double-entry bookkeeping on PostgreSQL: accounts, journal, holds, T+1 settlement."""

from __future__ import annotations

from ledger.aio import AsyncLedger
from ledger.audit import (
    BalanceDifference,
    ChainBreak,
    ReconcileReport,
    VerifyReport,
    reconcile,
    verify,
)
from ledger.calendar import ExchangeCalendar, nyse_holidays
from ledger.errors import (
    IdempotencyConflictError,
    InsufficientFundsError,
    InvalidAmountError,
    InvalidTotpError,
    JournalIntegrityError,
    LedgerError,
    UnbalancedTransactionError,
    UnknownAccountError,
    UnknownHoldError,
)
from ledger.money import USD, AccountId, Asset, UserId, format_usd, parse_usd
from ledger.rules import AccountKind, AssetBalances, Side, TransactionKind
from ledger.service import (
    Activity,
    ActivityPage,
    Balances,
    Ledger,
    Receipt,
    SettleReport,
    TotpEnrollment,
)

__all__ = [
    "USD",
    "AccountId",
    "AccountKind",
    "Activity",
    "ActivityPage",
    "Asset",
    "AssetBalances",
    "AsyncLedger",
    "BalanceDifference",
    "Balances",
    "ChainBreak",
    "ExchangeCalendar",
    "IdempotencyConflictError",
    "InsufficientFundsError",
    "InvalidAmountError",
    "InvalidTotpError",
    "JournalIntegrityError",
    "Ledger",
    "LedgerError",
    "Receipt",
    "ReconcileReport",
    "SettleReport",
    "Side",
    "TotpEnrollment",
    "TransactionKind",
    "UnbalancedTransactionError",
    "UnknownAccountError",
    "UnknownHoldError",
    "UserId",
    "VerifyReport",
    "format_usd",
    "nyse_holidays",
    "parse_usd",
    "reconcile",
    "verify",
]
