"""The actor primitive: one task, one mailbox, state changed only by the actor's own messages.

`Actor` owns the mailbox and the lifecycle of its task (start, stop, the crash that ends a run);
it must not decide whether a crashed actor comes back - that is the supervisor's job - and it must
not share its state with callers except through replies to `ask`. The module also holds the two
small pieces every long-lived actor needs: an exponential backoff and a way to open the dedicated
autocommit connection some actors keep.
"""

from __future__ import annotations

import asyncio
import contextvars
import reprlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from rocketd.logging import get_logger

log = get_logger("rocketd.actors")

ConnectionFactory = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]
"""An async callable returning a fresh connection the caller then owns (and closes)."""

ConnectionSource = str | ConnectionFactory
"""A conninfo/DSN string, or a `ConnectionFactory`."""


class ActorError(Exception):
    """Base class of the errors raised by the actor machinery itself."""


class MailboxFull(ActorError):
    """`tell`/`ask` found a bounded mailbox full; the caller must back off or drop the message."""


class ActorStopped(ActorError):
    """The actor was stopped on purpose and takes no more messages until it is started again."""


def describe_message(message: object) -> str:
    """A short, log-safe rendering of a message (mailboxes may carry large payloads)."""
    return reprlib.repr(message)


@dataclass(frozen=True, slots=True)
class _Envelope:
    message: object
    reply: asyncio.Future[Any] | None


