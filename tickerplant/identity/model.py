"""Who uses the plant: users, their roles and names. Pure: no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NewType

from tickerplant.identity.errors import InvalidUserNameError, UnknownRoleError

UserId = NewType("UserId", int)

USER_NAME_MAX_LENGTH = 64
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]*")


class Role(StrEnum):
    """What a user may do; the values are what the database and the CLI accept."""

    TRADER = "trader"
    QUANT = "quant"
    COMPLIANCE = "compliance"
    ADMIN = "admin"

    @classmethod
    def parse(cls, value: str) -> Role:
        """The role named ``value``, ignoring case and surrounding blanks."""
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise UnknownRoleError(value, tuple(role.value for role in cls)) from None


@dataclass(frozen=True, slots=True)
class User:
    id: UserId
    name: str
    role: Role
    created_at: datetime


def validate_user_name(name: str) -> str:
    """``name`` if acceptable: 1 to 64 of letters, digits and ``. _ @ + -``, starting with a
    letter or digit (so e-mail addresses work)."""
    if not 1 <= len(name) <= USER_NAME_MAX_LENGTH:
        raise InvalidUserNameError(name, f"must be 1 to {USER_NAME_MAX_LENGTH} characters long")
    if not _USER_NAME.fullmatch(name):
        raise InvalidUserNameError(
            name, "use letters, digits and . _ @ + - only, starting with a letter or digit"
        )
    return name
