"""Spans and traces through `contextvars`: the instrumentation primitive every layer may use.

A `Trace` is one traced request (or background work continuing one): its id, the caller, and
where its finished spans go (`record`, given by the events capability: the app's event buffer).
The current span lives in a context variable, so a span started while another is current becomes
its child, across `await`s and in tasks created meanwhile, without passing anything around.

When nothing is traced (instrumentation off, a request not sampled, work outside a request),
`start_span` returns `NO_SPAN`, a shared object whose methods do nothing: the cost of a hook is
one context-variable read. Hot paths that would build metadata first check `tracing_active()`.

This module is a leaf (standard library only), like `logging`: the kernel, the capabilities and
the HTTP layer all import it.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

SYSTEM: Final = "system"
BUSINESS: Final = "business"

# One `_events` row, in the table's column order (the flusher copies it as it is):
# trace_id, span_id, parent_span_id, event_type, source, component, action, entity, record_id,
# user_id, the duration in whole microseconds (stored as `duration_ms`, in milliseconds), status,
# metadata; then, not stored, the start as wall-clock nanoseconds (for exporters: OTLP wants start
# and end times)
EventRow = tuple[
    str,
    str,
    str | None,
    str,
    str,
    str,
    str,
    str | None,
    str | None,
    str | None,
    int | None,
    str | None,
    dict[str, Any],
    int,
]
Sink = Callable[[list[EventRow]], None]


# Span ids without a system call each: 80 random bits chosen per process (chosen again in a
# forked child), then a 48-bit counter starting at a random point at or above 2**44, so that
# `hex()` writes it in exactly 12 digits (half the cost of a format spec; 2**48 - 2**44 - 2**40
# spans before it would need a 13th). Unique within a process by construction, across processes
# by the random part; the last 64 bits, an OTLP span id, hold the counter, so they differ for
# every span of a process. PostgreSQL's uuid type takes any 128 bits.
# One expression per id, inline where spans are made: they are on every traced request's path.
COUNTER_BASE: Final = 1 << 44  # hex(n)[2:] of COUNTER_BASE <= n < 2**48 has 12 digits
_span_prefix = ""
_span_numbers: Iterator[int] = itertools.count()


def _reseed_span_ids() -> None:
    global _span_prefix, _span_numbers
    head = f"{random.getrandbits(80):020x}"
    _span_prefix = f"{head[:8]}-{head[8:12]}-{head[12:16]}-{head[16:]}-"
    _span_numbers = itertools.count(COUNTER_BASE | random.getrandbits(40))


_reseed_span_ids()
os.register_at_fork(after_in_child=_reseed_span_ids)


def new_id() -> str:
    """A new span id (UUID-shaped)."""
    return _span_prefix + hex(next(_span_numbers))[2:]


_CANONICAL_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def as_uuid(text: str | None) -> str | None:
    """`text` as a canonical UUID string, or None when it is not one (never raises)."""
    if not text or len(text) > 64:
        return None
    if len(text) == 36 and _CANONICAL_UUID.fullmatch(text):
        return text
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


# Closed traces whose rows the sink refused (it raised); the work itself carried on.
SINK_FAILURES = 0


class Trace:
    """One trace as this process sees it: the id, the caller, and the rows of its finished
    spans, handed to `sink` all at once when the trace closes (its root span ended): the caller
    known by then is set on every row, and a trace is stored whole or not at all."""

    __slots__ = (
        "_user_text",
        "_without_user",
        "closed",
        "rows",
        "sink",
        "trace_id",
        "user_id",
        "wall_offset",
    )

    def __init__(self, trace_id: str, sink: Sink, user_id: str | None = None) -> None:
        self.trace_id = trace_id
        # wall-clock minus monotonic nanoseconds: a span's start as wall-clock time (for
        # exporters) is its monotonic start plus this, with no clock read of its own
        self.wall_offset = time.time_ns() - time.perf_counter_ns()
        self.sink = sink
        self._user_text = user_id
        self.user_id = as_uuid(user_id)
        self.rows: list[EventRow] = []
        # rows recorded before the caller last changed: they may lack it (fixed on close)
        self._without_user = 0
        self.closed = False

    def set_user(self, user_id: str | None) -> None:
        """The caller, once authenticated (a non-UUID id, like the system caller's, is kept out
        of the uuid column). Set it as soon as it is known: rows recorded from then on carry it
        and need no copy when the trace closes."""
        if user_id == self._user_text:
            return
        self._user_text = user_id
        self.user_id = as_uuid(user_id)
        self._without_user = len(self.rows)

    def record(self, row: EventRow) -> None:
        if not self.closed:
            self.rows.append(row)

    def close(self) -> None:
        """Hand the rows over; spans ending later (work that outlived the request) are dropped."""
        if self.closed:
            return
        self.closed = True
        rows, self.rows = self.rows, []
        user = self.user_id
        if user is not None:
            for index in range(min(self._without_user, len(rows))):
                row = rows[index]
                if row[9] is None:
                    rows[index] = (*row[:9], user, *row[10:])
        if rows:
            try:
                self.sink(rows)
            except Exception:  # recording never fails the work it records
                global SINK_FAILURES
                SINK_FAILURES += 1


_CURRENT: ContextVar[Span | None] = ContextVar("rocketd_span", default=None)
_perf_ns: Final = time.perf_counter_ns


class Span:
    """A timed operation: started when created, recorded when it ends (`end`, or leaving its
    `with`/`async with` block). Leaving the block with an exception marks it `error`."""

    __slots__ = (
        "_started",
        "_token",
        "action",
        "component",
        "entity",
        "metadata",
        "parent_span_id",
        "record_id",
        "source",
        "span_id",
        "status",
        "trace",
    )

    def __init__(
        self,
        trace: Trace,
        parent_span_id: str | None,
        source: str,
        component: str,
        action: str,
        entity: str | None = None,
        record_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.trace = trace
        self.span_id = _span_prefix + hex(next(_span_numbers))[2:]
        self.parent_span_id = parent_span_id
        self.source = source
        self.component = component
        self.action = action
        self.entity = entity
        self.record_id = record_id
        self.metadata: dict[str, Any] = {} if metadata is None else metadata
        self.status = "ok"
        self._token: Token[Span | None] | None = None
        self._started = _perf_ns()

    @property
    def trace_id(self) -> str:
        return self.trace.trace_id

    @property
    def recording(self) -> bool:
        return True

    def set_status(self, status: str, error: str | None = None) -> None:
        self.status = status
        if error is not None:
            self.metadata["error"] = error

    def set_metadata(self, values: Mapping[str, Any] | None = None, **more: Any) -> None:
        if values:
            self.metadata.update(values)
        if more:
            self.metadata.update(more)

    def rename(self, action: str) -> None:
        self.action = action

    def set_record(self, entity: str | None = None, record_id: Any = None) -> None:
        if entity is not None:
            self.entity = entity
        if record_id is not None:
            self.record_id = str(record_id)

    def end(self) -> None:
        """End a span that was not entered (`with`), such as a nested child's: its row is
        recorded now. The work is `__exit__`'s, which every entered span runs inline."""
        self.__exit__(None, None, None)

    def __enter__(self) -> Span:
        self._token = _CURRENT.set(self)
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: TracebackType | None) -> None:
        # The one place a span ends (`end()` and the async exit call it): this runs for every
        # span, so it records the row itself rather than through another call.
        token = self._token
        if token is not None:
            self._token = None
            try:
                _CURRENT.reset(token)
            except ValueError:  # ended in another context than it started: leave that one be
                pass
        if exc is not None and self.status == "ok":
            self.set_status("error", error_text(exc))
        started = self._started
        elapsed_us = (_perf_ns() - started) // 1000
        trace = self.trace
        if not trace.closed:
            trace.rows.append(
                (
                    trace.trace_id,
                    self.span_id,
                    self.parent_span_id,
                    SYSTEM,
                    self.source,
                    self.component,
                    self.action,
                    self.entity,
                    self.record_id,
                    trace.user_id,
                    elapsed_us,
                    self.status,
                    self.metadata,
                    started + trace.wall_offset,
                )
            )

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(
        self, kind: Any, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, exc, tb)


