"""`/api/{app}/_admin/entities` and `/_admin/relations`: metadata CRUD (admin only).

Each change is saved, migrated and announced in one transaction (engine.metadata_admin); then this
instance swaps in the new Registry *before* answering, so the next request sees the change.
"""

from __future__ import annotations

from aiohttp import web

from rocketd.engine import metadata_admin
from rocketd.http.auth import app_admin
from rocketd.http.bodies import read_json_object
from rocketd.http.keys import APP_ACTOR
from rocketd.http.paths import APP_PATH
from rocketd.http.responses import data


@app_admin
async def list_entities(request: web.Request) -> web.StreamResponse:
    return data(await metadata_admin.list_entities(request[APP_ACTOR].pool))


@app_admin
async def get_entity(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    return data(await metadata_admin.get_entity(actor.pool, request.match_info["name"]))


@app_admin
async def create_entity(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    body = await read_json_object(request)
    entity = await metadata_admin.create_entity(actor.pool, actor.app_name, body)
    await actor.reload_now()
    return data(entity.to_json(), 201)


@app_admin
async def update_entity(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    body = await read_json_object(request)
    name = request.match_info["name"]
    entity = await metadata_admin.update_entity(actor.pool, actor.app_name, name, body)
    await actor.reload_now()
    return data(entity.to_json())


@app_admin
async def delete_entity(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    name = request.match_info["name"]
    await metadata_admin.delete_entity(actor.pool, actor.app_name, name)
    await actor.reload_now()
    return data({"name": name, "deleted": True})


@app_admin
async def list_relations(request: web.Request) -> web.StreamResponse:
    return data(await metadata_admin.list_relations(request[APP_ACTOR].pool))


@app_admin
async def get_relation(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    return data(await metadata_admin.get_relation(actor.pool, request.match_info["name"]))


@app_admin
async def create_relation(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    body = await read_json_object(request)
    relation = await metadata_admin.create_relation(actor.pool, actor.app_name, body)
    await actor.reload_now()
    return data(relation.to_json(), 201)


@app_admin
async def update_relation(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    body = await read_json_object(request)
    name = request.match_info["name"]
    relation = await metadata_admin.update_relation(actor.pool, actor.app_name, name, body)
    await actor.reload_now()
    return data(relation.to_json())


@app_admin
async def delete_relation(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    name = request.match_info["name"]
    await metadata_admin.delete_relation(actor.pool, actor.app_name, name)
    await actor.reload_now()
    return data({"name": name, "deleted": True})


def add_routes(app: web.Application) -> None:
    r = app.router
    for kind, handlers in (
        ("entities", (list_entities, create_entity, get_entity, update_entity, delete_entity)),
        (
            "relations",
            (list_relations, create_relation, get_relation, update_relation, delete_relation),
        ),
    ):
        listing, create, get, update, delete = handlers
        base = f"{APP_PATH}/_admin/{kind}"
        r.add_get(base, listing)
        r.add_post(base, create)
        r.add_get(base + "/{name}", get)
        r.add_put(base + "/{name}", update)
        r.add_delete(base + "/{name}", delete)
