"""The private PostgreSQL cluster of `rocketd.db.embedded`, with real server processes.

Every cluster is created with `fast=True` (initdb --no-sync, fsync=off) in its own temporary
directory and stopped by the `make_pg` fixture's teardown whatever the test did. The temporary
base directory is made 0755 because, when the tests run as root, the server runs as an
unprivileged account that must be able to enter it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from rocketd.db.embedded import (
    HBA_CONF,
    EmbeddedPostgres,
    EmbeddedPostgresError,
    find_postgres_bindir,
)
from tests.support.orphans import owned_tempdir

try:
    find_postgres_bindir()
except EmbeddedPostgresError as exc:  # pragma: no cover - depends on the machine
    pytest.skip(f"no PostgreSQL binaries: {exc}", allow_module_level=True)

MakePg = Callable[..., EmbeddedPostgres]


@pytest.fixture
def base_dir() -> Iterator[Path]:
    base = owned_tempdir("embedded")
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def make_pg(base_dir: Path) -> Iterator[MakePg]:
    created: list[EmbeddedPostgres] = []

    def make(data_dir: Path | None = None, *, port: int | None = None) -> EmbeddedPostgres:
        pg = EmbeddedPostgres(data_dir or base_dir / "data", port=port, fast=True)
        created.append(pg)
        return pg

    try:
        yield make
    finally:
        for pg in created:
            try:
                pg.stop(mode="immediate")
            except EmbeddedPostgresError:
                pass


def _postmaster_pid(pg: EmbeddedPostgres) -> int:
    return int((pg.cluster_dir / "postmaster.pid").read_text().split("\n", 1)[0])


def _password(pg: EmbeddedPostgres) -> str:
    return pg.password_file.read_text(encoding="utf-8").strip()


def _socket_dir(pg: EmbeddedPostgres) -> Path:
    return Path((pg.cluster_dir / "postmaster.pid").read_text().splitlines()[4])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _tcp_refused(pg: EmbeddedPostgres, password: str | None) -> bool:
    """Whether a TCP connection as the superuser with `password` (None: none) is refused."""
    try:
        with psycopg.connect(
            host="127.0.0.1",
            port=pg.port,
            user="postgres",
            dbname="postgres",
            password=password,
            connect_timeout=5,
        ) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        assert "password" in str(exc), exc  # refused for the password, not for something else
        return True
    return False


# What rocketd before issue 13 left in a data dir: 127.0.0.1 trusted, no password, no file.
OLD_TRUSTING_HBA = (
    "# Written by rocketd: local socket (0700 directory) and 127.0.0.1 only.\n"
    "local   all       all                  trust\n"
    "host    all       all   127.0.0.1/32   trust\n"
)


def _make_trusting(pg: EmbeddedPostgres) -> None:
    """Turn a running cluster into one made by the old code (and reload it)."""
    hba = pg.cluster_dir / "pg_hba.conf"
    hba.write_text(OLD_TRUSTING_HBA, encoding="utf-8")
    with psycopg.connect(
        host=str(_socket_dir(pg)), port=pg.port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute("ALTER ROLE postgres PASSWORD NULL")
        conn.execute("SELECT pg_reload_conf()")
    pg.password_file.unlink()
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{pg.port}/postgres") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)  # really trusting now


def _count_rows(dsn: str) -> int:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM kept").fetchone()
    assert row is not None
    return int(row[0])


def test_find_postgres_bindir_has_an_executable_postgres() -> None:
    bindir = find_postgres_bindir()
    postgres = bindir / "postgres"
    assert postgres.is_file()
    assert os.access(postgres, os.X_OK)


def test_data_survives_stop_and_start(make_pg: MakePg) -> None:
    pg = make_pg()
    dsn = pg.start()
    assert dsn == f"postgresql://postgres:{_password(pg)}@127.0.0.1:{pg.port}/postgres"
    assert pg.running and pg.owned
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        conn.execute("CREATE TABLE kept (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO kept VALUES (1, 'still here')")
        row = conn.execute("SHOW server_encoding").fetchone()
        assert row == ("UTF8",)
    pg.stop()
    assert not pg.running
    assert (pg.data_dir / "postgres.log").stat().st_size > 0

    again = make_pg()
    with psycopg.connect(again.start(), connect_timeout=5) as conn:
        assert conn.execute("SELECT note FROM kept WHERE id = 1").fetchone() == ("still here",)
    again.stop()
    assert not again.running


def test_start_reuses_a_running_cluster(make_pg: MakePg) -> None:
    first = make_pg()
    dsn = first.start()
    pid = _postmaster_pid(first)
    assert first.start() == dsn  # idempotent on the same object

    second = make_pg()
    assert second.start() == dsn
    assert _postmaster_pid(second) == pid
    assert first.owned and not second.owned

    second.stop()  # whoever calls stop stops the shared server
    assert not first.running
    first.stop()  # no-op when not running


def test_port_is_remembered_across_restarts(make_pg: MakePg) -> None:
    pg = make_pg()
    pg.start()
    port = pg.port
    pg.stop()
    later = make_pg()
    later.start()
    assert later.port == port
    later.stop()


def test_explicit_port_is_used(make_pg: MakePg) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pg = make_pg(port=port)
    assert pg.start() == f"postgresql://postgres:{_password(pg)}@127.0.0.1:{port}/postgres"
    pg.stop()


def test_start_after_sigkill_recovers(make_pg: MakePg) -> None:
    pg = make_pg()
    dsn = pg.start()
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        conn.execute("CREATE TABLE kept (id int)")
        conn.execute("INSERT INTO kept VALUES (1), (2)")
    os.kill(_postmaster_pid(pg), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pg.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pg.running

    revived = make_pg()
    assert revived.start() == dsn  # same port, crash recovery replays the WAL
    assert revived.owned
    assert _count_rows(dsn) == 2
    revived.stop()
    assert not revived.running


def test_stop_is_a_noop_when_never_started(make_pg: MakePg, base_dir: Path) -> None:
    pg = make_pg(base_dir / "never")
    pg.stop()
    assert not pg.running
    with pytest.raises(EmbeddedPostgresError):
        _ = pg.dsn


def test_context_manager_starts_and_stops(make_pg: MakePg) -> None:
    with make_pg() as pg:
        assert pg.running
        with psycopg.connect(pg.dsn, connect_timeout=5) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    assert not pg.running


def test_long_data_dir_gets_a_short_socket_dir(make_pg: MakePg, base_dir: Path) -> None:
    deep = base_dir / ("d" * 60) / ("e" * 60)
    pg = make_pg(deep)
    pg.start()
    socket_dir = Path(pg.cluster_dir.joinpath("postmaster.pid").read_text().splitlines()[4])
    assert not socket_dir.is_relative_to(deep)
    assert len(str(socket_dir / f".s.PGSQL.{pg.port}")) < 108
    with psycopg.connect(
        host=str(socket_dir), port=pg.port, user="postgres", dbname="postgres", connect_timeout=5
    ) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    pg.stop()
    assert not socket_dir.exists()  # the temporary socket dir is cleaned up on stop


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another user")
def test_root_names_the_directory_the_server_user_cannot_enter(
    make_pg: MakePg, base_dir: Path
) -> None:
    locked = base_dir / "locked"
    locked.mkdir(mode=0o700)
    locked.chmod(0o700)
    pg = make_pg(locked / "data")
    with pytest.raises(EmbeddedPostgresError, match=str(locked)):
        pg.start()
    assert not pg.running


def test_tcp_needs_the_generated_password_and_the_files_are_private(make_pg: MakePg) -> None:
    pg = make_pg()
    dsn = pg.start()
    password = _password(pg)
    assert len(password) >= 40
    assert _tcp_refused(pg, None)
    assert _tcp_refused(pg, "changeme")
    assert not _tcp_refused(pg, password)
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        methods = conn.execute(
            "SELECT type, auth_method FROM pg_hba_file_rules ORDER BY rule_number"
        ).fetchall()
    assert methods == [("local", "trust"), ("host", "scram-sha-256")]
    assert (pg.cluster_dir / "pg_hba.conf").read_text() == HBA_CONF
    assert _mode(pg.password_file) == 0o600
    assert pg.password_file.stat().st_uid == os.geteuid()
    assert _mode(pg.cluster_dir / "pg_hba.conf") == 0o600
    assert _mode(pg.cluster_dir) == 0o700
    assert _mode(_socket_dir(pg)) == 0o700
    assert _socket_dir(pg).is_relative_to(pg.data_dir)  # inside the data dir
    pg.stop()

    again = make_pg()  # the same password on the next start
    assert again.start() == dsn
    again.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another local user")
def test_another_local_user_gets_in_neither_by_socket_nor_by_tcp(make_pg: MakePg) -> None:
    pg = make_pg()
    pg.start()

    def psql_as_nobody(host: str) -> subprocess.CompletedProcess[str]:
        # -w: never prompt for a password; no PG* variables, no ~/.pgpass of root's.
        command = [str(find_postgres_bindir() / "psql"), "-w", "-h", host, "-p", str(pg.port)]
        return subprocess.run(
            [*command, "-U", "postgres", "-d", "postgres", "-c", "SELECT 1"],
            user="nobody",
            extra_groups=[],
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
            cwd="/",
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    by_socket = psql_as_nobody(str(_socket_dir(pg)))
    assert by_socket.returncode != 0 and "Permission denied" in by_socket.stderr, by_socket
    by_tcp = psql_as_nobody("127.0.0.1")
    assert by_tcp.returncode != 0 and "password" in by_tcp.stderr, by_tcp
    pg.stop()


def test_a_trusting_data_dir_is_upgraded_on_its_next_start(make_pg: MakePg) -> None:
    old = make_pg()
    old.start()
    with psycopg.connect(old.dsn) as conn:
        conn.execute("CREATE TABLE kept (id int)")
    _make_trusting(old)
    old.stop()

    pg = make_pg()
    dsn = pg.start()
    assert (pg.cluster_dir / "pg_hba.conf").read_text() == HBA_CONF
    assert _mode(pg.password_file) == 0o600
    assert _tcp_refused(pg, None)
    assert dsn == f"postgresql://postgres:{_password(pg)}@127.0.0.1:{pg.port}/postgres"
    assert _count_rows(dsn) == 0
    pg.stop()


def test_a_running_trusting_server_is_upgraded_when_reused(make_pg: MakePg) -> None:
    old = make_pg()
    old.start()
    _make_trusting(old)

    pg = make_pg()
    dsn = pg.start()  # reuses the running server
    assert not pg.owned
    assert (pg.cluster_dir / "pg_hba.conf").read_text() == HBA_CONF
    assert _tcp_refused(pg, None)  # the running server reloaded the new rules
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    pg.stop()


def test_a_password_file_readable_by_others_is_made_private(make_pg: MakePg) -> None:
    pg = make_pg()
    dsn = pg.start()
    pg.stop()
    pg.password_file.chmod(0o644)
    again = make_pg()
    assert again.start() == dsn
    assert _mode(again.password_file) == 0o600
    again.stop()
