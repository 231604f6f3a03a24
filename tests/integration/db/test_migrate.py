"""migrate() and status() against a real PostgreSQL server, one fresh database per test."""

from __future__ import annotations

import hashlib
import shutil
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import psycopg
import pytest

from tickerplant.db import (
    DatabaseUnavailableError,
    MigrationChecksumError,
    MigrationError,
    MigrationFailedError,
    load_migrations,
    migrate,
    status,
)
from tickerplant.db.migrate import MIGRATIONS_PACKAGE

pytestmark = pytest.mark.postgres


def recorded(dsn: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
        ).fetchall()
    return [tuple(row) for row in rows]


def table_exists(dsn: str, table: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def copy_shipped_migrations(target: Path) -> Path:
    target.mkdir()
    for entry in resources.files(MIGRATIONS_PACKAGE).iterdir():
        if entry.name.endswith(".sql"):
            (target / entry.name).write_bytes(entry.read_bytes())
    return target


def test_migrate_applies_every_shipped_migration_and_records_version_name_and_checksum(
    pg_dsn: str,
) -> None:
    """Scenario: an empty database. Outcome: every shipped migration applied in version order,
    one schema_migrations row each with its exact checksum; the identity tables exist."""
    shipped = load_migrations()

    applied = migrate(pg_dsn)

    assert [(m.version, m.name) for m in applied] == [(m.version, m.name) for m in shipped]
    assert recorded(pg_dsn) == [(m.version, m.name, m.checksum) for m in shipped]
    assert table_exists(pg_dsn, "users")
    assert table_exists(pg_dsn, "api_tokens")


def test_a_second_migrate_applies_nothing_and_leaves_the_records_unchanged(pg_dsn: str) -> None:
    """Scenario: migrate twice. Outcome: the second run returns [] and the rows are the same."""
    migrate(pg_dsn)
    before = recorded(pg_dsn)

    assert migrate(pg_dsn) == []
    assert recorded(pg_dsn) == before


def test_an_applied_migration_edited_on_disk_is_refused_naming_the_file(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Scenario: 0001 applied, then edited, and a new 0002 added. Outcome: MigrationChecksumError
    naming 0001_identity.sql with both checksums; 0002 is not applied."""
    directory = copy_shipped_migrations(tmp_path / "migrations")
    for extra in sorted(directory.glob("*.sql"))[1:]:
        extra.unlink()
    migrate(pg_dsn, directory=directory)
    edited = directory / "0001_identity.sql"
    recorded_checksum = hashlib.sha256(edited.read_bytes()).hexdigest()
    edited.write_text(edited.read_text() + "\nCREATE TABLE sneaky (x int);\n")
    on_disk_checksum = hashlib.sha256(edited.read_bytes()).hexdigest()
    (directory / "0002_next.sql").write_text("CREATE TABLE next (x int);")

    with pytest.raises(MigrationChecksumError) as caught:
        migrate(pg_dsn, directory=directory)

    assert str(caught.value) == (
        f"migration 0001_identity.sql: changed after it was applied (checksum recorded "
        f"{recorded_checksum}, on disk {on_disk_checksum}); "
        "restore the file and put the change in a new migration"
    )
    assert (caught.value.version, caught.value.name) == (1, "identity")
    assert [version for version, _, _ in recorded(pg_dsn)] == [1]
    assert not table_exists(pg_dsn, "next")
    assert [str(problem) for problem in status(pg_dsn, directory=directory).problems] == [
        str(caught.value)
    ]


def test_a_failing_migration_is_rolled_back_whole_and_names_its_file(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Scenario: 0002 creates a table, then divides by zero. Outcome: MigrationFailedError for
    0002_broken.sql with SQLSTATE 22012; 0001 stays applied, 0002's table does not exist."""
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first (x int);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE second (x int);\nSELECT 1 / 0;")

    with pytest.raises(MigrationFailedError) as caught:
        migrate(pg_dsn, directory=tmp_path)

    assert str(caught.value) == (
        "migration 0002_broken.sql: failed with SQLSTATE 22012: division by zero"
    )
    assert (caught.value.version, caught.value.name, caught.value.sqlstate) == (
        2,
        "broken",
        "22012",
    )
    assert [version for version, _, _ in recorded(pg_dsn)] == [1]
    assert table_exists(pg_dsn, "first")
    assert not table_exists(pg_dsn, "second")


def test_two_concurrent_migrate_runs_apply_each_migration_exactly_once(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Scenario: two threads start migrate() at the same moment on three migrations, the second
    slow. Outcome: together they applied 1, 2, 3 once each; the rows inserted by migrations 2
    and 3 exist once; three schema_migrations rows."""
    (tmp_path / "0001_table.sql").write_text("CREATE TABLE marks (version int NOT NULL);")
    (tmp_path / "0002_slow.sql").write_text("SELECT pg_sleep(0.3);\nINSERT INTO marks VALUES (2);")
    (tmp_path / "0003_fast.sql").write_text("INSERT INTO marks VALUES (3);")
    barrier = threading.Barrier(2)

    def run() -> list[int]:
        barrier.wait(timeout=10)
        return [m.version for m in migrate(pg_dsn, directory=tmp_path)]

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = [future.result(timeout=60) for future in [pool.submit(run), pool.submit(run)]]

    assert sorted(results[0] + results[1]) == [1, 2, 3]
    assert sorted(results, key=len) == [[], [1, 2, 3]]
    with psycopg.connect(pg_dsn) as conn:
        marks = conn.execute("SELECT version FROM marks ORDER BY version").fetchall()
    assert marks == [(2,), (3,)]
    assert [version for version, _, _ in recorded(pg_dsn)] == [1, 2, 3]


def test_status_lists_applied_and_pending_migrations(pg_dsn: str, tmp_path: Path) -> None:
    """Scenario: a fresh database, then 0001 applied, then 0002 added. Outcome: status shows
    nothing applied, then [1] applied and [] pending, then [1] applied and [2] pending."""
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first (x int);")

    fresh = status(pg_dsn, directory=tmp_path)
    migrate(pg_dsn, directory=tmp_path)
    current = status(pg_dsn, directory=tmp_path)
    (tmp_path / "0002_second.sql").write_text("CREATE TABLE second (x int);")
    behind = status(pg_dsn, directory=tmp_path)

    assert ([a.version for a in fresh.applied], [p.version for p in fresh.pending]) == ([], [1])
    assert ([a.version for a in current.applied], current.pending) == ([1], [])
    assert [a.version for a in behind.applied] == [1]
    assert [p.filename for p in behind.pending] == ["0002_second.sql"]
    assert behind.problems == []
    assert not table_exists(pg_dsn, "second")


def test_a_database_migration_unknown_to_this_code_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    """Scenario: the database has 0002 applied but this checkout only has 0001. Outcome:
    MigrationError naming 0002_second.sql as missing."""
    newer = tmp_path / "newer"
    older = tmp_path / "older"
    newer.mkdir()
    older.mkdir()
    (newer / "0001_first.sql").write_text("CREATE TABLE first (x int);")
    (newer / "0002_second.sql").write_text("CREATE TABLE second (x int);")
    shutil.copy(newer / "0001_first.sql", older / "0001_first.sql")
    migrate(pg_dsn, directory=newer)

    with pytest.raises(MigrationError) as caught:
        migrate(pg_dsn, directory=older)

    assert type(caught.value) is MigrationError
    assert str(caught.value) == (
        "migration 0002_second.sql: is recorded as applied but the file is missing; "
        "is this code older than the database?"
    )


def test_migrate_against_a_closed_port_raises_database_unavailable() -> None:
    """Scenario: nothing listens on the port. Outcome: DatabaseUnavailableError naming
    127.0.0.1:<port>/postgres."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(DatabaseUnavailableError) as caught:
        migrate(f"postgresql://postgres@127.0.0.1:{port}/postgres")

    assert caught.value.target == f"127.0.0.1:{port}/postgres"
    assert str(caught.value).startswith(f"PostgreSQL at 127.0.0.1:{port}/postgres is unavailable: ")
