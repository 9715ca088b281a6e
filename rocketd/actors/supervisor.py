"""The supervisor: starts actors, restarts the ones that crash, stops them all in reverse order.

It owns one watcher task per actor and the restart bookkeeping (backoff, counters). It must not
look inside an actor's state or messages, and must never restart an actor that ended cleanly, was
stopped on purpose, or was removed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from rocketd.actors.base import Actor, ExponentialBackoff
from rocketd.logging import get_logger

log = get_logger("rocketd.actors")


@dataclass
class _Child:
    actor: Actor
    watcher: asyncio.Task[None] | None = None
    first_attempt_done: asyncio.Event = field(default_factory=asyncio.Event)


class Supervisor:
    """Keeps a set of actors running.

    A crashed actor (an exception escaped `start` or `run`) is logged with its traceback and
    restarted after `backoff_base` seconds, doubling on each crash up to `backoff_cap`. A run
    that lasted `healthy_after` seconds or more before crashing starts the backoff afresh.
    """

    def __init__(
        self,
        *,
        backoff_base: float = 0.1,
        backoff_cap: float = 30.0,
        healthy_after: float = 60.0,
    ) -> None:
        ExponentialBackoff(backoff_base, backoff_cap)  # validate the pair at construction
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._healthy_after = healthy_after
        self._children: dict[str, _Child] = {}  # insertion order is start order
        self._restarts: dict[str, int] = {}

    async def add(self, actor: Actor) -> None:
        """Start `actor` under supervision; returns after its first start attempt.

        If that attempt fails, the failure is handled like any crash (logged, retried with
        backoff), so a dependency that is down at boot does not stop the process from starting.
        """
        if actor.name in self._children:
            raise ValueError(
                f"an actor named {actor.name!r} is already supervised; actor names must be unique"
            )
        if actor.running:
            raise ValueError(
                f"actor {actor.name!r} is already running; let the supervisor start it"
            )
        child = _Child(actor)
        self._children[actor.name] = child
        self._restarts.setdefault(actor.name, 0)
        child.watcher = asyncio.create_task(self._watch(child), name=f"supervise:{actor.name}")
        await child.first_attempt_done.wait()

    async def remove(self, actor: Actor, timeout: float = 5.0) -> None:
        """Stop `actor` and forget it; it is not restarted."""
        child = self._children.pop(actor.name, None)
        if child is None or child.actor is not actor:
            raise KeyError(f"actor {actor.name!r} is not supervised by this supervisor")
        await self._stop_watching(child)
        await actor.stop(timeout)

    async def stop_all(self, timeout: float = 5.0) -> None:
        """Stop every actor, last started first; each gets up to `timeout` s for `on_stop`.

        The actors stay registered (and `all_running` turns false) until they are removed.
        """
        children = list(self._children.values())
        # Stop all restarts first, so no actor comes back while its neighbours are stopping.
        for child in children:
            await self._stop_watching(child)
        for child in reversed(children):
            await child.actor.stop(timeout)

    def all_running(self) -> bool:
        """Whether every supervised actor is running now (false while one waits to restart)."""
        return not self.not_running()

    def names(self) -> list[str]:
        """Names of every supervised actor, running or not, in start order."""
        return list(self._children)

    def not_running(self) -> list[str]:
        """Names of the supervised actors not running now, in start order (for /ready)."""
        return [name for name, child in self._children.items() if not child.actor.running]

    def restart_counts(self) -> dict[str, int]:
        """Restarts after a crash, per supervised actor name (for metrics)."""
        return dict(self._restarts)

    def restarts(self, name: str) -> int:
        """How many times the actor named `name` has been restarted after a crash."""
        try:
            return self._restarts[name]
        except KeyError:
            raise KeyError(f"no actor named {name!r} was ever supervised here") from None

    async def _watch(self, child: _Child) -> None:
        try:
            await self._keep_running(child)
        finally:
            child.first_attempt_done.set()  # never leave `add` waiting, even if removed meanwhile

    async def _keep_running(self, child: _Child) -> None:
        actor = child.actor
        backoff = ExponentialBackoff(self._backoff_base, self._backoff_cap)
        loop = asyncio.get_running_loop()
        while True:
            started_at = loop.time()
            failure: BaseException | None
            try:
                await actor.start()
            except Exception as exc:
                failure = exc
            else:
                child.first_attempt_done.set()
                failure = await actor.join()
                if failure is None:
                    log.info("actor stopped", actor=actor.name)
                    return
            child.first_attempt_done.set()
            if loop.time() - started_at >= self._healthy_after:
                backoff.reset()
            delay = backoff.next_delay()
            log.error(
                "actor crashed",
                actor=actor.name,
                restarts=self._restarts[actor.name],
                retry_in=delay,
                exc_info=failure,
            )
            await asyncio.sleep(delay)
            self._restarts[actor.name] += 1
            log.info("actor restarting", actor=actor.name, restarts=self._restarts[actor.name])

    @staticmethod
    async def _stop_watching(child: _Child) -> None:
        watcher = child.watcher
        if watcher is not None and not watcher.done():
            watcher.cancel()
            await asyncio.wait({watcher})
