"""Errors of ``tickerplant.identity``: one root, subclasses that carry their facts."""

from __future__ import annotations

from tickerplant.errors import TickerplantError


class IdentityError(TickerplantError):
    """Root of every error raised by ``tickerplant.identity``."""


class UnknownRoleError(IdentityError):
    def __init__(self, role: str, accepted: tuple[str, ...]) -> None:
        self.role = role
        self.accepted = accepted
        super().__init__(f"unknown role {role!r}: expected one of {', '.join(accepted)}")


class InvalidUserNameError(IdentityError):
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"invalid user name {name!r}: {reason}")


class UserExistsError(IdentityError):
    """A user with this name (compared without regard to case) already exists."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"user {name!r} already exists")


class UnknownUserError(IdentityError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no user named {name!r}")
