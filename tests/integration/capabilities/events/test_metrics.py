"""`/metrics`: off by default, on the API port or its own address when enabled, scraped and
parsed with prometheus-client's own parser."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rocketd.config import Settings
from rocketd.http.keys import SERVICES
from tests.support.apps import new_app
from tests.support.events import runtime_client
from tests.support.processes import free_port

NOTE = {
    "name": "note",
    "table": "notes",
    "primary_key": {"field": "id", "type": "uuid", "generated": True},
    "fields": [{"name": "id", "type": "uuid"}, {"name": "text", "type": "string"}],
}


@pytest.fixture
async def metered(settings: Settings, aiohttp_client: Any, request: Any) -> AsyncIterator[Any]:
    metrics = dataclasses.replace(settings.metrics, enabled=True, **request.param)
    async with runtime_client(dataclasses.replace(settings, metrics=metrics), aiohttp_client) as c:
        yield c


def samples(text: str) -> dict[str, list[Any]]:
    """Every sample by name, from the text format as prometheus-client parses it."""
    found: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


async def test_metrics_are_off_by_default(client: Any) -> None:
    resp = await client.get("/metrics")
    assert resp.status == 404


@pytest.mark.parametrize("metered", [{}], indirect=True)
async def test_scrape_on_the_api_port(metered: Any) -> None:
    app = await new_app(metered)
    await app.ok("POST", "_admin/entities", NOTE, 201)
    for _ in range(3):
        await app.ok("POST", "note", {"text": "x"}, 201)
    await app.call("GET", "note/not-a-uuid")
    resp = await metered.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    found = samples(await resp.text())
    creates = [
        s
        for s in found["rocketd_http_requests_total"]
        if s.labels["app"] == app.name
        and s.labels["method"] == "POST"
        and s.labels["route"].endswith("/{entity}")
        and s.labels["status"] == "201"
    ]
    assert creates and creates[0].value == 3
    assert creates[0].labels["route"] == "/api/{app}/{entity}"  # the pattern, not the path
    latency = [
        s
        for s in found["rocketd_http_request_duration_seconds_count"]
        if s.labels["app"] == app.name
        and s.labels["method"] == "POST"
        and s.labels["route"] == "/api/{app}/{entity}"
    ]
    assert latency and latency[0].value == 3
    pools = {
        s.labels["state"]: s.value
        for s in found["rocketd_app_pool_connections"]
        if s.labels["app"] == app.name
    }
    assert pools["size"] >= 1 and 0 <= pools["in_use"] <= pools["size"]
    assert [
        s.value for s in found["rocketd_webhook_outbox_backlog"] if s.labels["app"] == app.name
    ] == [0]
    assert [s.value for s in found["rocketd_workflow_backlog"] if s.labels["app"] == app.name] == [
        0
    ]
    assert found["rocketd_event_buffer_depth"][0].value >= 0
    assert found["rocketd_events_written_total"][0].value >= 0
    assert "rocketd_events_dropped_total" in found
    # a made-up app name never becomes a label value
    await metered.get("/api/no_such_app_zz/things")
    found = samples(await (await metered.get("/metrics")).text())
    assert all(s.labels["app"] != "no_such_app_zz" for s in found["rocketd_http_requests_total"])


@pytest.mark.parametrize("metered", [{"listen": f"127.0.0.1:{free_port()}"}], indirect=True)
async def test_scrape_on_its_own_address(metered: Any) -> None:
    assert (await metered.get("/metrics")).status == 404  # not on the API port
    listen = metered.server.app[SERVICES].settings.metrics.listen
    app = await new_app(metered)
    await app.call("GET", "_events")
    async with aiohttp.ClientSession() as http, http.get(f"http://{listen}/metrics") as resp:
        assert resp.status == 200
        found = samples(await resp.text())
    routes = {s.labels["route"] for s in found["rocketd_http_requests_total"]}
    assert "/api/{app}/_events" in routes
