"""The dynamic data API: `/api/{app}/{entity}[/{id}]` for every entity of every app.

Registered first: the patterns (`rocketd.http.paths`) never match a fixed segment (`auth`,
`_admin`, ...), so the fixed routes still win, and the hot routes resolve without trying them.
Handlers take the app's context (its snapshot as of now) once and hand it to the engine.
"""

from __future__ import annotations

from aiohttp import web

from rocketd.engine import records
from rocketd.engine.read.cursor import cursor_key
from rocketd.http import responses
from rocketd.http.bodies import read_json_object
from rocketd.http.keys import APP_ACTOR, SERVICES
from rocketd.http.paths import ENTITY_PATH, RECORD_PATH
from rocketd.http.policy import app_token, caller_of
from rocketd.http.responses import data


@app_token
async def list_records(request: web.Request) -> web.StreamResponse:
    api = request.app[SERVICES].settings.api
    actor = request[APP_ACTOR]
    page = await records.list_page(
        actor.context,
        caller_of(request),
        request.match_info["entity"],
        request.rel_url.query,
        max_per_page=api.max_per_page,
        default_per_page=api.default_per_page,
        cursor_key=cursor_key(actor.jwt_secret),
    )
    return responses.page(page.records, page.meta, page.encoded)


@app_token
async def get_record(request: web.Request) -> web.StreamResponse:
    record = await records.get_one(
        request[APP_ACTOR].context,
        caller_of(request),
        request.match_info["entity"],
        request.match_info["id"],
        request.rel_url.query.get("include"),
    )
    return data(record)


@app_token
async def create_record(request: web.Request) -> web.StreamResponse:
    app = request[APP_ACTOR].context
    entity = request.match_info["entity"]
    records.require_entity(app.registry, entity)  # 404 before the body
    body = await read_json_object(request)
    return data(await records.create(app, caller_of(request), entity, body), 201)


@app_token
async def update_record(request: web.Request) -> web.StreamResponse:
    app = request[APP_ACTOR].context
    entity = request.match_info["entity"]
    records.require_entity(app.registry, entity)
    body = await read_json_object(request)
    record = await records.update(app, caller_of(request), entity, request.match_info["id"], body)
    return data(record)


@app_token
async def delete_record(request: web.Request) -> web.StreamResponse:
    result = await records.delete(
        request[APP_ACTOR].context,
        caller_of(request),
        request.match_info["entity"],
        request.match_info["id"],
    )
    return data(result)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(ENTITY_PATH, list_records)
    r.add_post(ENTITY_PATH, create_record)
    r.add_get(RECORD_PATH, get_record)
    r.add_put(RECORD_PATH, update_record)
    r.add_delete(RECORD_PATH, delete_record)
