"""UI configs: `/api/{app}/_admin/ui-configs` (admin CRUD, from the UI-config kind) and
`/_ui/configs`, `/_ui/config/{entity}` (read, any valid token of the app)."""

from __future__ import annotations

from aiohttp import web

from rocketd.capabilities.ui_configs import ui_configs
from rocketd.http.keys import APP_ACTOR
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import app_token
from rocketd.http.responses import data


@app_token
async def read_defaults(request: web.Request) -> web.StreamResponse:
    return data(await ui_configs.list_default(request[APP_ACTOR].pool))


@app_token
async def read_default(request: web.Request) -> web.StreamResponse:
    pool = request[APP_ACTOR].pool
    return data(await ui_configs.get_default(pool, request.match_info["entity"]))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{APP_PATH}/_ui/configs", read_defaults)
    r.add_get(APP_PATH + "/_ui/config/{entity}", read_default)
