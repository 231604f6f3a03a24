"""Where the database is, and opening connections and pools to it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from tickerplant.db.embedded import EmbeddedPostgres
from tickerplant.db.errors import DatabaseUnavailableError

if TYPE_CHECKING:
    from tickerplant.settings import Settings

logger = logging.getLogger(__name__)


def resolve_database_url(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """The configured ``database_url``; when unset, start the embedded server in ``data_dir``.

    The caller owns the returned :class:`EmbeddedPostgres` (``None`` for a configured URL) and
    must ``stop()`` it, typically with ``contextlib.ExitStack.enter_context``/``callback``.
    """
    if settings.database_url:
        return settings.database_url, None
    embedded = EmbeddedPostgres.from_settings(settings)
    return embedded.start(), embedded


def describe_dsn(conninfo: str) -> str:
    """``host:port/dbname`` of a DSN, for messages: never the password."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or params.get("user") or ""
    return f"{host}:{port}/{dbname}"


def connect(
    conninfo: str, *, autocommit: bool = False, connect_timeout_s: int = 10
) -> psycopg.Connection:
    """A new connection; an unreachable server raises :class:`DatabaseUnavailableError`."""
    try:
        return psycopg.connect(conninfo, autocommit=autocommit, connect_timeout=connect_timeout_s)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(describe_dsn(conninfo), str(exc).strip()) from exc


async def connect_async(
    conninfo: str, *, autocommit: bool = False, connect_timeout_s: int = 10
) -> psycopg.AsyncConnection:
    """:func:`connect` for asyncio."""
    try:
        return await psycopg.AsyncConnection.connect(
            conninfo, autocommit=autocommit, connect_timeout=connect_timeout_s
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(describe_dsn(conninfo), str(exc).strip()) from exc


def open_pool(
    conninfo: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    timeout_s: float = 10.0,
    autocommit: bool = False,
    name: str | None = None,
) -> ConnectionPool:
    """An open pool holding ``min_size`` connections; close it with ``pool.close()``.

    ``timeout_s`` bounds both opening and each later ``pool.connection()`` wait.
    """
    pool = ConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout_s,
        kwargs={"autocommit": autocommit},
        name=name,
        open=False,
    )
    try:
        pool.open(wait=True, timeout=timeout_s)
    except PoolTimeout as exc:
        pool.close()
        raise DatabaseUnavailableError(
            describe_dsn(conninfo), f"no connection within {timeout_s}s"
        ) from exc
    return pool


async def open_async_pool(
    conninfo: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    timeout_s: float = 10.0,
    autocommit: bool = False,
    name: str | None = None,
) -> AsyncConnectionPool:
    """:func:`open_pool` for asyncio; close it with ``await pool.close()``."""
    pool = AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout_s,
        kwargs={"autocommit": autocommit},
        name=name,
        open=False,
    )
    try:
        await pool.open(wait=True, timeout=timeout_s)
    except PoolTimeout as exc:
        await pool.close()
        raise DatabaseUnavailableError(
            describe_dsn(conninfo), f"no connection within {timeout_s}s"
        ) from exc
    return pool