class _NoSpan:
    """What `start_span` gives when nothing is traced: every method does nothing."""

    __slots__ = ()
    trace = None
    trace_id = None
    span_id = None
    parent_span_id = None
    recording = False

    def set_status(self, status: str, error: str | None = None) -> None:
        pass

    def set_metadata(self, values: Mapping[str, Any] | None = None, **more: Any) -> None:
        pass

    def rename(self, action: str) -> None:
        pass

    def set_record(self, entity: str | None = None, record_id: Any = None) -> None:
        pass

    def end(self) -> None:
        pass

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: TracebackType | None) -> None:
        pass

    async def __aenter__(self) -> _NoSpan:
        return self

    async def __aexit__(
        self, kind: Any, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass


NO_SPAN: Final = _NoSpan()
AnySpan = Span | _NoSpan


def error_text(exc: BaseException) -> str:
    """What a span says about a failure: an API error's code and message (they are what the
    client saw), else only the exception's type (its text may hold values or secrets)."""
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None)
    if isinstance(code, str) and isinstance(message, str):
        return f"{code}: {message}"[:300]
    return type(exc).__name__


def current_span() -> Span | None:
    return _CURRENT.get()


def recording_span() -> Span | None:
    """The current span when its trace still records (a child started now would be stored),
    else None: the one check every hook makes before it records anything."""
    span = _CURRENT.get()
    return None if span is None or span.trace.closed else span


def tracing_active() -> bool:
    """Whether a span started now would be recorded (cheap: one context-variable read)."""
    return recording_span() is not None


def current_trace_id() -> str | None:
    span = _CURRENT.get()
    return None if span is None else span.trace.trace_id


