"""``tickerplant``: one CLI, a subcommand per process or task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from datetime import date
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


def _fail(exc: Exception) -> typer.Exit:
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


def _session_date(value: str | None, *, path: Path | None = None) -> date:
    """``--date`` as given, else the date in a NASDAQ sample file's name, else today (ET)."""
    from normalize.session import date_from_file_name, exchange_today

    if value:
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise typer.BadParameter(f"{value!r} is not a date like 2024-11-20") from exc
    if path is not None:
        found = date_from_file_name(path)
        if found is None:
            raise typer.BadParameter(
                f"cannot tell the session date from the name {path.name!r}; pass --date",
                param_hint="--date",
            )
        return found
    return exchange_today(time.time())


@app.command()
def ingest(
    shard: Annotated[int, typer.Option(help="This process's shard, 0-based.")] = 0,
    shards: Annotated[int, typer.Option(help="How many shards share the feed.")] = 1,
    session_date: Annotated[
        str | None, typer.Option("--date", help="Session date (default: today, US/Eastern).")
    ] = None,
) -> None:
    """Receive the multicast feed, recover gaps, publish normalized events on the bus."""
    from ingest.service import run_ingest
    from normalize.normalizer import locate_shard
    from tickerplant.runtime import wait_for_stop_signal

    try:
        owned = locate_shard(shard, shards)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--shard/--shards") from exc
    try:
        asyncio.run(
            run_ingest(
                state.settings,
                shard=owned,
                session_date=_session_date(session_date),
                until=wait_for_stop_signal,
                announce=typer.echo,
            )
        )
    except TickerplantError as exc:
        raise _fail(exc) from exc


def _run_sim(coroutine_factory) -> None:
    """Run an exchange-sim coroutine until it ends or Ctrl-C; print its summary."""
    from tickerplant.runtime import wait_for_stop_signal

    async def main() -> object:
        stop = asyncio.Event()
        run = asyncio.create_task(coroutine_factory(stop))
        signal_wait = asyncio.create_task(wait_for_stop_signal())
        done, _ = await asyncio.wait({run, signal_wait}, return_when=asyncio.FIRST_COMPLETED)
        if signal_wait in done:
            stop.set()
        else:
            signal_wait.cancel()
        return await run

    try:
        stats = asyncio.run(main())
    except (TickerplantError, ValueError, OSError) as exc:
        raise _fail(exc) from exc
    typer.echo(
        f"session {stats.session}: {stats.messages} messages in {stats.wall_seconds:.1f}s, "
        f"{stats.packets} packets, {stats.dropped_packets} dropped, "
        f"{stats.requests_answered} re-requests answered"
    )


@app.command("exchange-sim")
def exchange_sim(
    symbols: Annotated[int | None, typer.Option(help="Symbols listed (default 100).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the order flow (default 1).")] = None,
    speed: Annotated[
        float | None, typer.Option(help="Exchange seconds per wall second; 0 = unpaced.")
    ] = None,
    messages: Annotated[int | None, typer.Option(help="Stop after this many messages.")] = None,
    start_at: Annotated[
        str | None, typer.Option(help="Exchange time to start at (default 09:29:00).")
    ] = None,
    burst: Annotated[
        float | None, typer.Option(help="Opening-bell rate multiple (default 100).")
    ] = None,
    burst_seconds: Annotated[
        float | None, typer.Option(help="Length of the opening burst (default 5).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the ITCH stream here.")] = None,
    send: Annotated[bool, typer.Option(help="Send on multicast (--no-send: file only).")] = True,
    drop_rate: Annotated[float, typer.Option(help="Fraction of live packets dropped.")] = 0.0,
    duplicate_rate: Annotated[float, typer.Option(help="Fraction duplicated.")] = 0.0,
    reorder_rate: Annotated[float, typer.Option(help="Fraction swapped with the next.")] = 0.0,
    rerequest: Annotated[bool, typer.Option(help="Answer re-requests.")] = True,
    linger: Annotated[float, typer.Option(help="Seconds to keep answering after the end.")] = 5.0,
) -> None:
    """Simulate the exchange: seeded ITCH 5.0 order flow as MoldUDP64 multicast."""
    from exchange_sim import run_exchange_sim

    if out is None and not send:
        raise typer.BadParameter("--no-send needs --out FILE", param_hint="--no-send")
    _run_sim(
        lambda stop: run_exchange_sim(
            settings=state.settings,
            symbols=symbols,
            seed=seed,
            speed=speed,
            messages=messages,
            start_at=start_at,
            burst_multiplier=burst,
            burst_seconds=burst_seconds,
            out_file=out,
            send=send,
            drop_rate=drop_rate,
            duplicate_rate=duplicate_rate,
            reorder_rate=reorder_rate,
            rerequest=rerequest,
            linger=linger if send else 0.0,
            stop=stop,
        )
    )


