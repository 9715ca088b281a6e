"""OTLP/HTTP export: a traced request reaches a real OTLP receiver on loopback (decoded with
`opentelemetry-proto`) with the same trace id, the parent links of `_events` and the attributes."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rocketd.config import Settings
from tests.support.apps import new_app
from tests.support.events import runtime_client, trace_rows
from tests.support.helpers import wait_until
from tests.support.otlp import OtlpReceiver

SPAN_KIND_SERVER = 2
STATUS_ERROR = 2


@pytest.fixture
async def collector() -> AsyncIterator[OtlpReceiver]:
    receiver = await OtlpReceiver().start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def exporting(
    settings: Settings, collector: OtlpReceiver, aiohttp_client: Any
) -> AsyncIterator[Any]:
    tuned = dataclasses.replace(
        settings.instrumentation, otlp_endpoint=collector.endpoint, flush_interval_ms=20
    )
    async with runtime_client(
        dataclasses.replace(settings, instrumentation=tuned), aiohttp_client
    ) as c:
        yield c


async def test_spans_reach_an_otlp_collector(exporting: Any, collector: OtlpReceiver) -> None:
    app = await new_app(exporting)
    trace_id = str(uuid.uuid4())
    caller_span = "00f067aa0ba902b7"
    resp = await exporting.post(
        app.url("_events"),
        json={"action": "order.placed", "metadata": {"total": 5, "lines": [1, 2]}},
        headers={
            **app.headers,
            "traceparent": f"00-{trace_id.replace('-', '')}-{caller_span}-01",
        },
    )
    assert resp.status == 200 and resp.headers["X-Trace-ID"] == trace_id
    rows = await trace_rows(app, trace_id, at_least=3)
    hex_trace = trace_id.replace("-", "")

    def exported() -> bool:
        return len([s for s in collector.spans if s["trace_id"] == hex_trace]) >= len(rows)

    await wait_until(exported, "the spans at the collector", timeout=15)
    spans = {s["name"]: s for s in collector.spans if s["trace_id"] == hex_trace}
    assert collector.content_types[0] == "application/x-protobuf"
    by_action = {r["action"]: r for r in rows}
    request = spans["request"]
    assert request["kind"] == SPAN_KIND_SERVER
    assert request["parent_span_id"] == caller_span  # under the caller's own span
    assert request["span_id"] == by_action["request"]["span_id"].replace("-", "")[16:]
    assert request["attributes"]["rocketd.app"] == app.name
    assert request["attributes"]["rocketd.status_code"] == 200
    assert request["attributes"]["rocketd.method"] == "POST"
    assert request["end"] > request["start"] > 0
    assert request["resource"]["service.name"] == "rocketd"
    for name in ("auth.validate", "order.placed"):
        assert spans[name]["parent_span_id"] == request["span_id"], name
    business = spans["order.placed"]
    assert business["attributes"]["rocketd.event_type"] == "business"
    assert business["attributes"]["rocketd.total"] == 5
    assert business["attributes"]["rocketd.lines"] == "[1,2]"


async def test_errors_are_exported_as_error_status(exporting: Any, collector: OtlpReceiver) -> None:
    app = await new_app(exporting)
    trace_id = str(uuid.uuid4())
    resp = await exporting.get(app.url("nothing"), headers={**app.headers, "X-Trace-ID": trace_id})
    assert resp.status == 404
    hex_trace = trace_id.replace("-", "")

    def exported() -> bool:
        return any(s["trace_id"] == hex_trace and s["name"] == "request" for s in collector.spans)

    await wait_until(exported, "the request span at the collector", timeout=15)
    request = next(
        s for s in collector.spans if s["trace_id"] == hex_trace and s["name"] == "request"
    )
    assert request["status"] == STATUS_ERROR and request["parent_span_id"] == ""