def set_trace_user(user_id: str | None) -> None:
    """The caller of the current trace, as soon as it is authenticated (nothing when untraced)."""
    span = _CURRENT.get()
    if span is not None:
        span.trace.set_user(user_id)


def annotate(**values: Any) -> None:
    """Add `values` to the current span's metadata (nothing when untraced)."""
    span = recording_span()
    if span is not None:
        span.metadata.update(values)


def current_ids() -> tuple[str | None, str | None]:
    """(trace id, span id) of the current span, for rows that carry a trace to later work;
    (None, None) when nothing is traced."""
    span = recording_span()
    if span is None:
        return None, None
    return span.trace.trace_id, span.span_id


def start_span(
    source: str,
    component: str,
    action: str,
    *,
    entity: str | None = None,
    record_id: Any = None,
    metadata: dict[str, Any] | None = None,
) -> AnySpan:
    """A child of the current span, to use as `[async] with start_span(...) as span:`;
    `NO_SPAN` when nothing is traced."""
    parent = recording_span()
    if parent is None:
        return NO_SPAN
    return Span(
        parent.trace,
        parent.span_id,
        source,
        component,
        action,
        entity,
        None if record_id is None else str(record_id),
        metadata,
    )


def record_span(
    parent: Span,
    source: str,
    component: str,
    action: str,
    started_ns: int,
    *,
    entity: str | None = None,
    metadata: dict[str, Any] | None = None,
    error: BaseException | None = None,
) -> None:
    """Record a finished child of `parent` that had no children of its own, started at
    `started_ns` (`time.perf_counter_ns()`), without a `Span` (never current): the cheap path
    for what a traced request does many times (SQL statements, permission checks). With `error`
    it is an `error` span saying what failed."""
    trace = parent.trace
    if trace.closed:
        return
    if metadata is None:
        metadata = {}
    if error is not None:
        metadata["error"] = error_text(error)
    trace.rows.append(
        (
            trace.trace_id,
            _span_prefix + hex(next(_span_numbers))[2:],
            parent.span_id,
            SYSTEM,
            source,
            component,
            action,
            entity,
            None,
            trace.user_id,
            (_perf_ns() - started_ns) // 1000,
            "ok" if error is None else "error",
            metadata,
            started_ns + trace.wall_offset,
        )
    )


def start_root(
    trace: Trace,
    source: str,
    component: str,
    action: str,
    *,
    parent_span_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Span:
    """The first span of `trace` in this process (a request's, or background work continuing a
    request's trace: then `parent_span_id` links it under the span that caused it)."""
    return Span(trace, parent_span_id, source, component, action, metadata=metadata)


class ContinuedTrace:
    """Background work continuing a request's trace (a webhook delivery, a workflow step): its
    root span, parented under the span that caused the work, and the trace closed after it."""

    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def __enter__(self) -> Span:
        return self.span.__enter__()

    def __exit__(self, kind: Any, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self.span.__exit__(None, exc, None)
        finally:
            self.span.trace.close()

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(
        self, kind: Any, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, exc, tb)


def emit_business_event(
    action: str,
    entity: str | None = None,
    record_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    component: str = "api",
) -> bool:
    """Record a point-in-time business event under the current span; False when nothing is
    traced (then nothing is stored)."""
    parent = recording_span()
    if parent is None:
        return False
    trace = parent.trace
    trace.record(
        (
            trace.trace_id,
            new_id(),
            parent.span_id,
            BUSINESS,
            BUSINESS,
            component,
            action,
            entity,
            record_id,
            trace.user_id,
            None,
            None,
            dict(metadata or {}),
            time.time_ns(),
        )
    )
    return True


def traced(
    source: str,
    component: str,
    action: str,
    *,
    entity_arg: int | None = None,
    id_arg: int | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function (plain or coroutine) so each call is a span; `entity_arg` and
    `id_arg` name the positional arguments holding the entity (or its name) and the record id.
    Untraced calls pay one context-variable read (`recording_span()`, inline: no call of its
    own)."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        def span_for(parent: Span, args: tuple[Any, ...]) -> Span:
            return Span(
                parent.trace,
                parent.span_id,
                source,
                component,
                action,
                _arg(args, entity_arg),
                _arg(args, id_arg),
            )

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                parent = _CURRENT.get()
                if parent is None or parent.trace.closed:
                    return await fn(*args, **kwargs)
                with span_for(parent, args):
                    return await fn(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def plain(*args: P.args, **kwargs: P.kwargs) -> R:
            parent = _CURRENT.get()
            if parent is None or parent.trace.closed:
                return fn(*args, **kwargs)
            with span_for(parent, args):
                return fn(*args, **kwargs)

        return plain

    return decorate


def _arg(args: tuple[Any, ...], index: int | None) -> str | None:
    if index is None or index >= len(args):
        return None
    value = args[index]
    return value if isinstance(value, str) else str(getattr(value, "name", value))
