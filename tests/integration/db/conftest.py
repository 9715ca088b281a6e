"""Fixtures of the database tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def primary_and_replica() -> Iterator[tuple[str, str]]:
    """A PostgreSQL primary and a streaming replica of it (pg_basebackup), once per session."""
    from tests.support.replica import primary_with_replica

    with primary_with_replica() as pair:
        yield pair
