"""The shipped migration files and the rules the loader enforces on any migrations directory."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import pytest

from tickerplant.db import MigrationFileError, load_migrations
from tickerplant.db.migrate import FILENAME_PATTERN, MIGRATIONS_PACKAGE, checksum


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        (directory / name).write_text(content)
    return directory


def test_shipped_migrations_are_numbered_from_one_without_gaps() -> None:
    """Scenario: load the migrations shipped in the package. Outcome: versions 1..n in order,
    the first being 0001_identity."""
    migrations = load_migrations()

    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert (migrations[0].version, migrations[0].name) == (1, "identity")


def test_every_shipped_sql_file_is_named_nnnn_underscore_lowercase_name() -> None:
    """Scenario: list the .sql files of the migrations package. Outcome: each matches the
    pattern and is loaded under its own file name, so none is silently skipped."""
    names = sorted(
        entry.name
        for entry in resources.files(MIGRATIONS_PACKAGE).iterdir()
        if entry.name.endswith(".sql")
    )

    assert [name for name in names if not FILENAME_PATTERN.fullmatch(name)] == []
    assert [m.filename for m in load_migrations()] == names


def test_shipped_migrations_are_package_data_readable_through_importlib_resources() -> None:
    """Scenario: read 0001_identity.sql as a package resource. Outcome: its checksum is the
    SHA-256 of its bytes, as recorded by migrate."""
    content = (resources.files(MIGRATIONS_PACKAGE) / "0001_identity.sql").read_bytes()

    assert load_migrations()[0].checksum == hashlib.sha256(content).hexdigest()
    assert b"CREATE TABLE users" in content


def test_loader_orders_by_version_and_ignores_files_that_are_not_sql(tmp_path: Path) -> None:
    """Scenario: files written out of order, plus a README and __init__.py. Outcome: two
    migrations, in version order, with their names and SQL."""
    write(
        tmp_path,
        {
            "0002_second.sql": "SELECT 2;",
            "0001_first.sql": "SELECT 1;",
            "README.md": "notes",
            "__init__.py": "",
        },
    )

    migrations = load_migrations(tmp_path)

    assert [(m.version, m.name, m.sql) for m in migrations] == [
        (1, "first", "SELECT 1;"),
        (2, "second", "SELECT 2;"),
    ]


def test_a_gap_in_the_numbering_is_refused_naming_the_file(tmp_path: Path) -> None:
    """Scenario: 0001 and 0003 but no 0002. Outcome: MigrationFileError naming 0003."""
    write(tmp_path, {"0001_first.sql": "", "0003_third.sql": ""})

    with pytest.raises(MigrationFileError) as caught:
        load_migrations(tmp_path)

    assert str(caught.value) == (
        "migration file 0003_third.sql: expected version 0002 here: "
        "versions must run 1, 2, 3 … without gaps"
    )


def test_two_files_with_the_same_version_are_refused(tmp_path: Path) -> None:
    """Scenario: two branches both added a 0002. Outcome: MigrationFileError naming both."""
    write(tmp_path, {"0001_first.sql": "", "0002_aaa.sql": "", "0002_bbb.sql": ""})

    with pytest.raises(MigrationFileError) as caught:
        load_migrations(tmp_path)

    assert caught.value.filename in ("0002_aaa.sql", "0002_bbb.sql")
    other = ({"0002_aaa.sql", "0002_bbb.sql"} - {caught.value.filename}).pop()
    assert caught.value.problem == f"version 2 is also used by {other}"


@pytest.mark.parametrize("name", ["1_first.sql", "0001-first.sql", "0001_First.sql", "0001_.sql"])
def test_a_sql_file_with_a_malformed_name_is_refused(tmp_path: Path, name: str) -> None:
    """Scenario: a .sql file whose name breaks the pattern. Outcome: MigrationFileError saying
    what the name must look like."""
    write(tmp_path, {name: ""})

    with pytest.raises(MigrationFileError) as caught:
        load_migrations(tmp_path)

    assert str(caught.value) == (
        f"migration file {name}: "
        "name must be NNNN_<name>.sql with <name> in lowercase a-z, 0-9 and _"
    )


def test_checksum_ignores_crlf_line_endings() -> None:
    """Scenario: the same file checked out with LF and with CRLF. Outcome: equal checksums,
    that of the LF bytes."""
    assert checksum(b"SELECT 1;\r\nSELECT 2;\r\n") == checksum(b"SELECT 1;\nSELECT 2;\n")
    assert checksum(b"SELECT 1;\n") == hashlib.sha256(b"SELECT 1;\n").hexdigest()
