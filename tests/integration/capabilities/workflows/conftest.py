"""Fixtures of the workflows tests: fast ticks, and webhook actions allowed to reach a receiver on
loopback."""

from __future__ import annotations

import dataclasses

import pytest

from rocketd.config import Settings, WebhookSettings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # workflow `webhook` actions are delivered to a receiver on loopback
    hooks = WebhookSettings(allow_networks=("127.0.0.0/8",), retry_base_seconds=0.2, timeout=3.0)
    return dataclasses.replace(settings, workflow_tick_seconds=0.2, webhooks=hooks)
