"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.orphans import owned_tempdir, remove_owned_dir


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: as root, PostgreSQL runs as an unprivileged user, which must be
    # able to enter the data dir (pytest's base temp dir is private to root). Owned, so that the
    # embedded PostgreSQL of a rocketd killed with this process is stopped by the next session.
    path = owned_tempdir("e2e")
    yield path
    # A test that failed half-way may leave the embedded PostgreSQL running: stopped first.
    remove_owned_dir(path)


@pytest.fixture(scope="session")
def pgbouncer_dsn(pg_dsn: str) -> Iterator[str]:
    """A PgBouncer in transaction mode in front of the tests' PostgreSQL, once per session."""
    from tests.support.pgbouncer import running_pgbouncer

    with running_pgbouncer(pg_dsn) as dsn:
        yield dsn
