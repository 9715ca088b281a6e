"""`/api/{app}/_events`: business events in (any valid token), events, traces and stats out
(admin only)."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from rocketd.capabilities.events import queries
from rocketd.capabilities.events.metrics import METRICS, Metrics
from rocketd.errors import ErrorDetail, ValidationFailed
from rocketd.http.bodies import read_json_object, reject_unknown_keys
from rocketd.http.keys import APP_ACTOR, SERVICES
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import app_admin, app_token
from rocketd.http.responses import data, json_body
from rocketd.json_encoding import encode
from rocketd.tracing import emit_business_event

EVENT_KEYS: Final = ("action", "entity", "record_id", "metadata")
MAX_ACTION_LENGTH: Final = 200
MAX_NAME_LENGTH: Final = 200
MAX_METADATA_BYTES: Final = 16_384


def _invalid(message: str, field: str, rule: str) -> ValidationFailed:
    return ValidationFailed(message, [ErrorDetail(message, field=field, rule=rule)])


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _invalid(f"{key} must be a string", key, "type")
    text = str(value)
    if len(text) > MAX_NAME_LENGTH:
        raise _invalid(f"{key} is longer than {MAX_NAME_LENGTH} characters", key, "max_length")
    return text


def parse_event(body: dict[str, Any]) -> tuple[str, str | None, str | None, dict[str, Any]]:
    """(action, entity, record_id, metadata) of a `POST /_events` body, or a 422."""
    reject_unknown_keys(body, EVENT_KEYS, "Invalid JSON body")
    action = body.get("action")
    if action is None or action == "":
        raise _invalid("action is required", "action", "required")
    if not isinstance(action, str):
        raise _invalid("action must be a string", "action", "type")
    if len(action) > MAX_ACTION_LENGTH:
        raise _invalid(
            f"action is longer than {MAX_ACTION_LENGTH} characters", "action", "max_length"
        )
    metadata = body.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise _invalid("metadata must be a JSON object", "metadata", "type")
    if len(encode(metadata)) > MAX_METADATA_BYTES:
        raise _invalid(
            f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON", "metadata", "max_size"
        )
    return action, _optional_text(body, "entity"), _optional_text(body, "record_id"), metadata


@app_token
async def post_event(request: web.Request) -> web.StreamResponse:
    action, entity, record_id, metadata = parse_event(await read_json_object(request))
    emit_business_event(action, entity, record_id, metadata)  # nothing stored when untraced
    return data({"status": "ok"})


@app_admin
async def list_events(request: web.Request) -> web.StreamResponse:
    rows, pagination = await queries.list_events(request[APP_ACTOR].pool, request.query)
    return json_body({"data": rows, "pagination": pagination})


@app_admin
async def get_trace(request: web.Request) -> web.StreamResponse:
    trace = await queries.get_trace(request[APP_ACTOR].pool, request.match_info["trace_id"])
    return data(trace)


@app_admin
async def get_stats(request: web.Request) -> web.StreamResponse:
    return data(await queries.stats(request[APP_ACTOR].pool, request.query))


async def metrics(request: web.Request) -> web.StreamResponse:
    """`GET /metrics` on the API port (public, like every Prometheus endpoint: prefer
    `metrics.listen` on a private address)."""
    found: Metrics = request.app[SERVICES].directory.services[METRICS]
    return await found.handle(request)


def add_routes(app: web.Application) -> None:
    r = app.router
    settings = app[SERVICES].settings.metrics
    if settings.enabled and not settings.listen:
        r.add_get("/metrics", metrics)
    base = f"{APP_PATH}/_events"
    r.add_post(base, post_event)
    r.add_get(base, list_events)
    r.add_get(base + "/stats", get_stats)
    r.add_get(base + "/trace/{trace_id}", get_trace)
