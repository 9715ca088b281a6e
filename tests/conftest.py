"""Test harness: a real PostgreSQL for every test that needs one.

The server is, in order: `ROCKET_TEST_DSN` when set; else the local server on 127.0.0.1:5432 when
it answers; else an embedded PostgreSQL started for the session (and stopped after it). Each test
gets its own management database (and the app databases it creates) and drops them afterwards.

A session starts by sweeping up what killed sessions left running (tests/support/orphans.py):
their PostgreSQL clusters are stopped and their directories removed.

Only fixtures live here; the functions tests call are in tests/support/.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rocketd.config import AuthSettings, DatabaseSettings, ServerSettings, Settings
from tests.support.databases import DEFERRED_DROPS, drop_later, dsn_for, unique_name
from tests.support.orphans import SweepReport, owned_tempdir, sweep
from tests.support.upstream import OPT_OUT

LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "upstream_examples: reads ../shared/upstream-examples (tests/support/upstream.py)",
    )


SWEPT = pytest.StashKey[SweepReport]()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[SWEPT] = sweep()


def pytest_report_header(config: pytest.Config) -> list[str]:
    report = config.stash.get(SWEPT, None)
    if report is None:
        return []
    lines = [
        f"left by killed test sessions, stopped and removed: {path}" for path in report.removed
    ]
    return lines + [f"left by killed test sessions, kept: {reason}" for reason in report.kept]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ROCKET_TEST_WITHOUT_SHARED=1, leave out (deselect, never skip) the tests that need
    ../shared; without it they run, and fail loudly if the folder is absent."""
    if not os.environ.get(OPT_OUT):
        return
    left_out = [item for item in items if item.get_closest_marker("upstream_examples")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("upstream_examples")]


def _answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("select 1")
        return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A superuser DSN (database `postgres`) of the PostgreSQL server the tests use."""
    explicit = os.environ.get("ROCKET_TEST_DSN")
    if explicit:
        yield explicit
        return
    if _answers(LOCAL_DSN):
        yield LOCAL_DSN
        return
    from rocketd.db.embedded import EmbeddedPostgres

    data_dir = owned_tempdir("pg")  # reachable by the unprivileged user PostgreSQL runs as
    server = EmbeddedPostgres(data_dir, fast=True)
    dsn = server.start()
    try:
        yield dsn
    finally:
        server.stop()
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def deferred_drops(pg_dsn: str) -> Iterator[None]:
    """Waits, at the end of the session, for the databases dropped in the background
    (tests/support/databases.py DeferredDrops); a drop that failed fails the session."""
    yield
    failures = DEFERRED_DROPS.wait()
    if failures:
        pytest.fail("databases left behind:\n" + "\n".join(failures))


@pytest.fixture
def management_db(pg_dsn: str, deferred_drops: None) -> Iterator[str]:
    """The name of a fresh management database; it and its apps' databases are dropped after
    the test, in the background (DeferredDrops)."""
    name = unique_name("rkt_mgmt_")
    yield name
    drop_later(pg_dsn, name)


@pytest.fixture
def settings(pg_dsn: str, management_db: str, tmp_path: Path) -> Settings:
    return Settings(
        server=ServerSettings(host="127.0.0.1", port=0, max_body_size=64 * 1024),
        database=DatabaseSettings(url=dsn_for(pg_dsn, management_db), pool_size=5),
        # Cost 4 keeps bcrypt fast in tests; production default is 10 (see docs/platform-and-auth.md).
        auth=AuthSettings(bcrypt_cost=4),
        app_pool_size=3,
        data_dir=str(tmp_path / "data"),
    )


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Any]:
    """A started Runtime without its own listening socket (tests attach a test client)."""
    from rocketd.runtime import Runtime

    rt = Runtime(settings)
    try:
        await rt.start(http=False)
        yield rt
    finally:
        await rt.stop()


@pytest.fixture
async def client(runtime: Any, aiohttp_client: Any) -> Any:
    from rocketd.http.app import create_app

    return await aiohttp_client(create_app(runtime.services))
