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
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from rocketd.db.embedded import EmbeddedPostgres, EmbeddedPostgresError, find_postgres_bindir

try:
    find_postgres_bindir()
except EmbeddedPostgresError as exc:  # pragma: no cover - depends on the machine
    pytest.skip(f"no PostgreSQL binaries: {exc}", allow_module_level=True)

MakePg = Callable[..., EmbeddedPostgres]


@pytest.fixture
def base_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="rocketd-ep-"))
    base.chmod(0o755)
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
    assert dsn == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
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
    assert pg.start() == f"postgresql://postgres@127.0.0.1:{port}/postgres"
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
