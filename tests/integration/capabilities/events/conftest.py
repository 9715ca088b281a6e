"""Fixtures of the events tests: a flusher that writes every 20 ms, webhooks allowed to reach a
receiver on loopback, fast workflow ticks."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from rocketd.config import Settings, WebhookSettings
from tests.support.receiver import Receiver


@pytest.fixture
def settings(settings: Settings) -> Settings:
    hooks = WebhookSettings(
        allow_networks=("127.0.0.0/8",), retry_base_seconds=0.2, sweep_interval=0.2, timeout=3.0
    )
    fast = dataclasses.replace(settings.instrumentation, flush_interval_ms=20)
    return dataclasses.replace(
        settings, webhooks=hooks, instrumentation=fast, workflow_tick_seconds=0.2
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()
