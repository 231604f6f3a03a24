"""``tickerplant``: one CLI, a subcommand per process or task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from tickerplant import __version__
from tickerplant.errors import TickerplantError
from tickerplant.observability import configure_logging
from tickerplant.settings import Settings, load_settings

app = typer.Typer(
    help="tickerplant: ITCH market data in, conflated streams, candles, surveillance, OMS, ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema: apply and inspect migrations.", no_args_is_help=True)
users_app = typer.Typer(help="Users, roles and API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")

log = logging.getLogger(__name__)


class _State:
    settings: Settings


state = _State()


@app.callback()
def main(
    log_level: Annotated[
        str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR (default: TP_LOG_LEVEL).")
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(help="text or json (default: TP_LOG_FORMAT).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="A TOML settings file (default: TP_CONFIG).")
    ] = None,
) -> None:
    overrides: dict[str, object] = {}
    if log_level:
        overrides["log_level"] = log_level
    if log_format:
        overrides["log_format"] = log_format
    if config is not None:
        if not config.is_file():
            raise typer.BadParameter(f"no such file: {config}", param_hint="--config")
        os.environ["TP_CONFIG"] = str(config)
    state.settings = load_settings(**overrides)
    try:
        configure_logging(state.settings.log_level, state.settings.log_format)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--log-level/--log-format") from exc


@contextlib.contextmanager
def _database() -> Iterator[str]:
    """The configured database, or the embedded one started for the command and stopped after."""
    from tickerplant.db import resolve_database_url

    dsn, embedded = resolve_database_url(state.settings)
    try:
        yield dsn
    finally:
        if embedded is not None:
            embedded.stop()


def _fail(exc: TickerplantError) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    return typer.Exit(2)


@app.command()
def version() -> None:
    """Print the tickerplant version."""
    typer.echo(__version__)


@app.command()
def demo() -> None:
    """Run the whole system on this machine (embedded defaults) until Ctrl-C."""
    from tickerplant.demo import run_demo
    from tickerplant.runtime import wait_for_stop_signal

    def announce(info) -> None:
        for line in info.lines():
            typer.echo(line)

    try:
        asyncio.run(run_demo(state.settings, announce=announce, until=wait_for_stop_signal))
    except TickerplantError as exc:
        raise _fail(exc) from exc
    typer.echo("tickerplant demo stopped")


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations (idempotent); print each one applied."""
    from tickerplant.db import migrate

    try:
        with _database() as dsn:
            applied = migrate(dsn)
    except TickerplantError as exc:
        raise _fail(exc) from exc
    for migration in applied:
        typer.echo(f"applied {migration.version:04d} {migration.name}")
    typer.echo(f"{len(applied)} migration(s) applied; schema is up to date")


@db_app.command("status")
def db_status() -> None:
    """List applied and pending migrations."""
    from tickerplant.db import status

    try:
        with _database() as dsn:
            rows = status(dsn)
    except TickerplantError as exc:
        raise _fail(exc) from exc
    for migration in rows.applied:
        typer.echo(f"{migration.version:04d} {migration.name:<40} applied {migration.applied_at}")
    for migration in rows.pending:
        typer.echo(f"{migration.version:04d} {migration.name:<40} pending")
    for problem in rows.problems:
        typer.secho(f"problem: {problem}", err=True, fg=typer.colors.RED)
    if rows.problems:
        raise typer.Exit(1)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="Unique user name.")],
    role: Annotated[str, typer.Option(help="trader, quant, compliance or admin.")],
) -> None:
    """Create a user with a role and print its API token (shown once, stored hashed)."""
    from tickerplant.db import connect, migrate
    from tickerplant.identity import Role, create_user

    try:
        parsed = Role.parse(role)
        with _database() as dsn:
            migrate(dsn)
            with connect(dsn) as conn:
                user, token = create_user(conn, name, parsed)
    except TickerplantError as exc:
        raise _fail(exc) from exc
    typer.echo(f"created user {user.name} (role {user.role.value})")
    typer.echo(f"token: {token}")
    typer.echo("The token is shown only now; it is stored hashed.")


if __name__ == "__main__":
    app()