class Actor:
    """A task with a mailbox.

    Subclasses override `handle` (the default `run` feeds it the mailbox one message at a time)
    and optionally `on_start`/`on_stop`; an actor driven by its own loop overrides `run` instead,
    and may still call `run_mailbox` from it. The mailbox belongs to the object, not to the task,
    so messages still queued when a run crashes are handled by the next run.
    """

    crash_on_error: bool = True
    """Whether an exception from `handle` of a told message ends the run (so it is restarted)."""

    def __init__(self, name: str, *, mailbox_size: int = 0) -> None:
        self.name = name
        self._mailbox: asyncio.Queue[_Envelope] = asyncio.Queue(maxsize=mailbox_size)
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    # -- hooks for subclasses ------------------------------------------------------------------

    async def on_start(self) -> None:
        """Acquire what a run needs. If it raises, `on_stop` is still called and `start` fails."""

    async def handle(self, message: object) -> Any:
        """Handle one message; the return value is the reply to an `ask`."""
        raise NotImplementedError(
            f"actor {self.name!r} ({type(self).__name__}) got {describe_message(message)} "
            "but does not override handle()"
        )

    async def on_stop(self) -> None:
        """Release what a run acquired. Called after every run, whether it stopped or crashed."""

    async def run(self) -> None:
        """The body of a run; an exception escaping it is a crash. Default: the mailbox loop."""
        await self.run_mailbox()

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def queued(self) -> int:
        """How many messages wait in the mailbox (not counting the one being handled)."""
        return self._mailbox.qsize()

    async def start(self) -> None:
        """Run `on_start`, then start the task that runs `run`. Usually called by a Supervisor."""
        if self.running:
            raise ActorError(f"actor {self.name!r} is already running")
        self._stopped = False
        try:
            await self.on_start()
        except BaseException:
            await self._call_on_stop()
            raise
        # A fresh context: an actor started while handling a request must not log with that
        # request's trace id (structlog context lives in contextvars) for the rest of its life.
        self._task = asyncio.create_task(
            self._run_then_stop(), name=f"actor:{self.name}", context=contextvars.Context()
        )

    async def stop(self, timeout: float = 5.0) -> None:
        """Cancel the current run and wait up to `timeout` s for `on_stop` to finish.

        Told messages still queued stay in the mailbox for a later `start`; queued asks fail
        with `ActorStopped` at once instead of leaving their callers to time out.
        """
        self._stopped = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            if task is asyncio.current_task():
                return  # stopping itself from inside a handler: the cancellation ends the run
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                log.warning("actor did not stop in time", actor=self.name, timeout=timeout)
        self._reject_queued_asks()

    async def join(self) -> BaseException | None:
        """Wait for the current run to end; return what crashed it, or None if it ended cleanly.

        A run cancelled by anything other than `stop` counts as a crash: the actor is gone
        although nobody asked it to go.
        """
        task = self._task
        if task is None:
            return None
        await asyncio.wait({task})
        if task.cancelled():
            if self._stopped:
                return None
            return ActorError(f"actor {self.name!r} was cancelled without stop()")
        return task.exception()

    # -- messages ------------------------------------------------------------------------------

    def tell(self, message: object) -> None:
        """Queue a message and return at once; the sender gets no reply."""
        self._enqueue(_Envelope(message, None))

    async def ask(self, message: object, timeout: float = 5.0) -> Any:
        """Queue a message and wait for `handle`'s return value (or its exception).

        Raises TimeoutError if no reply comes within `timeout` s. The message is still handled
        after a timeout - like a told message - but the reply is dropped.
        """
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(_Envelope(message, reply))
        try:
            async with asyncio.timeout(timeout):
                return await reply
        except TimeoutError:
            if reply.done() and not reply.cancelled():
                raise  # the handler itself raised TimeoutError: deliver it unchanged
            raise TimeoutError(
                f"actor {self.name!r} did not answer {describe_message(message)} within {timeout} s"
            ) from None

    async def run_mailbox(self) -> None:
        """Handle queued messages one at a time, forever."""
        while True:
            envelope = await self._mailbox.get()
            if envelope.reply is None:
                await self._handle_told(envelope.message)
            else:
                await self._handle_asked(envelope.message, envelope.reply)

    # -- internals -----------------------------------------------------------------------------

    def _enqueue(self, envelope: _Envelope) -> None:
        if self._stopped:
            raise ActorStopped(
                f"actor {self.name!r} has been stopped; start it again before sending "
                f"{describe_message(envelope.message)}"
            )
        try:
            self._mailbox.put_nowait(envelope)
        except asyncio.QueueFull:
            raise MailboxFull(
                f"the mailbox of actor {self.name!r} is full ({self._mailbox.maxsize} messages); "
                f"{describe_message(envelope.message)} was not queued - slow down or raise "
                "mailbox_size"
            ) from None

    async def _handle_told(self, message: object) -> None:
        try:
            await self.handle(message)
        except Exception as exc:
            if self.crash_on_error:
                # The supervisor logs the crash with its traceback; the note names the message.
                exc.add_note(f"while actor {self.name!r} handled {describe_message(message)}")
                raise
            log.exception(
                "actor message failed", actor=self.name, message=describe_message(message)
            )

    async def _handle_asked(self, message: object, reply: asyncio.Future[Any]) -> None:
        try:
            result = await self.handle(message)
        except asyncio.CancelledError:
            if not reply.done():
                reply.set_exception(
                    ActorStopped(f"actor {self.name!r} was stopped while handling the message")
                )
            raise
        except Exception as exc:
            if reply.done():
                # The asker gave up (timeout); the failure would otherwise vanish.
                log.exception(
                    "actor message failed after its asker gave up",
                    actor=self.name,
                    message=describe_message(message),
                )
            else:
                reply.set_exception(exc)
        else:
            if not reply.done():
                reply.set_result(result)

    async def _run_then_stop(self) -> None:
        try:
            await self.run()
        finally:
            await self._call_on_stop()

    async def _call_on_stop(self) -> None:
        try:
            await self.on_stop()
        except Exception:
            log.exception("actor on_stop failed", actor=self.name)

    def _reject_queued_asks(self) -> None:
        kept: list[_Envelope] = []
        while not self._mailbox.empty():
            envelope = self._mailbox.get_nowait()
            if envelope.reply is None:
                kept.append(envelope)
            elif not envelope.reply.done():
                envelope.reply.set_exception(
                    ActorStopped(f"actor {self.name!r} was stopped before handling the message")
                )
        for envelope in kept:
            self._mailbox.put_nowait(envelope)


class ExponentialBackoff:
    """Delays of base, 2*base, 4*base, ... capped at `cap`, until `reset`."""

    def __init__(self, base: float, cap: float) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={base}, cap={cap}")
        self._base = base
        self._cap = cap
        self._next = base

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self._cap)
        return delay

    def reset(self) -> None:
        self._next = self._base


async def open_autocommit_connection(source: ConnectionSource) -> psycopg.AsyncConnection[Any]:
    """Open a connection for an actor's own use, in autocommit mode.

    Actors that keep a connection (LISTEN, session advisory locks) must never sit inside an
    implicit transaction: it would hold locks and snapshots for as long as the actor lives.
    """
    if isinstance(source, str):
        return await psycopg.AsyncConnection.connect(source, autocommit=True)
    connection = await source()
    if not connection.autocommit:
        await connection.set_autocommit(True)
    return connection
