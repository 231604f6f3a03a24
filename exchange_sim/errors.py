"""The exchange simulator's errors: one root, specific subclasses that carry their facts."""

from __future__ import annotations

from tickerplant.errors import TickerplantError


class ExchangeSimError(TickerplantError):
    """Root of every error raised by the ``exchange_sim`` package."""


class InvalidTimeError(ExchangeSimError):
    """An exchange time of day that cannot be parsed or lies outside the day."""

    def __init__(self, value: object, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(
            f"exchange time {value!r} is invalid: {reason}; "
            "expected HH:MM[:SS[.fffffffff]] between 00:00 and 23:59:59.999999999"
        )


class SymbolSpecError(ExchangeSimError):
    """A simulated symbol with a field the simulator cannot use."""

    def __init__(self, stock: str, field: str, value: object, expected: str) -> None:
        self.stock = stock
        self.field = field
        self.value = value
        self.expected = expected
        super().__init__(f"symbol {stock!r}: {field}={value!r} is invalid: expected {expected}")


class OptionError(ExchangeSimError):
    """A tuning option (rate, multiplier, count) outside the range the simulator accepts."""

    def __init__(self, option: str, value: object, expected: str) -> None:
        self.option = option
        self.value = value
        self.expected = expected
        super().__init__(f"{option}={value!r} is invalid: expected {expected}")
