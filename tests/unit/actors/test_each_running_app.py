"""Per-app background jobs (retention, orphan sweeps, workflow resume/timeouts/retention, token
purges) run through `for_each_running`: an app whose work fails is skipped and the next apps
still get theirs; apps not running are left out; a cancellation still stops the job."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

import pytest

from rocketd.actors.app import AppActor
from rocketd.actors.directory import for_each_running


@dataclass
class _App:
    app_name: str
    running: bool = True


def _apps(*apps: _App) -> list[AppActor]:
    return cast(list[AppActor], list(apps))


async def test_a_failing_app_does_not_stop_the_next_ones() -> None:
    done: list[str] = []

    async def work(actor: Any) -> None:
        if actor.app_name == "broken":
            raise OSError("connection refused")
        done.append(actor.app_name)

    apps = _apps(_App("first"), _App("broken"), _App("stopped", running=False), _App("last"))
    await for_each_running(apps, work, what="test job")
    assert done == ["first", "last"]


async def test_a_cancellation_is_not_swallowed() -> None:
    done: list[str] = []

    async def work(actor: Any) -> None:
        if actor.app_name == "cut":
            raise asyncio.CancelledError
        done.append(actor.app_name)

    with pytest.raises(asyncio.CancelledError):
        await for_each_running(_apps(_App("first"), _App("cut"), _App("never")), work, what="job")
    assert done == ["first"]
