"""The connection budget checked against the real server when an app is created, and app pools
that close their connections when idle and open them again on demand."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import structlog

from rocketd.config import Settings
from tests.support.apps import new_app
from tests.support.helpers import wait_until


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Pools so large that two apps overrun any server's max_connections; idle after 0.3 s.
    return dataclasses.replace(settings, app_pool_size=100_000, app_pool_idle_seconds=0.3)


async def test_creating_an_app_past_the_budget_warns_with_the_numbers(client: Any) -> None:
    with structlog.testing.capture_logs() as lines:
        await new_app(client)
    [warning] = [line for line in lines if line["event"].startswith("connection budget exceeded")]
    assert warning["log_level"] == "warning"
    assert warning["needed"] > warning["available"] > 0
    assert "x (app pool 100000 + 1 event writer)" in warning["budget"]


async def test_an_idle_app_pool_closes_its_connections_and_reopens_on_demand(
    runtime: Any, client: Any
) -> None:
    app = await new_app(client)
    pool = runtime.services.directory.actors[app.name].pool
    await app.ok("GET", "_admin/entities")
    assert pool.get_stats()["pool_size"] >= 1

    await wait_until(lambda: pool.get_stats()["pool_size"] == 0, "the pool empty", timeout=10)
    await app.ok("GET", "_admin/entities")  # grows again on demand
    assert pool.get_stats()["pool_size"] >= 1