@app.command()
def replay(
    itch_file: Annotated[Path, typer.Argument(help="An ITCH 5.0 file (.gz read as such).")],
    speed: Annotated[
        float, typer.Option(help="1 = recorded pace, 10 = ten times faster, 0 = unpaced.")
    ] = 1.0,
    start_at: Annotated[
        str | None, typer.Option(help="Exchange time pacing starts at (earlier: at once).")
    ] = None,
    messages: Annotated[int | None, typer.Option(help="Stop after this many messages.")] = None,
    linger: Annotated[float, typer.Option(help="Seconds to keep answering after the end.")] = 5.0,
) -> None:
    """Replay an ITCH file onto the multicast feed at recorded or accelerated pace."""
    from exchange_sim import replay_file

    if not itch_file.is_file():
        raise typer.BadParameter(f"no such file: {itch_file}", param_hint="ITCH_FILE")
    _run_sim(
        lambda stop: replay_file(
            itch_file,
            settings=state.settings,
            speed=speed,
            start_at=start_at,
            messages=messages,
            linger=linger,
            stop=stop,
        )
    )


@app.command("normalize-file")
def normalize_file(
    itch_file: Annotated[Path, typer.Argument(help="An ITCH 5.0 file (.gz read as such).")],
    out: Annotated[Path, typer.Option(help="Directory for trades.parquet and quotes.parquet.")],
    session_date: Annotated[
        str | None, typer.Option("--date", help="Session date (default: from the file name).")
    ] = None,
) -> None:
    """Normalize a whole ITCH file to Parquet trades and quotes."""
    from normalize.convert import normalize_file as convert

    if not itch_file.is_file():
        raise typer.BadParameter(f"no such file: {itch_file}", param_hint="ITCH_FILE")
    day = _session_date(session_date, path=itch_file)
    started = time.perf_counter()
    try:
        stats = convert(itch_file, out, session_date=day)
    except TickerplantError as exc:
        raise _fail(exc) from exc
    elapsed = time.perf_counter() - started
    typer.echo(
        f"{stats.messages} messages -> {stats.trades} trades, {stats.quotes} quotes "
        f"in {elapsed:.1f}s ({stats.messages / max(elapsed, 1e-9):,.0f} msgs/s); "
        f"wrote {out / 'trades.parquet'} and {out / 'quotes.parquet'}"
    )


