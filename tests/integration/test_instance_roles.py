"""`background_work`: what an API-only Runtime starts (and does not), and how an instance that
gets no requests still comes to serve every app. The multi-process behaviour (deliveries and
steps left to a background instance) is in tests/e2e/test_instance_roles.py."""

from __future__ import annotations

import dataclasses
from typing import Any

from rocketd.capabilities.webhooks import outbox
from rocketd.config import Settings, WebhookSettings
from rocketd.runtime import Runtime
from tests.support.databases import unique_name
from tests.support.helpers import wait_until

BACKGROUND_ACTORS = {"webhook-dispatcher", "workflow-runner", "scheduler"}


async def test_default_runtime_starts_the_background_actors(runtime: Any) -> None:
    names = set(runtime.services.supervisor.names())
    assert BACKGROUND_ACTORS <= names
    assert runtime.started is not None and runtime.started.scheduler is not None


async def test_api_only_runtime_starts_none_but_configures_the_outbound_policy(
    settings: Settings,
) -> None:
    webhooks = WebhookSettings(allow_networks=("192.0.2.0/24",), sync_timeout=1.5)
    api_only = dataclasses.replace(settings, background_work=False, webhooks=webhooks)
    rt = Runtime(api_only)
    await rt.start(http=False)
    try:
        assert rt.services is not None
        app = unique_name("api")
        await rt.services.directory.create_app(app, None, None)
        names = rt.services.supervisor.names()
        assert not BACKGROUND_ACTORS & set(names), names
        assert "metadata-listener" in names and f"app:{app}" in names
        assert rt.started is not None and rt.started.scheduler is None
        # Sync before_* hooks run inside this instance's writes: they need the policy, which
        # every app context reaches as a service.
        context = rt.services.directory.actors[app].context
        assert context.service(outbox.OUTBOUND).policy.settings is webhooks
    finally:
        await rt.stop()


async def test_reconnect_starts_apps_this_instance_missed(runtime: Any, settings: Settings) -> None:
    other = Runtime(settings)
    await other.start(http=False)
    try:
        name = unique_name("missed")
        await runtime.services.directory.create_app(name, None, None)
        directory = other.services.directory  # type: ignore[union-attr]
        await wait_until(lambda: name in directory.actors, "the create notification")
        # As if the notification had been lost while the management listener was away.
        await directory.forget(name)
        assert name not in directory.actors
        await directory.on_reconnect()
        assert directory.actors[name].running
    finally:
        await other.stop()
