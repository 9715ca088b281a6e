"""`/api/{app}/_admin/permissions` (admin only): permission policy CRUD.

Each change is saved and announced in one transaction (engine.permissions_admin); then this
instance reloads its AppSnapshot before answering, so the next request obeys the change.
"""

from __future__ import annotations

from aiohttp import web

from rocketd.capabilities.permissions import admin as permissions_admin
from rocketd.http.bodies import read_json_object
from rocketd.http.keys import APP_ACTOR
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import app_admin
from rocketd.http.responses import data


@app_admin
async def list_permissions(request: web.Request) -> web.StreamResponse:
    return data(await permissions_admin.list_permissions(request[APP_ACTOR].pool))


@app_admin
async def get_permission(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    return data(await permissions_admin.get_permission(actor.pool, request.match_info["id"]))


@app_admin
async def create_permission(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    body = await read_json_object(request)
    row = await permissions_admin.create_permission(actor.pool, actor.app_name, body)
    await actor.reload_now()
    return data(row, 201)


@app_admin
async def update_permission(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    body = await read_json_object(request)
    row = await permissions_admin.update_permission(
        actor.pool, actor.app_name, request.match_info["id"], body
    )
    await actor.reload_now()
    return data(row)


@app_admin
async def delete_permission(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    result = await permissions_admin.delete_permission(
        actor.pool, actor.app_name, request.match_info["id"]
    )
    await actor.reload_now()
    return data(result)


def add_routes(app: web.Application) -> None:
    r = app.router
    base = APP_PATH + "/_admin/permissions"
    r.add_get(base, list_permissions)
    r.add_post(base, create_permission)
    r.add_get(base + "/{id}", get_permission)
    r.add_put(base + "/{id}", update_permission)
    r.add_delete(base + "/{id}", delete_permission)
