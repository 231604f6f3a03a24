"""Versioned schema migrations: ``NNNN_<name>.sql`` files, each applied once, in version order.

The files live in the package ``tickerplant.db.migrations`` (shipped as package data). Versions
run 1, 2, 3 … without gaps, so two branches adding the same number collide loudly instead of
one silently shadowing the other. A file, once applied anywhere, must never change: its SHA-256
is recorded, and ``migrate`` refuses to run when a recorded checksum differs from the file.

Each migration runs in its own transaction together with its ``schema_migrations`` row, so it
is applied completely and recorded, or not at all. A file must therefore not contain
``BEGIN``/``COMMIT`` or statements that cannot run in a transaction block
(``CREATE INDEX CONCURRENTLY``), and should use ``SET LOCAL`` rather than ``SET``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import psycopg

from tickerplant.db.connect import connect
from tickerplant.db.errors import (
    MigrationChecksumError,
    MigrationError,
    MigrationFailedError,
    MigrationFileError,
)

logger = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "tickerplant.db.migrations"
FILENAME_PATTERN = re.compile(r"^(?P<version>[0-9]{4})_(?P<name>[a-z0-9]+(?:_[a-z0-9]+)*)\.sql$")

# Session advisory lock serialising migrate() runs against one database, from any process.
_LOCK_KEY = zlib.crc32(b"tickerplant.schema_migrations")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: ``NNNN_<name>.sql``."""

    version: int
    name: str
    sql: str = field(repr=False)
    checksum: str

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    """A row of ``schema_migrations``."""

    version: int
    name: str
    checksum: str
    applied_at: datetime


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """Applied rows, pending files, and why ``migrate`` would refuse to run (empty when it would
    not): applied files that were edited, renamed or deleted since."""

    applied: list[AppliedMigration]
    pending: list[Migration]
    problems: list[MigrationError]


def checksum(content: bytes) -> str:
    """SHA-256 (hex) of a migration file, line endings normalised so a CRLF checkout matches."""
    return hashlib.sha256(content.replace(b"\r\n", b"\n")).hexdigest()


def load_migrations(directory: Path | Traversable | None = None) -> list[Migration]:
    """The migration files of ``directory`` (default: the shipped ones), in version order.

    Files not ending in ``.sql`` are ignored; a ``.sql`` file with a bad name, a duplicate
    version or a gap in the numbering raises :class:`MigrationFileError`.
    """
    root = directory if directory is not None else resources.files(MIGRATIONS_PACKAGE)
    by_version: dict[int, Migration] = {}
    for entry in root.iterdir():
        if not entry.name.endswith(".sql") or not entry.is_file():
            continue
        match = FILENAME_PATTERN.match(entry.name)
        if match is None:
            raise MigrationFileError(
                entry.name, "name must be NNNN_<name>.sql with <name> in lowercase a-z, 0-9 and _"
            )
        version = int(match["version"])
        if version in by_version:
            raise MigrationFileError(
                entry.name, f"version {version} is also used by {by_version[version].filename}"
            )
        content = entry.read_bytes()
        try:
            sql = content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MigrationFileError(entry.name, f"not UTF-8: {exc}") from exc
        by_version[version] = Migration(version, match["name"], sql, checksum(content))

    migrations = [by_version[version] for version in sorted(by_version)]
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise MigrationFileError(
                migration.filename,
                f"expected version {expected:04d} here: versions must run 1, 2, 3 … without gaps",
            )
    return migrations


def migrate(conninfo: str, *, directory: Path | Traversable | None = None) -> list[Migration]:
    """Apply the pending migrations in version order; return those applied (empty if none).

    Safe to run concurrently from several processes: runs are serialised by an advisory lock, and
    a run that waited sees what the previous one applied. Before applying anything, every applied
    migration is checked against its file: an edited file raises :class:`MigrationChecksumError`,
    a missing one :class:`MigrationError`. A migration whose SQL fails raises
    :class:`MigrationFailedError`; the ones applied before it stay applied.
    """
    migrations = load_migrations(directory)
    # The lock is held by the session, so it is released when the connection closes, whatever
    # happens in between.
    with connect(conninfo, autocommit=True) as conn:
        _lock(conn)
        conn.execute(_CREATE_TABLE)
        applied = _applied(conn)
        problems = _changed(migrations, applied)
        if problems:
            raise problems[0]
        done = {row.version for row in applied}
        pending = [m for m in migrations if m.version not in done]
        for migration in pending:
            _apply(conn, migration)
    if pending:
        logger.info("applied %d migrations: %s", len(pending), [m.filename for m in pending])
    return pending


def status(conninfo: str, *, directory: Path | Traversable | None = None) -> MigrationStatus:
    """What ``migrate`` would find, without changing anything."""
    migrations = load_migrations(directory)
    with connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        applied = _applied(conn) if exists and exists[0] else []
    done = {row.version for row in applied}
    return MigrationStatus(
        applied=applied,
        pending=[m for m in migrations if m.version not in done],
        problems=_changed(migrations, applied),
    )


def _lock(conn: psycopg.Connection) -> None:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()
    if row and row[0]:
        return
    logger.info("another migrate run holds the migration lock; waiting for it")
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))


def _applied(conn: psycopg.Connection) -> list[AppliedMigration]:
    rows = conn.execute(
        "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"
    ).fetchall()
    return [AppliedMigration(*row) for row in rows]


def _changed(migrations: list[Migration], applied: list[AppliedMigration]) -> list[MigrationError]:
    """One error per applied migration whose file is gone, renamed or edited."""
    on_disk = {m.version: m for m in migrations}
    errors: list[MigrationError] = []
    for row in applied:
        migration = on_disk.get(row.version)
        if migration is None:
            errors.append(
                MigrationError(
                    row.version,
                    row.name,
                    "is recorded as applied but the file is missing; "
                    "is this code older than the database?",
                )
            )
        elif migration.name != row.name:
            errors.append(
                MigrationError(
                    row.version,
                    row.name,
                    f"was applied under this name but the file is now {migration.filename}",
                )
            )
        elif migration.checksum != row.checksum:
            errors.append(
                MigrationChecksumError(row.version, row.name, row.checksum, migration.checksum)
            )
    return errors


def _apply(conn: psycopg.Connection, migration: Migration) -> None:
    logger.info("applying migration %s", migration.filename)
    try:
        with conn.transaction():
            # No parameters: psycopg sends the file as one simple query, several statements.
            conn.execute(migration.sql)  # type: ignore[arg-type]
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
    except psycopg.Error as exc:
        raise MigrationFailedError(
            migration.version, migration.name, exc.sqlstate, str(exc).strip()
        ) from exc
