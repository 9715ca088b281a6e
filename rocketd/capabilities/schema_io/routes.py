"""`/api/{app}/_admin/export`, `/_admin/import` and `/_admin/diff` (admin): the app's metadata as
one document, and what importing one would change."""

from __future__ import annotations

import orjson
from aiohttp import web

from rocketd.capabilities.schema_io import diff as schema_diff
from rocketd.capabilities.schema_io import document as schema_io
from rocketd.errors import ErrorDetail, InvalidPayload
from rocketd.extensions import metadata_kinds
from rocketd.http.crud import admin_call, answer
from rocketd.http.keys import APP_ACTOR, SERVICES
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import app_admin
from rocketd.http.responses import data
from rocketd.http.routes.admin_settings import settings_sections


@app_admin
async def export_schema(request: web.Request) -> web.StreamResponse:
    pool = request[APP_ACTOR].pool
    return data(
        await schema_io.export_app(
            pool, metadata_kinds(request.app[SERVICES].capabilities), settings_sections(request)
        )
    )


async def _document(request: web.Request) -> object:
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        detail = ErrorDetail(f"body is not valid JSON: {exc.msg}")
        raise InvalidPayload("Invalid JSON body", [detail]) from exc


@app_admin
async def import_schema(request: web.Request) -> web.StreamResponse:
    doc = await _document(request)
    actor = request[APP_ACTOR]
    pool = actor.pool
    saved = await schema_io.import_document(
        pool,
        admin_call(request),
        doc,
        metadata_kinds(request.app[SERVICES].capabilities),
        settings_sections(request),
        actor.context_in,
    )
    return await answer(request, saved)


@app_admin
async def diff_schema(request: web.Request) -> web.StreamResponse:
    doc = await _document(request)
    return data(
        await schema_diff.diff_document(
            request[APP_ACTOR].pool,
            admin_call(request),
            doc,
            metadata_kinds(request.app[SERVICES].capabilities),
            settings_sections(request),
        )
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{APP_PATH}/_admin/export", export_schema)
    app.router.add_post(f"{APP_PATH}/_admin/import", import_schema)
    app.router.add_post(f"{APP_PATH}/_admin/diff", diff_schema)