ledger_app = typer.Typer(help="Ledger: reconcile balances, verify the audit chain, settle.")
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("reconcile")
def ledger_reconcile() -> None:
    """Recompute every balance from the journal entries; exit 1 on any difference."""
    from ledger import reconcile
    from tickerplant.db import connect

    try:
        with _database() as dsn, connect(dsn) as conn:
            report = reconcile(conn)
    except TickerplantError as exc:
        raise _fail(exc) from exc
    for d in report.differences:
        typer.echo(
            f"account {d.account_id} (user {d.user_id} {d.asset} {d.kind}): "
            f"cached {d.cached}, entries sum to {d.recomputed}"
        )
    for asset, total in report.unbalanced_assets.items():
        typer.echo(f"asset {asset}: entries sum to {total}, not 0")
    for user_id, asset, held, open_holds in report.hold_mismatches:
        typer.echo(f"user {user_id} {asset}: held balance {held}, open holds {open_holds}")
    if not report.ok:
        raise typer.Exit(1)
    typer.echo(f"{report.accounts} account(s) reconciled: every balance matches its entries")


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Walk the audit hash chains; name the first altered, removed or inserted transaction."""
    from ledger import verify
    from tickerplant.db import connect

    try:
        with _database() as dsn, connect(dsn) as conn:
            report = verify(conn)
    except TickerplantError as exc:
        raise _fail(exc) from exc
    for found in report.breaks:
        typer.echo(str(found))
    if not report.ok:
        raise typer.Exit(1)
    typer.echo(f"{report.transactions} transaction(s) in {report.chains} chain(s) verified")


@ledger_app.command("settle")
def ledger_settle(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Settle fills due by this date (default today).")
    ] = None,
) -> None:
    """Move fills due for settlement from unsettled to settled accounts (idempotent)."""
    from ledger import Ledger
    from tickerplant.db import connect

    day = date.fromisoformat(as_of) if as_of else None
    try:
        with _database() as dsn, connect(dsn) as conn:
            report = Ledger.over_connection(conn).settle_due(day)
    except TickerplantError as exc:
        raise _fail(exc) from exc
    typer.echo(
        f"settled {report.settled} fill(s) with {report.transactions} transaction(s); "
        f"{report.already_settled} already settled"
    )


@app.command()
def fanout(
    port: Annotated[int | None, typer.Option(help="Port (default TP_FANOUT__PORT, 8765).")] = None,
) -> None:
    """Serve conflated market data to WebSocket subscribers (the /v1/stream endpoint)."""
    from fanout.service import run_fanout
    from tickerplant.runtime import wait_for_stop_signal

    settings = state.settings
    if port is not None:
        settings = settings.model_copy(
            update={"fanout": settings.fanout.model_copy(update={"port": port})}
        )
    try:
        with _database() as dsn:
            asyncio.run(
                run_fanout(
                    settings, database_url=dsn, until=wait_for_stop_signal, announce=typer.echo
                )
            )
    except TickerplantError as exc:
        raise _fail(exc) from exc


@app.command()
def candles() -> None:
    """Roll bus trades into 1-second and 1-minute bars in PostgreSQL and md.bars."""
    import signal
    import threading

    from candles.service import run_candles

    stop = threading.Event()  # set from the signal handler; the dataflow runs in this thread
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        run_candles(state.settings, until=stop, announce=typer.echo)
    except TickerplantError as exc:
        raise _fail(exc) from exc


@app.command()
def backfill(
    itch_file: Annotated[Path, typer.Argument(help="An ITCH 5.0 file (.gz read as such).")],
    session_date: Annotated[
        str | None, typer.Option("--date", help="Session date (default: from the file name).")
    ] = None,
) -> None:
    """Load a whole ITCH file's bars into PostgreSQL via the live candles code."""
    from candles.backfill import backfill_file
    from tickerplant.db import migrate

    if not itch_file.is_file():
        raise typer.BadParameter(f"no such file: {itch_file}", param_hint="ITCH_FILE")
    day = _session_date(session_date, path=itch_file)
    c = state.settings.candles
    started = time.perf_counter()
    try:
        with _database() as dsn:
            migrate(dsn)
            stats = backfill_file(
                itch_file,
                dsn,
                session_date=day,
                allowed_lateness_s=c.allowed_lateness_s,
                timeframes_s=c.timeframes_s,
            )
    except TickerplantError as exc:
        raise _fail(exc) from exc
    elapsed = time.perf_counter() - started
    typer.echo(
        f"{stats.messages} messages -> {stats.trades} trades of {stats.symbols} symbols -> "
        f"{stats.bars_written} bars written, {stats.bars_withdrawn} withdrawn "
        f"in {elapsed:.1f}s ({stats.messages / max(elapsed, 1e-9):,.0f} msgs/s); "
        f"{stats.too_late} too late, {stats.unmatched_breaks} unmatched breaks"
    )


@app.command()
def archive(
    session_date: Annotated[str, typer.Option("--date", help="The session day, e.g. 2024-11-20.")],
    out: Annotated[Path, typer.Option(help="Directory for trades/, quotes/ and bars/.")],
    itch: Annotated[
        Path | None,
        typer.Option(help="The day's ITCH file: trades and quotes (not kept in the database)."),
    ] = None,
) -> None:
    """Archive a day's trades, quotes and bars as Parquet partitioned by date/symbol."""
    from candles.archive import archive_day
    from tickerplant.db import migrate

    if itch is not None and not itch.is_file():
        raise typer.BadParameter(f"no such file: {itch}", param_hint="--itch")
    day = _session_date(session_date)
    try:
        with _database() as dsn:
            migrate(dsn)
            stats = archive_day(dsn, day, out, itch_file=itch)
    except TickerplantError as exc:
        raise _fail(exc) from exc
    typer.echo(
        f"archived {day}: {stats.trades} trades, {stats.quotes} quotes, {stats.bars} bars "
        f"of {stats.symbols} symbols under {out}"
    )
    if itch is None:
        typer.echo("no --itch file: trades and quotes not archived (the database keeps bars only)")


if __name__ == "__main__":
    app()
