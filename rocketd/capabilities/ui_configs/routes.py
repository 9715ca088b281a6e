"""UI configs: `/api/{app}/_admin/ui-configs` (admin CRUD) and `/_ui/configs`, `/_ui/config/{entity}`
(read, any valid token of the app)."""

from __future__ import annotations

from aiohttp import web

from rocketd.capabilities.ui_configs import ui_configs
from rocketd.http.bodies import read_json_object
from rocketd.http.keys import APP_ACTOR
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import app_admin, app_token
from rocketd.http.responses import data


@app_admin
async def list_configs(request: web.Request) -> web.StreamResponse:
    return data(await ui_configs.list_all(request[APP_ACTOR].pool))


@app_admin
async def get_config(request: web.Request) -> web.StreamResponse:
    return data(await ui_configs.get(request[APP_ACTOR].pool, request.match_info["id"]))


@app_admin
async def create_config(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    return data(await ui_configs.create(request[APP_ACTOR].pool, body), 201)


@app_admin
async def update_config(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    pool = request[APP_ACTOR].pool
    return data(await ui_configs.update(pool, request.match_info["id"], body))


@app_admin
async def delete_config(request: web.Request) -> web.StreamResponse:
    return data(await ui_configs.delete(request[APP_ACTOR].pool, request.match_info["id"]))


@app_token
async def read_defaults(request: web.Request) -> web.StreamResponse:
    return data(await ui_configs.list_default(request[APP_ACTOR].pool))


@app_token
async def read_default(request: web.Request) -> web.StreamResponse:
    pool = request[APP_ACTOR].pool
    return data(await ui_configs.get_default(pool, request.match_info["entity"]))


def add_routes(app: web.Application) -> None:
    r = app.router
    base = f"{APP_PATH}/_admin/ui-configs"
    r.add_get(base, list_configs)
    r.add_post(base, create_config)
    r.add_get(base + "/{id}", get_config)
    r.add_put(base + "/{id}", update_config)
    r.add_delete(base + "/{id}", delete_config)
    r.add_get(f"{APP_PATH}/_ui/configs", read_defaults)
    r.add_get(APP_PATH + "/_ui/config/{entity}", read_default)
