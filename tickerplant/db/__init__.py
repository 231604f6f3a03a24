"""PostgreSQL access: where the database is, connections and pools, versioned migrations."""

from __future__ import annotations

from tickerplant.db.connect import (
    connect,
    connect_async,
    describe_dsn,
    open_async_pool,
    open_pool,
    resolve_database_url,
)
from tickerplant.db.embedded import EmbeddedPostgres
from tickerplant.db.errors import (
    DatabaseError,
    DatabaseUnavailableError,
    MigrationChecksumError,
    MigrationError,
    MigrationFailedError,
    MigrationFileError,
)
from tickerplant.db.migrate import (
    AppliedMigration,
    Migration,
    MigrationStatus,
    load_migrations,
    migrate,
    status,
)

__all__ = [
    "AppliedMigration",
    "DatabaseError",
    "DatabaseUnavailableError",
    "EmbeddedPostgres",
    "Migration",
    "MigrationChecksumError",
    "MigrationError",
    "MigrationFailedError",
    "MigrationFileError",
    "MigrationStatus",
    "connect",
    "connect_async",
    "describe_dsn",
    "load_migrations",
    "migrate",
    "open_async_pool",
    "open_pool",
    "resolve_database_url",
    "status",
]
