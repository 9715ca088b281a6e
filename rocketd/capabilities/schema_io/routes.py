"""`/api/{app}/_admin/export` and `/_admin/import` (admin): the app's metadata as one document."""

from __future__ import annotations

import orjson
from aiohttp import web

from rocketd.capabilities.schema_io import document as schema_io
from rocketd.errors import ErrorDetail, InvalidPayload
from rocketd.http.keys import APP_ACTOR, SERVICES
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import app_admin
from rocketd.http.responses import data


@app_admin
async def export_schema(request: web.Request) -> web.StreamResponse:
    return data(await schema_io.export_app(request[APP_ACTOR].pool))


@app_admin
async def import_schema(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    raw = await request.read()
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        detail = ErrorDetail(f"body is not valid JSON: {exc.msg}")
        raise InvalidPayload("Invalid JSON body", [detail]) from exc
    env_prefix = request.app[SERVICES].settings.webhooks.env_prefix
    report = await schema_io.import_document(actor.pool, actor.app_name, doc, env_prefix)
    await actor.reload_now()
    return data(report)


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{APP_PATH}/_admin/export", export_schema)
    app.router.add_post(f"{APP_PATH}/_admin/import", import_schema)
