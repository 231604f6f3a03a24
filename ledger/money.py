"""Amounts as integer minor units: USD in cents, securities in whole shares. Never float.

User input is parsed from ``str``, ``int`` or ``Decimal``; a ``float`` is refused outright
because ``0.1`` already is not one tenth. Every parse names the field it validates.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import NewType

from ledger.errors import InvalidAmountError

AccountId = NewType("AccountId", int)
UserId = NewType("UserId", int)
Asset = NewType("Asset", str)

USD = Asset("USD")
CENTS_PER_DOLLAR = 100
# A sane maximum for one movement: one billion dollars, one hundred million shares.
MAX_CENTS = 1_000_000_000 * CENTS_PER_DOLLAR
MAX_SHARES = 100_000_000
_SYMBOL = re.compile(r"[A-Z][A-Z0-9.]{0,11}")


def _decimal(field: str, value: object) -> Decimal:
    if isinstance(value, bool | float):
        raise InvalidAmountError(field, value, 'send a decimal string such as "12.34", not a float')
    if isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidAmountError(field, value, "not a decimal number") from None
    else:
        raise InvalidAmountError(field, value, "expected a decimal string or an integer")
    if not number.is_finite():
        raise InvalidAmountError(field, value, "must be a finite number")
    return number


def parse_usd(field: str, value: object) -> int:
    """A positive dollar amount with at most two decimals, as cents (``"12.34"`` → 1234)."""
    number = _decimal(field, value)
    if number <= 0:
        raise InvalidAmountError(field, value, "must be positive")
    cents = number * CENTS_PER_DOLLAR
    if cents != cents.to_integral_value():
        raise InvalidAmountError(field, value, "at most two decimal places for USD")
    if cents > MAX_CENTS:
        raise InvalidAmountError(field, value, f"at most {format_usd(MAX_CENTS)} per operation")
    return int(cents)


def check_cents(field: str, value: int, *, allow_zero: bool = False) -> int:
    """An amount already in cents from trusted code (the OMS): an int, positive, sane."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmountError(field, value, "must be an integer number of cents")
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidAmountError(field, value, "must be positive" if not allow_zero else ">= 0")
    if value > MAX_CENTS:
        raise InvalidAmountError(field, value, f"at most {MAX_CENTS} cents")
    return value


def check_shares(field: str, value: int) -> int:
    """A positive whole number of shares, at most :data:`MAX_SHARES`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmountError(field, value, "must be a whole number of shares")
    if not 0 < value <= MAX_SHARES:
        raise InvalidAmountError(field, value, f"must be between 1 and {MAX_SHARES}")
    return value


def check_asset(field: str, value: str) -> Asset:
    """``USD`` or a ticker symbol: 1-12 of A-Z, 0-9 and ``.``, starting with a letter."""
    if not isinstance(value, str) or not _SYMBOL.fullmatch(value):
        raise InvalidAmountError(field, value, "expected USD or a symbol like AAPL or BRK.B")
    return Asset(value)


def format_usd(cents: int) -> str:
    """Cents as a dollar string with two decimals: 123456 → ``"1234.56"``, -5 → ``"-0.05"``."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), CENTS_PER_DOLLAR)
    return f"{sign}{whole}.{frac:02d}"
