"""The connection budget's arithmetic (rocketd.platform.capacity)."""

from __future__ import annotations

import dataclasses

from rocketd.config import DatabaseSettings, InstrumentationSettings, ServerSettings, Settings
from rocketd.platform.capacity import budget_for


def settings(**database: str) -> Settings:
    return Settings(
        server=ServerSettings(workers=2),
        database=DatabaseSettings(url="postgresql://db/rocket", pool_size=10, **database),
        app_pool_size=5,
    )


def test_every_worker_counts_its_pools_event_writers_listeners_and_scheduler() -> None:
    budget = budget_for(settings(), apps=20, max_connections=200, reserved=3)
    # per worker: management pool 10 + 20 apps x (5 + the event flusher's 1), plus 1 + 1 + 20
    # sessions of their own
    assert budget.pooled_per_worker == 130 and budget.direct_per_worker == 22
    assert budget.needed == 2 * 152 and budget.available == 197 and budget.exceeded
    text = budget.describe()
    assert "304 connections at most = 2 workers" in text and "197 available" in text
    assert "20 apps x (app pool 5 + 1 event writer)" in text


def test_without_instrumentation_no_event_writer() -> None:
    off = dataclasses.replace(settings(), instrumentation=InstrumentationSettings(enabled=False))
    budget = budget_for(off, apps=20, max_connections=400, reserved=3)
    assert budget.pooled_per_worker == 110 and not budget.exceeded
    assert "20 apps x (app pool 5)" in budget.describe()


def test_behind_a_pooler_only_the_direct_sessions_count() -> None:
    budget = budget_for(
        settings(listen_url="postgresql://pg/rocket"), apps=20, max_connections=100, reserved=3
    )
    assert budget.needed == 2 * 22 and not budget.exceeded
    assert "through the pooler" in budget.describe()


def test_no_background_work_no_scheduler_session() -> None:
    quiet = dataclasses.replace(settings(), background_work=False)
    assert budget_for(quiet, apps=0, max_connections=100, reserved=3).direct_per_worker == 1
