"""Users and API tokens in PostgreSQL (tables of migration ``0001_identity.sql``).

Every function runs in ``conn.transaction()``: on an idle connection that is a transaction
committed on return; inside a caller's transaction it is a savepoint, and the caller commits.
Reads are wrapped too, so a long-lived non-autocommit connection is never left idle in a
transaction.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from tickerplant.identity.errors import UnknownUserError, UserExistsError
from tickerplant.identity.model import Role, User, UserId, validate_user_name
from tickerplant.identity.tokens import (
    display_prefix,
    hash_token,
    is_well_formed,
    new_token,
)

logger = logging.getLogger(__name__)

_USER_NAME_UNIQUE = "users_name_lower_key"

_AUTHENTICATE = """
SELECT u.id, u.name, u.role, u.created_at
FROM api_tokens t JOIN users u ON u.id = t.user_id
WHERE t.token_hash = %s AND t.revoked_at IS NULL
"""
_USER_BY_NAME = "SELECT id, name, role, created_at FROM users WHERE lower(name) = lower(%s)"
_INSERT_TOKEN = "INSERT INTO api_tokens (user_id, token_hash, prefix) VALUES (%s, %s, %s)"


def create_user(conn: psycopg.Connection, name: str, role: Role | str) -> tuple[User, str]:
    """Create a user with one API token; return the user and the token.

    The token is returned this once and never stored: keep it. Raises
    :class:`InvalidUserNameError`, :class:`UnknownRoleError`, or :class:`UserExistsError`
    when the name is taken (compared without regard to case).
    """
    name = validate_user_name(name)
    role = role if isinstance(role, Role) else Role.parse(role)
    token = new_token()
    try:
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO users (name, role) VALUES (%s, %s)"
                " RETURNING id, name, role, created_at",
                (name, role.value),
            ).fetchone()
            assert row is not None
            conn.execute(_INSERT_TOKEN, (row[0], hash_token(token), display_prefix(token)))
    except pg_errors.UniqueViolation as exc:
        if exc.diag.constraint_name == _USER_NAME_UNIQUE:
            raise UserExistsError(name) from exc
        raise
    user = _user(row)
    logger.info("created user %s (%s) with token %s…", user.name, user.role, display_prefix(token))
    return user, token


def get_user(conn: psycopg.Connection, name: str) -> User:
    """The user named ``name`` (without regard to case); :class:`UnknownUserError` if none."""
    with conn.transaction():
        row = conn.execute(_USER_BY_NAME, (name,)).fetchone()
    if row is None:
        raise UnknownUserError(name)
    return _user(row)


def issue_token(conn: psycopg.Connection, user_name: str) -> str:
    """A new API token for an existing user, returned this once; older tokens stay valid."""
    with conn.transaction():
        user = get_user(conn, user_name)
        token = new_token()
        conn.execute(_INSERT_TOKEN, (user.id, hash_token(token), display_prefix(token)))
    logger.info("issued token %s… to user %s", display_prefix(token), user.name)
    return token


def revoke_token(conn: psycopg.Connection, token: str) -> bool:
    """Revoke ``token``; ``False`` when it is unknown or already revoked."""
    with conn.transaction():
        cursor = conn.execute(
            "UPDATE api_tokens SET revoked_at = now()"
            " WHERE token_hash = %s AND revoked_at IS NULL",
            (hash_token(token),),
        )
    revoked = cursor.rowcount == 1
    if revoked:
        logger.info("revoked token %s…", display_prefix(token))
    return revoked


def revoke_user_tokens(conn: psycopg.Connection, user_name: str) -> int:
    """Revoke every live token of a user (who lost one); return how many were revoked."""
    with conn.transaction():
        user = get_user(conn, user_name)
        cursor = conn.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL",
            (user.id,),
        )
    logger.info("revoked %d tokens of user %s", cursor.rowcount, user.name)
    return cursor.rowcount


def authenticate(conn: psycopg.Connection, token: str) -> User | None:
    """The user holding the live token ``token``, or ``None`` (unknown, revoked, malformed)."""
    if not is_well_formed(token):
        return None
    with conn.transaction():
        row = conn.execute(_AUTHENTICATE, (hash_token(token),)).fetchone()
    return None if row is None else _user(row)


async def authenticate_async(conn: psycopg.AsyncConnection, token: str) -> User | None:
    """:func:`authenticate` for the asyncio servers (WebSocket fan-out, ASGI API)."""
    if not is_well_formed(token):
        return None
    async with conn.transaction():
        cursor = await conn.execute(_AUTHENTICATE, (hash_token(token),))
        row = await cursor.fetchone()
    return None if row is None else _user(row)


def _user(row: tuple[Any, ...]) -> User:
    user_id, name, role, created_at = row
    return User(id=UserId(user_id), name=name, role=Role(role), created_at=created_at)
