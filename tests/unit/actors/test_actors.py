"""Actors and their supervisor, without a database: messages, replies, crashes, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from rocketd.actors.base import Actor, ActorStopped, ExponentialBackoff, MailboxFull
from rocketd.actors.scheduler import job_lock_key
from rocketd.actors.supervisor import Supervisor
from tests.support.helpers import wait_until


class Counter(Actor):
    """Counts `inc` messages; `boom` raises, `block` waits for `release`."""

    def __init__(self, name: str = "counter", *, mailbox_size: int = 0) -> None:
        super().__init__(name, mailbox_size=mailbox_size)
        self.count = 0
        self.starts = 0
        self.stops = 0
        self.release = asyncio.Event()
        self.stop_order: list[str] | None = None

    async def on_start(self) -> None:
        self.starts += 1

    async def on_stop(self) -> None:
        self.stops += 1
        if self.stop_order is not None:
            self.stop_order.append(self.name)

    async def handle(self, message: object) -> Any:
        if message == "inc":
            self.count += 1
            return self.count
        if message == "get":
            return self.count
        if message == "boom":
            raise RuntimeError("boom")
        if message == "inner timeout":
            raise TimeoutError("inner timeout")
        if message == "block":
            await self.release.wait()
            return "released"
        raise ValueError(f"unexpected message {message!r}")


class Tolerant(Counter):
    crash_on_error = False


class FailsToStart(Actor):
    async def on_start(self) -> None:
        raise ConnectionError("database unreachable")


class FinishesAtOnce(Actor):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.starts = 0

    async def run(self) -> None:
        self.starts += 1


def crash_delays(logs: list[MutableMapping[str, Any]], actor: str) -> list[float]:
    return [e["retry_in"] for e in logs if e["event"] == "actor crashed" and e["actor"] == actor]


async def crash_and_await_restart(supervisor: Supervisor, sentinel: Counter) -> None:
    """Let at least one full backoff pass: crash `sentinel` and wait for its restart."""
    before = supervisor.restarts(sentinel.name)
    sentinel.tell("boom")
    await wait_until(
        lambda: supervisor.restarts(sentinel.name) > before and sentinel.running,
        "the sentinel actor to be restarted",
    )


async def test_tell_changes_state_and_ask_returns_the_reply() -> None:
    counter = Counter()
    await counter.start()
    try:
        counter.tell("inc")
        counter.tell("inc")
        assert await counter.ask("inc") == 3
        assert await counter.ask("get") == 3
    finally:
        await counter.stop()
    assert not counter.running
    assert counter.stops == 1


async def test_ask_times_out_when_the_actor_does_not_answer() -> None:
    counter = Counter()
    await counter.start()
    try:
        with pytest.raises(TimeoutError, match="'counter' did not answer 'block'"):
            await counter.ask("block", timeout=0.05)
        counter.release.set()
        assert await counter.ask("inc") == 1
    finally:
        await counter.stop()


async def test_ask_delivers_the_handler_exception_without_crashing_the_actor() -> None:
    counter = Counter()
    await counter.start()
    try:
        with pytest.raises(RuntimeError, match="boom"):
            await counter.ask("boom")
        # A TimeoutError raised by the handler is the handler's, not the ask's own timeout.
        with pytest.raises(TimeoutError, match=r"^inner timeout$"):
            await counter.ask("inner timeout")
        assert counter.running
        assert await counter.ask("inc") == 1
        assert counter.starts == 1
    finally:
        await counter.stop()


async def test_tell_to_a_full_bounded_mailbox_raises() -> None:
    counter = Counter(mailbox_size=1)
    counter.tell("inc")
    with pytest.raises(MailboxFull, match="mailbox of actor 'counter' is full"):
        counter.tell("inc")
    assert counter.queued == 1


async def test_unbounded_mailbox_accepts_messages_before_start() -> None:
    counter = Counter()
    for _ in range(1000):
        counter.tell("inc")
    await counter.start()
    try:
        assert await counter.ask("get") == 1000
    finally:
        await counter.stop()


async def test_stop_fails_queued_asks_and_keeps_told_messages_for_the_next_start() -> None:
    counter = Counter()
    await counter.start()
    counter.tell("block")
    await wait_until(lambda: counter.queued == 0, "the actor to take the blocking message")
    asking = asyncio.create_task(counter.ask("get"))
    await wait_until(lambda: counter.queued == 1, "the ask to be queued")
    counter.tell("inc")

    await counter.stop()

    with pytest.raises(ActorStopped):
        await asking
    with pytest.raises(ActorStopped, match="start it again"):
        await counter.ask("get")
    assert counter.queued == 1  # the told "inc" survived
    await counter.start()
    try:
        assert await counter.ask("get") == 1
    finally:
        await counter.stop()


async def test_handler_error_of_a_tolerant_actor_is_logged_and_it_keeps_running() -> None:
    actor = Tolerant()
    await actor.start()
    try:
        with capture_logs() as logs:
            actor.tell("boom")
            actor.tell("inc")
            assert await actor.ask("get") == 1
        assert actor.starts == 1
        failed = [e for e in logs if e["event"] == "actor message failed"]
        assert failed and failed[0]["message"] == "'boom'"
    finally:
        await actor.stop()


async def test_crash_on_a_told_message_restarts_the_actor_with_its_queued_messages() -> None:
    supervisor = Supervisor(backoff_base=0.01, backoff_cap=0.05)
    counter = Counter()
    with capture_logs() as logs:
        await supervisor.add(counter)
        counter.tell("boom")
        counter.tell("inc")  # queued behind the crash: must be handled by the next run
        await wait_until(lambda: counter.count == 1, "the queued message after the restart")
    try:
        assert supervisor.restarts("counter") == 1
        assert counter.starts == 2
        assert counter.stops == 1  # on_stop ran after the crashed run
        assert await counter.ask("inc") == 2
        crashed = [e for e in logs if e["event"] == "actor crashed"]
        assert len(crashed) == 1
        assert crashed[0]["log_level"] == "error"
        failure = crashed[0]["exc_info"]
        assert isinstance(failure, RuntimeError)
        assert "while actor 'counter' handled 'boom'" in failure.__notes__[0]
        assert supervisor.all_running()
    finally:
        await supervisor.stop_all()


async def test_backoff_doubles_after_each_crash_up_to_the_cap() -> None:
    supervisor = Supervisor(backoff_base=0.01, backoff_cap=0.04, healthy_after=60.0)
    actor = FailsToStart("flaky")
    with capture_logs() as logs:
        await supervisor.add(actor)  # returns although the first start failed
        await wait_until(lambda: len(crash_delays(logs, "flaky")) >= 5, "five crashes")
        await supervisor.remove(actor)
    assert crash_delays(logs, "flaky")[:5] == [0.01, 0.02, 0.04, 0.04, 0.04]
    assert supervisor.restarts("flaky") >= 4
    assert isinstance(logs[0]["exc_info"], ConnectionError)


async def test_backoff_starts_afresh_after_a_healthy_run() -> None:
    # healthy_after=0 makes every run count as healthy, so the delay never grows.
    supervisor = Supervisor(backoff_base=0.01, backoff_cap=0.04, healthy_after=0.0)
    actor = FailsToStart("flaky")
    with capture_logs() as logs:
        await supervisor.add(actor)
        await wait_until(lambda: len(crash_delays(logs, "flaky")) >= 4, "four crashes")
        await supervisor.remove(actor)
    assert crash_delays(logs, "flaky")[:4] == [0.01, 0.01, 0.01, 0.01]


async def test_removed_actor_is_not_restarted() -> None:
    supervisor = Supervisor(backoff_base=0.02, backoff_cap=0.02)
    removed = Counter("removed")
    sentinel = Counter("sentinel")
    await supervisor.add(removed)
    await supervisor.add(sentinel)
    try:
        removed.tell("boom")
        await wait_until(lambda: removed.stops == 1, "the crashed run to end")
        await supervisor.remove(removed)  # during its backoff, before the restart
        await crash_and_await_restart(supervisor, sentinel)
        assert not removed.running
        assert removed.starts == 1
        assert supervisor.restarts("removed") == 0
        assert supervisor.not_running() == []
    finally:
        await supervisor.stop_all()


async def test_actor_that_ends_normally_or_is_stopped_is_not_restarted() -> None:
    supervisor = Supervisor(backoff_base=0.02, backoff_cap=0.02)
    finished = FinishesAtOnce("finished")
    stopped = Counter("stopped")
    sentinel = Counter("sentinel")
    await supervisor.add(finished)
    await supervisor.add(stopped)
    await supervisor.add(sentinel)
    try:
        await wait_until(lambda: not finished.running, "the run to return")
        await stopped.stop()
        await crash_and_await_restart(supervisor, sentinel)
        assert finished.starts == 1
        assert stopped.starts == 1
        assert supervisor.restarts("finished") == 0
        assert supervisor.restarts("stopped") == 0
        assert supervisor.not_running() == ["finished", "stopped"]
        assert not supervisor.all_running()
    finally:
        await supervisor.stop_all()


async def test_stop_all_stops_actors_in_reverse_start_order() -> None:
    supervisor = Supervisor()
    order: list[str] = []
    actors = [Counter(name) for name in ("first", "second", "third")]
    for actor in actors:
        actor.stop_order = order
        await supervisor.add(actor)
    assert supervisor.all_running()

    await supervisor.stop_all(timeout=1.0)

    assert order == ["third", "second", "first"]
    assert not any(actor.running for actor in actors)
    assert not supervisor.all_running()
    with pytest.raises(ActorStopped):
        actors[0].tell("inc")


async def test_supervisor_rejects_a_second_actor_with_the_same_name() -> None:
    supervisor = Supervisor()
    await supervisor.add(Counter("same"))
    try:
        with pytest.raises(ValueError, match="already supervised"):
            await supervisor.add(Counter("same"))
        with pytest.raises(KeyError, match="was ever supervised"):
            supervisor.restarts("other")
    finally:
        await supervisor.stop_all()


def test_exponential_backoff_doubles_caps_and_resets() -> None:
    backoff = ExponentialBackoff(0.1, 0.5)
    assert [backoff.next_delay() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    backoff.reset()
    assert backoff.next_delay() == 0.1
    with pytest.raises(ValueError, match="base <= cap"):
        ExponentialBackoff(1.0, 0.5)


def test_job_lock_key_is_a_stable_signed_64_bit_integer() -> None:
    # Fixed values: every instance, version and machine must derive the same key.
    assert job_lock_key("retention") == -616353997593430587
    assert job_lock_key("retention") != job_lock_key("webhook-retries")
    assert all(-(2**63) <= job_lock_key(name) < 2**63 for name in ("", "a", "x" * 1000))
