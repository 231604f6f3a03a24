"""Who may use the plant: users with a role, authenticated by API tokens stored as hashes."""

from __future__ import annotations

from tickerplant.identity.errors import (
    IdentityError,
    InvalidUserNameError,
    UnknownRoleError,
    UnknownUserError,
    UserExistsError,
)
from tickerplant.identity.model import Role, User, UserId, validate_user_name
from tickerplant.identity.store import (
    authenticate,
    authenticate_async,
    create_user,
    get_user,
    issue_token,
    revoke_token,
    revoke_user_tokens,
)
from tickerplant.identity.tokens import (
    TOKEN_PREFIX,
    display_prefix,
    hash_token,
    is_well_formed,
    new_token,
)

__all__ = [
    "TOKEN_PREFIX",
    "IdentityError",
    "InvalidUserNameError",
    "Role",
    "UnknownRoleError",
    "UnknownUserError",
    "User",
    "UserExistsError",
    "UserId",
    "authenticate",
    "authenticate_async",
    "create_user",
    "display_prefix",
    "get_user",
    "hash_token",
    "is_well_formed",
    "issue_token",
    "new_token",
    "revoke_token",
    "revoke_user_tokens",
    "validate_user_name",
]
