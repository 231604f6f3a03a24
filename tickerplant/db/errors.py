"""Errors of the database layer: one root, subclasses that carry their facts."""

from __future__ import annotations

from tickerplant.errors import TickerplantError


class DatabaseError(TickerplantError):
    """Root of every error raised by ``tickerplant.db``."""


class DatabaseUnavailableError(DatabaseError):
    """The server cannot be reached or started; ``target`` never contains a password."""

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"PostgreSQL at {target} is unavailable: {reason}")


class MigrationError(DatabaseError):
    """A migration cannot be applied; names the migration file."""

    def __init__(self, version: int, name: str, detail: str) -> None:
        self.version = version
        self.name = name
        self.detail = detail
        super().__init__(f"migration {self.filename}: {detail}")

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


class MigrationFailedError(MigrationError):
    """The migration's SQL raised; its transaction was rolled back and nothing was recorded."""

    def __init__(self, version: int, name: str, sqlstate: str | None, sql_error: str) -> None:
        self.sqlstate = sqlstate
        self.sql_error = sql_error
        super().__init__(version, name, f"failed with SQLSTATE {sqlstate}: {sql_error}")


class MigrationChecksumError(MigrationError):
    """An applied migration's file changed on disk since it was applied."""

    def __init__(self, version: int, name: str, recorded: str, on_disk: str) -> None:
        self.recorded = recorded
        self.on_disk = on_disk
        super().__init__(
            version,
            name,
            f"changed after it was applied (checksum recorded {recorded}, on disk {on_disk}); "
            "restore the file and put the change in a new migration",
        )


class MigrationFileError(DatabaseError):
    """The migrations directory holds a file that breaks the naming or numbering rules."""

    def __init__(self, filename: str, problem: str) -> None:
        self.filename = filename
        self.problem = problem
        super().__init__(f"migration file {filename}: {problem}")
