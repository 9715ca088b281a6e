"""WebhookDispatcher: delivers the outbox rows (`_webhook_logs`) after commit.

It is told an app name whenever a committed write signals `webhooks` (any instance's write) and
on every scheduler sweep. For that app it drains what is due: it *claims* a batch with
`FOR UPDATE SKIP LOCKED` in one statement that also pushes the rows' `next_retry_at` out by a
lease (longer than an attempt can take), so no other instance takes them while they are in
flight; the lease time is the claim token. Each attempt is recorded as soon as it completes, and
its concurrency slot is released only once that update is committed (never per claimed batch;
no transaction is open during the HTTP call); the row is updated only if it still carries its
token. Attempts that complete together share one round trip (`_Recorder`). A process killed
mid-attempt leaves the lease to expire and another sweep re-sends the row: at-least-once, with
the same idempotency key, and a crash repeats at most the attempts that were in flight, that is
at most `webhooks.concurrency` per instance.

Attempts run concurrently (bounded by `webhooks.concurrency`). A per-target circuit breaker
(scheme, host, port) opens after `breaker_threshold` consecutive failures: while open, rows for
that target are pushed back without spending an attempt, with `error` saying so; after
`breaker_cooldown` one probe goes through.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from rocketd.actors.base import Actor, ActorError
from rocketd.actors.directory import AppDirectory
from rocketd.actors.scheduler import JobFunction
from rocketd.actors.supervisor import Supervisor
from rocketd.capabilities.webhooks.outbound import DeliveryPolicy, Outcome, Sender
from rocketd.capabilities.webhooks.outbox import SIGNAL
from rocketd.config import Settings, WebhookSettings
from rocketd.engine.pipeline import ServiceKey
from rocketd.engine.tracer import continue_trace
from rocketd.logging import get_logger
from rocketd.tracing import NO_SPAN, AnySpan

log = get_logger("rocketd.capabilities.webhooks.dispatcher")

BATCH: Final = 50
COALESCE_SECONDS: Final = 0.01
CLAIM: Final = """
with due as (
  select id from _webhook_logs
  where status in ('pending', 'retrying') and next_retry_at <= now()
  order by next_retry_at
  limit %s
  for update skip locked
)
update _webhook_logs l
   set next_retry_at = now() + make_interval(secs => %s)
  from due
 where l.id = due.id
returning l.id, l.url, l.method, l.request_headers, l.request_body::text as request_body,
          l.attempt, l.max_attempts,
          l.backoff, l.idempotency_key, l.status, l.next_retry_at, l.trace_id, l.parent_span_id
"""
FINISH: Final = """
update _webhook_logs
   set status = %s, attempt = %s, response_status = %s, response_body = %s, error = %s,
       next_retry_at = %s, duration_ms = %s, updated_at = now()
 where id = %s and next_retry_at = %s and status in ('pending', 'retrying')
"""
POSTPONE: Final = """
update _webhook_logs set next_retry_at = %s, error = %s, updated_at = now()
 where id = %s and next_retry_at = %s and status in ('pending', 'retrying')
