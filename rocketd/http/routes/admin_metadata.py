"""`/api/{app}/_admin/entities` and `/_admin/relations`: metadata CRUD (admin only).

Each change is saved, migrated and announced in one transaction (engine.metadata_admin); then this
instance swaps in the new snapshot *before* answering, so the next request sees the change.
Entities and relations have the same five routes, so one table of engine functions drives both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from rocketd.engine import metadata_admin
from rocketd.http.bodies import read_json_object
from rocketd.http.keys import APP_ACTOR
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import Handler, app_admin
from rocketd.http.responses import data

Pool = Any


@dataclass(frozen=True)
class MetadataKind:
    """The engine functions behind one kind of metadata addressed by name."""

    path: str
    list_rows: Callable[[Pool], Awaitable[list[dict[str, Any]]]]
    get_row: Callable[[Pool, str], Awaitable[dict[str, Any]]]
    create: Callable[[Pool, str, object], Awaitable[Any]]
    update: Callable[[Pool, str, str, object], Awaitable[Any]]
    delete: Callable[[Pool, str, str], Awaitable[None]]


KINDS = (
    MetadataKind(
        "entities",
        metadata_admin.list_entities,
        metadata_admin.get_entity,
        metadata_admin.create_entity,
        metadata_admin.update_entity,
        metadata_admin.delete_entity,
    ),
    MetadataKind(
        "relations",
        metadata_admin.list_relations,
        metadata_admin.get_relation,
        metadata_admin.create_relation,
        metadata_admin.update_relation,
        metadata_admin.delete_relation,
    ),
)


def handlers_for(kind: MetadataKind) -> dict[str, Handler]:
    @app_admin
    async def list_rows(request: web.Request) -> web.StreamResponse:
        return data(await kind.list_rows(request[APP_ACTOR].pool))

    @app_admin
    async def get_row(request: web.Request) -> web.StreamResponse:
        return data(await kind.get_row(request[APP_ACTOR].pool, request.match_info["name"]))

    @app_admin
    async def create(request: web.Request) -> web.StreamResponse:
        actor = request[APP_ACTOR]
        body = await read_json_object(request)
        saved = await kind.create(actor.pool, actor.app_name, body)
        await actor.reload_now()
        return data(saved.to_json(), 201)

    @app_admin
    async def update(request: web.Request) -> web.StreamResponse:
        actor = request[APP_ACTOR]
        body = await read_json_object(request)
        name = request.match_info["name"]
        saved = await kind.update(actor.pool, actor.app_name, name, body)
        await actor.reload_now()
        return data(saved.to_json())

    @app_admin
    async def delete(request: web.Request) -> web.StreamResponse:
        actor = request[APP_ACTOR]
        name = request.match_info["name"]
        await kind.delete(actor.pool, actor.app_name, name)
        await actor.reload_now()
        return data({"name": name, "deleted": True})

    return {"list": list_rows, "get": get_row, "create": create, "update": update, "delete": delete}


def add_routes(app: web.Application) -> None:
    r = app.router
    for kind in KINDS:
        h = handlers_for(kind)
        base = f"{APP_PATH}/_admin/{kind.path}"
        r.add_get(base, h["list"])
        r.add_post(base, h["create"])
        r.add_get(base + "/{name}", h["get"])
        r.add_put(base + "/{name}", h["update"])
        r.add_delete(base + "/{name}", h["delete"])
