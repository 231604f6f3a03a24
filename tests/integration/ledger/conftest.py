"""Shared helpers for the ledger's PostgreSQL tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from ledger import Ledger
from tickerplant.identity import Role, create_user


@pytest.fixture
def conn(migrated_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(migrated_dsn) as connection:
        yield connection


@pytest.fixture
def ledger(conn: psycopg.Connection) -> Ledger:
    return Ledger.over_connection(conn)


@pytest.fixture
def new_user(conn: psycopg.Connection) -> Callable[[], int]:
    def make() -> int:
        user, _ = create_user(conn, f"u{uuid.uuid4().hex[:10]}", Role.TRADER)
        return int(user.id)

    return make
