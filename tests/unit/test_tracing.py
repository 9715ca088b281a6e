"""Spans through contextvars, the event buffer's bound and the sampling decision (no I/O)."""

from __future__ import annotations

import asyncio

import pytest

from rocketd.capabilities.events.buffer import EventBuffer
from rocketd.capabilities.events.queries import critical_path, span_tree
from rocketd.capabilities.events.tracer import sampled
from rocketd.errors import NotFound
from rocketd.tracing import (
    NO_SPAN,
    EventRow,
    Trace,
    current_trace_id,
    emit_business_event,
    start_root,
    start_span,
    traced,
    tracing_active,
)

TRACE = "6f1c3b9e-8d2a-4c1e-9f3a-2b7d5e8c1a40"
USER = "0b5f2f0e-1c7a-4d43-8a8e-8f1f0d6c9b21"


def collect() -> tuple[Trace, list[list[EventRow]]]:
    batches: list[list[EventRow]] = []
    return Trace(TRACE, batches.append), batches


async def test_untraced_work_gets_the_no_op_span() -> None:
    assert not tracing_active()
    assert start_span("engine", "handler", "record.get") is NO_SPAN
    assert emit_business_event("x") is False
    async with start_span("a", "b", "c") as span:
        span.set_metadata(k=1)
        span.set_status("error")


async def test_spans_nest_and_reach_the_sink_when_the_trace_closes() -> None:
    trace, batches = collect()
    root = start_root(trace, "http", "handler", "request")
    with root:
        assert current_trace_id() == TRACE
        async with start_span("engine", "handler", "record.get", entity="e", record_id=7) as s:
            s.set_metadata({"count": 2})
            await asyncio.sleep(0)
            assert emit_business_event("order.placed", "order", "7", {"a": 1})
        with pytest.raises(NotFound):
            with start_span("engine", "handler", "record.delete"):
                raise NotFound("Record not found: x")
        trace.set_user(USER)
    assert batches == []  # nothing leaves before the trace closes
    trace.close()
    (rows,) = batches
    by_action = {(row[3], row[6]): row for row in rows}
    request = by_action[("system", "request")]
    assert request[2] is None
    child = by_action[("system", "record.get")]
    assert child[2] == request[1] and child[7] == "e" and child[8] == "7"
    assert child[12] == {"count": 2} and child[11] == "ok"
    business = by_action[("business", "order.placed")]
    assert business[2] == child[1] and business[10] is None
    failed = [row for row in rows if row[11] == "error"]
    assert len(failed) == 1 and failed[0][12]["error"] == "NOT_FOUND: Record not found: x"
    assert {row[9] for row in rows} == {USER}
    # after close: spans under the trace are no longer recorded
    with root:
        assert start_span("a", "b", "c") is NO_SPAN


async def test_a_non_uuid_user_is_not_stored() -> None:
    trace, batches = collect()
    trace.set_user("system")
    with start_root(trace, "http", "handler", "request"):
        pass
    trace.close()
    assert batches[0][0][9] is None


async def test_exception_text_is_only_the_type_for_unexpected_errors() -> None:
    trace, batches = collect()
    with pytest.raises(ValueError):
        with start_root(trace, "http", "handler", "request"):
            raise ValueError("password=hunter2")
    trace.close()
    assert batches[0][0][12]["error"] == "ValueError"


async def test_traced_decorator() -> None:
    @traced("engine", "handler", "record.update", entity_arg=0, id_arg=1)
    async def update(entity: str, pk: str) -> str:
        return current_trace_id() or "none"

    assert await update("e", "1") == "none"
    trace, batches = collect()
    with start_root(trace, "http", "handler", "request"):
        assert await update("e", "1") == TRACE
    trace.close()
    row = next(r for r in batches[0] if r[6] == "record.update")
    assert (row[7], row[8]) == ("e", "1")


def test_buffer_is_bounded_and_counts_what_it_drops() -> None:
    woken: list[int] = []
    buffer = EventBuffer(capacity=5, batch_size=3, wake=lambda: woken.append(1))
    pool = object()
    rows = [(str(i),) for i in range(4)]
    buffer.add("a", pool, list(rows[:2]))  # type: ignore[arg-type]
    assert buffer.size == 2 and not woken
    buffer.add("a", pool, list(rows[2:]))  # type: ignore[arg-type]
    assert woken  # batch size reached
    buffer.add("b", pool, [("b1",), ("b2",)])  # type: ignore[arg-type, list-item]
    # 6 > 5: b's queue had nothing older, so the newest b row is dropped
    assert buffer.size == 5 and buffer.dropped == 1
    buffer.add("a", pool, [("new",)])  # type: ignore[list-item]
    assert buffer.dropped == 2 and buffer.size == 5
    taken = buffer.take("a", 10)
    assert taken is not None
    assert [r[0] for r in taken[1]] == ["1", "2", "3", "new"]  # the oldest went first
    buffer.give_back("a", taken[1][:2])
    assert buffer.size == 3 and buffer.apps_waiting() == ["a", "b"]


def test_sampling_is_decided_by_the_trace_id() -> None:
    ids = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(0, 2**32, 2**22)]
    kept = [i for i in ids if sampled(i, 0.25)]
    assert len(kept) == len(ids) // 4
    assert all(sampled(i, 1.0) for i in ids) and not any(sampled(i, 0.0) for i in ids)
    assert [sampled(i, 0.25) for i in ids] == [sampled(i, 0.25) for i in ids]


def test_span_tree_and_critical_path() -> None:
    def row(span: str, parent: str | None, ms: float, source: str = "engine") -> dict[str, object]:
        return {"span_id": span, "parent_span_id": parent, "duration_ms": ms, "source": source}

    rows = [
        row("b", "r", 2.0),
        row("c", "r", 5.0),
        row("d", "c", 4.0),
        row("e", "missing", 1.0),
        row("r", None, 9.0, "http"),
    ]
    tree = span_tree(TRACE, rows)  # type: ignore[arg-type]
    assert tree["root_span"]["span_id"] == "r" and tree["total_duration_ms"] == 9.0
    assert [c["span_id"] for c in tree["root_span"]["children"]] == ["b", "c"]
    assert tree["critical_path"] == ["r", "c", "d"]
    assert critical_path({"span_id": "x", "children": []}) == ["x"]


def test_a_failing_sink_never_fails_the_traced_work() -> None:
    import rocketd.tracing as tracing

    def refuse(rows: list[EventRow]) -> None:
        raise RuntimeError("buffer gone")

    before = tracing.SINK_FAILURES
    trace = Trace(TRACE, refuse)
    with start_root(trace, "http", "handler", "request"):
        pass
    trace.close()
    assert tracing.SINK_FAILURES == before + 1
