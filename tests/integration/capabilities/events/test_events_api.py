"""`/api/{app}/_events`: traces of real requests, business events, filters, trees, stats and
bad input, against a real PostgreSQL (spec/events.md)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support.apps import AppClient, new_app
from tests.support.events import trace_rows
from tests.support.helpers import error_of

ROW_KEYS = {
    "id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "event_type",
    "source",
    "component",
    "action",
    "entity",
    "record_id",
    "user_id",
    "duration_ms",
    "status",
    "metadata",
    "created_at",
}

PRODUCT = {
    "name": "product",
    "table": "products",
    "primary_key": {"field": "id", "type": "uuid", "generated": True},
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "title", "type": "string", "required": True},
    ],
}


async def traced_call(app: AppClient, method: str, path: str, body: Any = None) -> str:
    trace_id = str(uuid.uuid4())
    resp = await app.client.request(
        method, app.url(path), json=body, headers={**app.headers, "X-Trace-ID": trace_id}
    )
    assert resp.status < 300, await resp.text()
    assert resp.headers["X-Trace-ID"] == trace_id
    return trace_id


async def test_a_request_is_one_trace_with_its_spans(client: Any) -> None:
    app = await new_app(client)
    await app.ok("POST", "_admin/entities", PRODUCT, 201)
    trace_id = await traced_call(app, "POST", "product", {"title": "lamp"})
    rows = await trace_rows(app, trace_id, at_least=3)
    assert all(set(row) == ROW_KEYS for row in rows)
    by_action = {row["action"]: row for row in rows}
    root = by_action["request"]
    assert (root["source"], root["component"], root["parent_span_id"]) == ("http", "handler", None)
    assert root["metadata"]["method"] == "POST"
    assert root["metadata"]["path"] == f"/api/{app.name}/product"
    assert root["metadata"]["status_code"] == 201
    assert root["status"] == "ok" and root["duration_ms"] > 0
    create = by_action["record.create"]
    assert (create["source"], create["component"], create["entity"]) == (
        "engine",
        "handler",
        "product",
    )
    assert create["parent_span_id"] == root["span_id"]
    assert by_action["auth.validate"]["parent_span_id"] == root["span_id"]
    write = by_action["nested_write.execute"]
    assert write["parent_span_id"] == create["span_id"]
    # the caller is on every row of an authenticated request
    assert len({row["user_id"] for row in rows}) == 1 and rows[0]["user_id"] is not None

    status, body = await app.call("GET", f"_events/trace/{trace_id}")
    assert status == 200, body
    tree = body["data"]
    assert tree["trace_id"] == trace_id
    assert tree["root_span"]["span_id"] == root["span_id"]
    assert tree["total_duration_ms"] == root["duration_ms"]
    assert len(tree["spans"]) == len(rows)
    child_actions = {c["action"] for c in tree["root_span"]["children"]}
    assert {"auth.validate", "record.create"} <= child_actions
    assert tree["critical_path"][0] == root["span_id"]


async def test_errors_mark_the_request_span(client: Any) -> None:
    app = await new_app(client)
    trace_id = str(uuid.uuid4())
    resp = await client.get(
        app.url("nothing_here"), headers={**app.headers, "X-Trace-ID": trace_id}
    )
    assert resp.status == 404
    rows = await trace_rows(app, trace_id)
    root = next(r for r in rows if r["action"] == "request")
    assert root["status"] == "error" and root["metadata"]["status_code"] == 404


async def test_denied_tokens_are_auth_denied_spans(client: Any) -> None:
    app = await new_app(client)
    trace_id = str(uuid.uuid4())
    resp = await client.get(
        app.url("_events"), headers={"Authorization": "Bearer nope", "X-Trace-ID": trace_id}
    )
    assert resp.status == 401
    rows = await trace_rows(app, trace_id)
    denied = next(r for r in rows if r["action"] == "auth.denied")
    assert denied["status"] == "error" and denied["source"] == "auth"
    assert denied["user_id"] is None


async def test_trace_headers(client: Any) -> None:
    app = await new_app(client)
    resp = await client.get(app.url("_events"), headers={**app.headers, "X-Trace-ID": "x'; drop"})
    echoed = resp.headers["X-Trace-ID"]
    assert str(uuid.UUID(echoed)) == echoed  # replaced by a UUID, never stored as sent
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    resp = await client.get(
        app.url("_events"),
        headers={**app.headers, "traceparent": parent, "tracestate": "vendor=1"},
    )
    assert resp.headers["X-Trace-ID"] == "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
    rows = await trace_rows(app, "4bf92f35-77b3-4da6-a3ce-929d0e0e4736")
    root = next(r for r in rows if r["action"] == "request")
    assert root["metadata"]["remote_parent_span_id"] == "00f067aa0ba902b7"
    assert root["metadata"]["tracestate"] == "vendor=1"
    # X-Trace-ID wins over traceparent; a malformed traceparent is ignored
    resp = await client.get(
        app.url("_events"), headers={**app.headers, "traceparent": "00-zz-00-01"}
    )
    assert uuid.UUID(resp.headers["X-Trace-ID"])


async def test_business_events(client: Any) -> None:
    app = await new_app(client)
    trace_id = await traced_call(
        app,
        "POST",
        "_events",
        {"action": "order.confirmed", "entity": "order", "record_id": 42, "metadata": {"a": 1}},
    )
    rows = await trace_rows(app, trace_id, at_least=2)
    event = next(r for r in rows if r["event_type"] == "business")
    root = next(r for r in rows if r["action"] == "request")
    assert (event["source"], event["component"], event["action"]) == (
        "business",
        "api",
        "order.confirmed",
    )
    assert (event["entity"], event["record_id"], event["metadata"]) == ("order", "42", {"a": 1})
    assert event["parent_span_id"] == root["span_id"]
    assert event["duration_ms"] is None and event["status"] is None
    assert event["user_id"] == root["user_id"] is not None


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{nope", 400, "INVALID_PAYLOAD"),
        (b"[1, 2]", 400, "INVALID_PAYLOAD"),
        (b'{"action": "x", "colour": "red"}', 400, "INVALID_PAYLOAD"),
        (b"{}", 422, "VALIDATION_FAILED"),
        (b'{"action": ""}', 422, "VALIDATION_FAILED"),
        (b'{"action": 5}', 422, "VALIDATION_FAILED"),
        (b'{"action": "x", "metadata": [1]}', 422, "VALIDATION_FAILED"),
        (b'{"action": "x", "metadata": "text"}', 422, "VALIDATION_FAILED"),
        (b'{"action": "x", "entity": {"a": 1}}', 422, "VALIDATION_FAILED"),
        (
            b'{"action": "x", "metadata": {"big": "' + b"y" * 20_000 + b'"}}',
            422,
            "VALIDATION_FAILED",
        ),
    ],
)
async def test_bad_business_events(client: Any, body: bytes, status: int, code: str) -> None:
    app = await new_app(client)
    resp = await client.post(
        app.url("_events"),
        data=body,
        headers={**app.headers, "Content-Type": "application/json"},
    )
    assert resp.status == status
    assert (await error_of(resp))["code"] == code


async def test_action_is_required_message(client: Any) -> None:
    app = await new_app(client)
    status, body = await app.call("POST", "_events", {"action": ""})
    assert status == 422
    assert body["error"]["message"] == "action is required"


async def test_who_may_read_and_write(client: Any) -> None:
    app = await new_app(client)
    resp = await client.post(app.url("_events"), json={"action": "x"})
    assert resp.status == 401
    await app.ok(
        "POST", "_admin/users", {"email": "u@example.com", "password": "a-long-password-1"}, 201
    )
    resp = await client.post(
        app.url("auth/login"), json={"email": "u@example.com", "password": "a-long-password-1"}
    )
    user = {"Authorization": f"Bearer {(await resp.json())['data']['access_token']}"}
    resp = await client.post(app.url("_events"), json={"action": "x"}, headers=user)
    assert resp.status == 200
    assert await resp.json() == {"data": {"status": "ok"}}
    for path in ("_events", "_events/stats", f"_events/trace/{uuid.uuid4()}"):
        resp = await client.get(app.url(path), headers=user)
        assert resp.status == 403, path


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("trace_id=not-a-uuid", "trace_id"),
        ("user_id=1", "user_id"),
        ("from=yesterday", "from"),
        ("to=2024-13-01", "to"),
        ("from=2025-02-01T00:00:00Z&to=2025-01-01T00:00:00Z", "from"),
        ("page=abc", "page"),
        ("page=0", "page"),
        ("per_page=1.5", "per_page"),
        ("colour=red", "colour"),
    ],
)
async def test_bad_filters(client: Any, query: str, field: str) -> None:
    app = await new_app(client)
    resp = await client.get(app.url(f"_events?{query}"), headers=app.headers)
    assert resp.status == 400
    err = await error_of(resp)
    assert err["code"] == "BAD_REQUEST"
    assert err["details"][0]["field"] == field


async def test_bad_stats_filters(client: Any) -> None:
    app = await new_app(client)
    for query in ("from=nope", "source=http", "from=2025-02-01&to=2025-01-01"):
        resp = await client.get(app.url(f"_events/stats?{query}"), headers=app.headers)
        assert resp.status == 400, query


async def test_filters_paging_and_sort(client: Any) -> None:
    app = await new_app(client)
    first = await traced_call(app, "POST", "_events", {"action": "one", "entity": "order"})
    await trace_rows(app, first, at_least=2)
    second = await traced_call(app, "POST", "_events", {"action": "two", "entity": "invoice"})
    await trace_rows(app, second, at_least=2)

    status, body = await app.call("GET", "_events?event_type=business&sort=created_at")
    assert status == 200
    assert [r["action"] for r in body["data"]] == ["one", "two"]
    assert body["pagination"]["total"] == 2
    status, body = await app.call("GET", "_events?event_type=business")
    assert [r["action"] for r in body["data"]] == ["two", "one"]
    status, body = await app.call("GET", "_events?entity=invoice&source=business")
    assert [r["action"] for r in body["data"]] == ["two"]
    status, body = await app.call("GET", "_events?event_type=business&per_page=1&page=2")
    assert body["pagination"] == {"page": 2, "per_page": 1, "total": 2}
    assert len(body["data"]) == 1
    status, body = await app.call("GET", "_events?per_page=1000")
    assert body["pagination"]["per_page"] == 100
    status, body = await app.call("GET", "_events?per_page=0")
    assert body["pagination"]["per_page"] == 50
    status, body = await app.call("GET", "_events?from=2999-01-01T00:00:00%2B00:00")
    assert status == 200 and body["data"] == []
    status, body = await app.call("GET", f"_events?status=ok&trace_id={first}&action=request")
    assert len(body["data"]) == 1


async def test_unknown_traces_are_404(client: Any) -> None:
    app = await new_app(client)
    for raw in (str(uuid.uuid4()), "not-a-uuid", "1%27%20or%201=1"):
        resp = await client.get(app.url(f"_events/trace/{raw}"), headers=app.headers)
        assert resp.status == 404, raw
        err = await error_of(resp)
        assert err["code"] == "NOT_FOUND"
        assert err["message"].startswith("Trace not found: ")


async def test_stats(client: Any) -> None:
    app = await new_app(client)
    await app.ok("POST", "_admin/entities", PRODUCT, 201)
    ok = await traced_call(app, "POST", "product", {"title": "a"})
    await trace_rows(app, ok, at_least=3)
    trace_id = str(uuid.uuid4())
    resp = await client.get(
        app.url("product/nope"), headers={**app.headers, "X-Trace-ID": trace_id}
    )
    assert resp.status in (400, 404)
    await trace_rows(app, trace_id)
    status, body = await app.call("GET", "_events/stats")
    assert status == 200, body
    stats = body["data"]
    assert stats["total_events"] >= 4
    assert stats["avg_latency_ms"] > 0 and stats["p95_latency_ms"] >= stats["avg_latency_ms"] / 2
    assert 0 < stats["error_rate"] < 1
    http = next(s for s in stats["by_source"] if s["source"] == "http")
    assert http["count"] >= 2 and http["error_count"] >= 1
    counts = [s["count"] for s in stats["by_source"]]
    assert counts == sorted(counts, reverse=True)
    assert {"source", "entity", "action", "count"} <= set(stats["by_action"][0])
    slow = stats["slowest_traces"]
    assert slow and slow[0]["duration_ms"] >= slow[-1]["duration_ms"]
    status, body = await app.call("GET", "_events/stats?entity=product")
    assert all(s["source"] != "http" for s in body["data"]["by_source"])
    status, body = await app.call("GET", "_events/stats?from=2999-01-01T00:00:00Z")
    assert body["data"] == {
        "total_events": 0,
        "avg_latency_ms": None,
        "p95_latency_ms": None,
        "error_rate": 0,
        "by_source": [],
        "by_action": [],
        "slowest_traces": [],
    }