"""

PoolLookup = Callable[[str], Awaitable["AsyncConnectionPool[Any] | None"]]
# A recorded statement waiting to be written: (FINISH or POSTPONE, its parameters, done signal).
_Waiting = tuple[str, tuple[Any, ...], "asyncio.Future[None]"]


class _Recorder:
    """Writes attempt outcomes to one app's `_webhook_logs`.

    `record` returns once its statement is committed. Statements recorded while a write is in
    progress wait for the next one, which sends them all in one pipelined round trip (autocommit:
    each is committed on its own): under load the updates group themselves, and at most one
    connection of the app's pool is busy recording.
    """

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self._pending: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    async def record(self, query: str, params: tuple[Any, ...]) -> None:
        if self._closed:
            return  # the drain ended abnormally: the row is sent again after its lease
        done = asyncio.get_running_loop().create_future()
        self._pending.append((query, params, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await done

    def close(self) -> None:
        """Stop writing and release every waiter; unwritten rows are sent again after their
        lease (the dispatcher is stopping, or the drain failed)."""
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()
        pending, self._pending = self._pending, []
        _release(pending)

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self._pool.connection() as conn, conn.cursor() as cur:
                    for query in (FINISH, POSTPONE):
                        params = [args for q, args, _ in batch if q is query]
                        if params:
                            await cur.executemany(query.encode(), params)
            except Exception:  # logged, and every waiter released below: never a stuck slot
                # The leases expire and the rows are sent again: at-least-once, same key.
                log.exception("could not record webhook attempts", count=len(batch))
            finally:
                _release(batch)


def _release(waiting: list[_Waiting]) -> None:
    for _, _, done in waiting:
        if not done.done():
            done.set_result(None)


def retry_delay(base: float, backoff: str, attempt: int) -> float:
    """Seconds before the next attempt after attempt number `attempt` failed (spec: 30 s after
    the first, then 30 s * 2^attempt; linear: 30 s * attempt, C10)."""
    if backoff == "linear":
        return base * attempt
    return base if attempt <= 1 else base * 2.0**attempt


@dataclass
class _Breaker:
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False


class Breakers:
    def __init__(self, threshold: int, cooldown: float) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._targets: dict[str, _Breaker] = {}

    @staticmethod
    def target(url: str) -> str:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.scheme}://{parts.hostname}:{port}"

    def allow(self, target: str, now: float) -> float | None:
        """None when a request may go; else the seconds until the breaker half-opens."""
        state = self._targets.get(target)
        if state is None or state.failures < self._threshold:
            return None
        if now < state.open_until:
            return state.open_until - now
        if state.probing:
            return self._cooldown
        state.probing = True
        return None

    def record(self, target: str, failed: bool, now: float) -> None:
        state = self._targets.setdefault(target, _Breaker())
        state.probing = False
        if not failed:
            state.failures = 0
            return
        state.failures += 1
        if state.failures >= self._threshold:
            if now >= state.open_until:
                log.warning("webhook circuit opened", target=target, failures=state.failures)
            state.open_until = now + self._cooldown


class WebhookDispatcher(Actor):
    crash_on_error = False

    def __init__(
        self,
        settings: WebhookSettings,
        pool_of: PoolLookup,
        *,
        allow_networks: tuple[str, ...] = (),
        name: str = "webhook-dispatcher",
        services: Mapping[ServiceKey[Any], Any] | None = None,
    ) -> None:
        super().__init__(name)
        self._services = services if services is not None else {}  # the tracer, when installed
        self._settings = settings
        self._pool_of = pool_of  # async (app name) -> pool or None
        self._sender = Sender(DeliveryPolicy(settings, allow_networks))
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._breakers = Breakers(settings.breaker_threshold, settings.breaker_cooldown)
        self._drains: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self.delivered = 0

    @property
    def lease_seconds(self) -> float:
        return self._settings.timeout * 2 + 5

    async def handle(self, message: object) -> Any:
        if not isinstance(message, str):
            raise TypeError(f"WebhookDispatcher expects an app name, got {message!r}")
        task = self._drains.get(message)
        if task is not None and not task.done():
            self._again.add(message)
            return None
        self._drains[message] = asyncio.create_task(
            self._drain(message), name=f"webhooks:{message}"
        )
        return None

    async def on_stop(self) -> None:
        tasks = [t for t in self._drains.values() if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._drains.clear()
        await self._sender.close()

    async def _drain(self, app_name: str) -> None:
        recorder: _Recorder | None = None
        try:
            pool = await self._pool_of(app_name)
            if pool is None:
                return
            recorder = _Recorder(pool)
            while True:
                # A short pause lets a burst of commits gather into one claim.
                await asyncio.sleep(COALESCE_SECONDS)
                claimed = await self._claim(pool)
                if claimed:
                    await asyncio.gather(
                        *(self._traced_attempt(app_name, pool, recorder, row) for row in claimed)
                    )
                    continue
                if app_name in self._again:
                    self._again.discard(app_name)
                    continue
                return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook drain failed; the next sweep retries", app=app_name)
        finally:
            if recorder is not None:
                recorder.close()

    async def _claim(self, pool: AsyncConnectionPool[Any]) -> list[dict[str, Any]]:
        async with pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(CLAIM, (BATCH, self.lease_seconds))
            rows: list[dict[str, Any]] = await cur.fetchall()
            return rows

    async def _traced_attempt(
        self,
        app_name: str,
        pool: AsyncConnectionPool[Any],
        recorder: _Recorder,
        row: Mapping[str, Any],
    ) -> None:
        """`_attempt` as a `webhook.dispatch` span of the trace of the request that wrote it."""
        span = continue_trace(
            self._services,
            app_name,
            pool,
            row.get("trace_id"),
            row.get("parent_span_id"),
            "webhook",
            "dispatcher",
            "webhook.dispatch",
            metadata={"url": row["url"], "method": row["method"], "async": True},
        )
        with span as active:
            await self._attempt(recorder, row, active)

    async def _attempt(
        self, recorder: _Recorder, row: Mapping[str, Any], span: AnySpan = NO_SPAN
    ) -> None:
        """Send one claimed row and record the outcome.

        The outcome is committed before the concurrency slot is released: a request the receiver
        may have seen and whose outcome is not recorded yet always holds a slot, which is what
        bounds the repeats after a crash by `webhooks.concurrency`.
        """
        target = Breakers.target(row["url"])
        wait = self._breakers.allow(target, time.monotonic())
        if wait is not None:
            span.rename("webhook.circuit_open")
            span.set_metadata(target=target)
            postponed = (
                datetime.now(UTC) + timedelta(seconds=wait),
                f"circuit open for {target}: not sent",
                row["id"],
                row["next_retry_at"],
            )
            await recorder.record(POSTPONE, postponed)
            return
        body = row["request_body"].encode()  # the stored JSON as PostgreSQL prints it
        async with self._slots:
            outcome = await self._sender.send(
                row["method"],
                row["url"],
                row["request_headers"] or {},
                body,
                row["idempotency_key"],
                timeout=self._settings.timeout,
            )
            self._breakers.record(target, _counts_as_failure(outcome), time.monotonic())
            span.set_metadata(status_code=outcome.status, attempt=int(row["attempt"]) + 1)
            if not outcome.ok:
                span.set_status("error", outcome.error or f"status {outcome.status}")
            await recorder.record(FINISH, self._finished(row, outcome))

    def _finished(self, row: Mapping[str, Any], outcome: Outcome) -> tuple[Any, ...]:
        """The FINISH parameters recording `outcome` as the row's next attempt."""
        attempt = int(row["attempt"]) + 1
        if outcome.ok:
            status, next_at = "delivered", None
            self.delivered += 1
        elif attempt >= int(row["max_attempts"]):
            status, next_at = "failed", None
        else:
            delay = retry_delay(self._settings.retry_base_seconds, row["backoff"], attempt)
            status, next_at = "retrying", datetime.now(UTC) + timedelta(seconds=delay)
        if not outcome.ok:
            log.info(
                "webhook attempt failed",
                url=row["url"],
                attempt=attempt,
                status=outcome.status,
                error=outcome.error,
                next=status,
            )
        return (
            status,
            attempt,
            outcome.status,
            outcome.body,
            outcome.error,
            next_at,
            outcome.duration_ms,
            row["id"],
            row["next_retry_at"],
        )


