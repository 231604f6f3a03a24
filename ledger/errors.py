"""Errors of the ledger: one root, specific subclasses that carry their facts and build messages."""

from __future__ import annotations

from tickerplant.errors import TickerplantError


class LedgerError(TickerplantError):
    """Root of every error raised by ``ledger``."""


class InvalidAmountError(LedgerError):
    """A user-supplied amount or quantity is unusable; names the field and what is accepted."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}={value!r} is invalid: {reason}")


class InsufficientFundsError(LedgerError):
    """Not enough buying power, withdrawable cash or position for the operation.

    ``what`` says which measure was short: "buying power" (holds and fills), "withdrawable cash"
    (withdrawals) or "position" (sell holds and sells); amounts are minor units (cents/shares).
    """

    def __init__(self, account_id: int, needed: int, available: int, what: str) -> None:
        self.account_id = account_id
        self.needed = needed
        self.available = available
        self.what = what
        super().__init__(
            f"insufficient {what} in account {account_id}: needed {needed}, available {available}"
        )


class IdempotencyConflictError(LedgerError):
    """An idempotency key was reused with a different request."""

    def __init__(self, key: str, operation: str, original_operation: str) -> None:
        self.key = key
        self.operation = operation
        self.original_operation = original_operation
        super().__init__(
            f"idempotency key {key!r} was already used for a different request "
            f"({original_operation}); use a new key for a new {operation}"
        )


class InvalidTotpError(LedgerError):
    """A withdrawal's one-time code is missing, malformed, expired or the user is not enrolled."""

    def __init__(self, user_id: int, reason: str) -> None:
        self.user_id = user_id
        self.reason = reason
        super().__init__(f"two-factor code refused for user {user_id}: {reason}")


class UnknownHoldError(LedgerError):
    """No open hold with this id belongs to the user."""

    def __init__(self, hold_id: object, user_id: int) -> None:
        self.hold_id = hold_id
        self.user_id = user_id
        super().__init__(f"no open hold {hold_id} for user {user_id}")


class UnbalancedTransactionError(LedgerError):
    """A transaction's entries do not sum to zero for an asset (a bug in the rules)."""

    def __init__(self, asset: str, total: int) -> None:
        self.asset = asset
        self.total = total
        super().__init__(f"entries of asset {asset} sum to {total}, not 0")


class JournalIntegrityError(LedgerError):
    """The database refused a write that would break a ledger invariant."""

    def __init__(self, sqlstate: str | None, detail: str) -> None:
        self.sqlstate = sqlstate
        self.detail = detail
        super().__init__(f"ledger invariant violated (SQLSTATE {sqlstate}): {detail}")


class UnknownAccountError(LedgerError):
    """The user has no ledger accounts and cannot get any: no such user."""

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        super().__init__(f"no user {user_id}: ledger accounts need an existing user")
