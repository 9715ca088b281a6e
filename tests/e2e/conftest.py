"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: as root, PostgreSQL runs as an unprivileged user, which must be
    # able to enter the data dir (pytest's base temp dir is private to root).
    path = Path(tempfile.mkdtemp(prefix="rocketd-e2e-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pgbouncer_dsn(pg_dsn: str) -> Iterator[str]:
    """A PgBouncer in transaction mode in front of the tests' PostgreSQL, once per session."""
    from tests.support.pgbouncer import running_pgbouncer

    with running_pgbouncer(pg_dsn) as dsn:
        yield dsn