def _counts_as_failure(outcome: Outcome) -> bool:
    return outcome.status == 0 or outcome.status >= 500 or outcome.status == 429


async def start_webhooks(
    settings: Settings,
    directory: AppDirectory,
    supervisor: Supervisor,
    services: Mapping[ServiceKey[Any], Any] | None = None,
) -> WebhookDispatcher:
    """Start the dispatcher and route the `webhooks` signal to it."""

    async def pool_of(app_name: str) -> AsyncConnectionPool[Any] | None:
        actor = directory.actors.get(app_name) or await directory.resolve(app_name)
        return None if actor is None else actor.pool

    dispatcher = WebhookDispatcher(
        settings.webhooks,
        pool_of,
        allow_networks=settings.outbound.allow_networks,
        services=services,
    )
    await supervisor.add(dispatcher)

    def on_signal(app_name: str) -> None:
        try:
            dispatcher.tell(app_name)
        except ActorError:
            pass  # stopping or restarting: the next sweep finds the rows

    directory.add_signal_handler(SIGNAL, on_signal)
    return dispatcher


def sweep_webhooks(directory: AppDirectory, dispatcher: WebhookDispatcher) -> JobFunction:
    """The scheduler job: every app served here drains what is due (retries, lost signals)."""

    async def sweep() -> None:
        for app_name in list(directory.actors):
            dispatcher.tell(app_name)

    return sweep
