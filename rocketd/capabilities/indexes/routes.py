"""`GET /api/{app}/_admin/indexes/guidance`: the lists of the last hour no index serves."""

from __future__ import annotations

from aiohttp import web

from rocketd.capabilities.indexes.guidance import unindexed_lists
from rocketd.http.keys import APP_ACTOR
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import app_admin
from rocketd.http.responses import data


@app_admin
async def index_guidance(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    return data(await unindexed_lists(actor.app_name, actor.pool, actor.registry))


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{APP_PATH}/_admin/indexes/guidance", index_guidance)
