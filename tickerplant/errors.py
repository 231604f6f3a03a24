"""The shell's error hierarchy: one root, specific subclasses that carry their facts."""

from __future__ import annotations


class TickerplantError(Exception):
    """Root of every error raised by the ``tickerplant`` shell package."""


class ConfigError(TickerplantError):
    """A setting has a value that cannot be used."""

    def __init__(self, setting: str, value: object, expected: str) -> None:
        self.setting = setting
        self.value = value
        self.expected = expected
        super().__init__(f"setting {setting}={value!r} is invalid: expected {expected}")
