"""Users and API tokens against a real PostgreSQL server, one migrated database per test."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator

import psycopg
import pytest

from tickerplant.identity import (
    Role,
    UnknownRoleError,
    UnknownUserError,
    UserExistsError,
    authenticate,
    authenticate_async,
    create_user,
    get_user,
    issue_token,
    new_token,
    revoke_token,
    revoke_user_tokens,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def conn(migrated_dsn: str) -> Iterator[psycopg.Connection]:
    """A plain (non-autocommit) connection, as the CLI uses."""
    with psycopg.connect(migrated_dsn) as connection:
        yield connection


def test_create_user_returns_the_user_and_a_token_that_authenticates_with_its_role(
    conn: psycopg.Connection,
) -> None:
    """Scenario: create quant 'alice'. Outcome: a User named alice with role quant and a
    well-formed token; authenticating with the token returns that same user."""
    user, token = create_user(conn, "alice", "quant")

    assert (user.name, user.role) == ("alice", Role.QUANT)
    assert token.startswith("tp_") and len(token) == 46
    assert authenticate(conn, token) == user


def test_create_user_commits_so_other_connections_see_the_user(
    conn: psycopg.Connection, migrated_dsn: str
) -> None:
    """Scenario: create a user on one connection. Outcome: a second connection authenticates
    the token, so create_user committed."""
    user, token = create_user(conn, "bob", Role.TRADER)

    with psycopg.connect(migrated_dsn) as other:
        assert authenticate(other, token) == user


def test_create_user_inside_a_callers_transaction_is_undone_when_the_caller_rolls_back(
    conn: psycopg.Connection,
) -> None:
    """Scenario: create_user inside the caller's transaction, which then rolls back. Outcome:
    the user does not exist."""

    class Abort(Exception):
        pass

    with pytest.raises(Abort), conn.transaction():
        create_user(conn, "carol", "admin")
        raise Abort

    with pytest.raises(UnknownUserError):
        get_user(conn, "carol")


def test_a_token_never_issued_and_a_malformed_one_authenticate_nobody(
    conn: psycopg.Connection,
) -> None:
    """Scenario: a user exists; present another well-formed token, then garbage. Outcome: None
    for both."""
    create_user(conn, "dave", "trader")

    assert authenticate(conn, new_token()) is None
    assert authenticate(conn, "not-a-token") is None


def test_a_revoked_token_no_longer_authenticates(conn: psycopg.Connection) -> None:
    """Scenario: revoke a user's token. Outcome: revoke_token returns True, then False on a
    second try; authenticating returns None."""
    _, token = create_user(conn, "erin", "compliance")

    assert revoke_token(conn, token) is True
    assert revoke_token(conn, token) is False
    assert authenticate(conn, token) is None


def test_a_duplicate_name_regardless_of_case_raises_user_exists(conn: psycopg.Connection) -> None:
    """Scenario: create 'Alice', then 'alice'. Outcome: UserExistsError naming 'alice'; one
    user in the table."""
    create_user(conn, "Alice", "trader")

    with pytest.raises(UserExistsError) as caught:
        create_user(conn, "alice", "quant")

    assert str(caught.value) == "user 'alice' already exists"
    assert conn.execute("SELECT name, role FROM users").fetchall() == [("Alice", "trader")]


def test_an_unknown_role_is_refused_before_touching_the_database(
    conn: psycopg.Connection,
) -> None:
    """Scenario: create a user with role 'boss'. Outcome: UnknownRoleError; no user row."""
    with pytest.raises(UnknownRoleError):
        create_user(conn, "frank", "boss")

    assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_the_stored_rows_hold_the_tokens_hash_and_prefix_but_never_the_token(
    conn: psycopg.Connection,
) -> None:
    """Scenario: create a user. Outcome: api_tokens holds SHA-256(token) and its first 11
    characters; neither table's rows, as text, contain the token or its secret part."""
    _, token = create_user(conn, "grace", "admin")

    token_hash, prefix = conn.execute("SELECT token_hash, prefix FROM api_tokens").fetchone()
    dump = conn.execute(
        "SELECT string_agg(t::text, ' ') FROM ("
        " SELECT row(a.*)::text AS t FROM api_tokens a"
        " UNION ALL SELECT row(u.*)::text FROM users u) rows"
    ).fetchone()[0]
    assert bytes(token_hash) == hashlib.sha256(token.encode()).digest()
    assert prefix == token[:11]
    assert token not in dump
    assert token[11:] not in dump


def test_issue_token_adds_a_second_live_token_and_revoke_user_tokens_ends_both(
    conn: psycopg.Connection,
) -> None:
    """Scenario: issue a second token to a user (name in other case), then revoke all of theirs.
    Outcome: both authenticate before, revoke_user_tokens returns 2, neither authenticates after."""
    user, first = create_user(conn, "heidi", "trader")

    second = issue_token(conn, "HEIDI")

    assert second != first
    assert (authenticate(conn, first), authenticate(conn, second)) == (user, user)
    assert revoke_user_tokens(conn, "heidi") == 2
    assert (authenticate(conn, first), authenticate(conn, second)) == (None, None)


def test_issue_token_for_an_unknown_user_raises_unknown_user(conn: psycopg.Connection) -> None:
    """Scenario: issue a token to a name nobody has. Outcome: UnknownUserError naming it; no
    token row."""
    with pytest.raises(UnknownUserError) as caught:
        issue_token(conn, "nobody")

    assert str(caught.value) == "no user named 'nobody'"
    assert conn.execute("SELECT count(*) FROM api_tokens").fetchone() == (0,)


async def test_authenticate_async_returns_the_user_for_a_live_token_and_none_otherwise(
    conn: psycopg.Connection, migrated_dsn: str
) -> None:
    """Scenario: a user created with the sync API; authenticate over an AsyncConnection.
    Outcome: the user for their token, None for another token and after revocation."""
    user, token = create_user(conn, "ivan", "quant")

    async with asyncio.timeout(10):
        async with await psycopg.AsyncConnection.connect(migrated_dsn) as aconn:
            assert await authenticate_async(aconn, token) == user
            assert await authenticate_async(aconn, new_token()) is None
            revoke_token(conn, token)
            assert await authenticate_async(aconn, token) is None
