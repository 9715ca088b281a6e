"""Admin routes from `MetadataKind`s: `add_kind_routes(app, kind)` registers the routes of the
operations the kind has, all `@app_admin`, under `/api/{app}/_admin/<kind.path>`:

| operation | route | answer |
|---|---|---|
| list | `GET /_admin/<path>` | `{"data": [row, ...]}` |
| create | `POST /_admin/<path>` | 201 `{"data": ...}` (+ `meta` when the change has any) |
| get | `GET /_admin/<path>/{key}` | `{"data": row}` |
| update | `PUT /_admin/<path>/{key}` | `{"data": ...}` (+ `meta`) |
| delete | `DELETE /_admin/<path>/{key}` | `{"data": {"<key>": ..., "deleted": true}}` |

`{key}` is `{id}` or `{name}` (the kind's `key_column`). After a change, this instance applies the
notices the change sent *before* answering (a `MetadataChanged` reloads its snapshot, a
`UserChanged` drops the user's cached state), so the admin's next request sees the change;
other instances hear the same notices from the database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from rocketd.db.notify import MetadataChanged, Notice, UserChanged
from rocketd.engine.admin import AdminCall, MetadataKind, Saved
from rocketd.http.bodies import read_json_object
from rocketd.http.keys import APP_ACTOR, SERVICES
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import Handler, app_admin, principal_of
from rocketd.http.responses import data, with_warnings

if TYPE_CHECKING:
    from rocketd.actors.app import AppActor


def admin_call(request: web.Request) -> AdminCall:
    """The AdminCall of an authenticated app request."""
    return AdminCall(
        request[APP_ACTOR].app_name, request.app[SERVICES].settings, principal_of(request)
    )


async def apply_notices(actor: AppActor, notices: tuple[Notice, ...]) -> None:
    """Do here, now, what the notices will make every other instance do."""
    for notice in notices:
        if isinstance(notice, MetadataChanged):
            await actor.reload_now()
        elif isinstance(notice, UserChanged):
            actor.forget_users(notice.value or None)


async def answer(request: web.Request, saved: Saved, status: int = 200) -> web.Response:
    """Apply a change's notices to this instance, then render it."""
    await apply_notices(request[APP_ACTOR], saved.notices)
    return data(saved.data, status, with_warnings(saved.meta, saved.warnings))


def kind_handlers(kind: MetadataKind[Any]) -> dict[str, Handler]:
    """The handlers of the kind's operations, by operation name."""
    key = kind.key_column

    @app_admin
    async def list_rows(request: web.Request) -> web.StreamResponse:
        return data(await kind.read_all(request[APP_ACTOR].pool))

    @app_admin
    async def get_row(request: web.Request) -> web.StreamResponse:
        return data(await kind.read_one(request[APP_ACTOR].pool, request.match_info[key]))

    @app_admin
    async def create(request: web.Request) -> web.StreamResponse:
        body = await read_json_object(request)
        saved = await kind.create(request[APP_ACTOR].pool, admin_call(request), body)
        return await answer(request, saved, 201)

    @app_admin
    async def update(request: web.Request) -> web.StreamResponse:
        body = await read_json_object(request)
        pool = request[APP_ACTOR].pool
        saved = await kind.update(pool, admin_call(request), request.match_info[key], body)
        return await answer(request, saved)

    @app_admin
    async def delete(request: web.Request) -> web.StreamResponse:
        pool = request[APP_ACTOR].pool
        saved = await kind.delete(pool, admin_call(request), request.match_info[key])
        return await answer(request, saved)

    handlers: dict[str, Handler] = {
        "list": list_rows,
        "get": get_row,
        "create": create,
        "update": update,
        "delete": delete,
    }
    return {op: h for op, h in handlers.items() if op in kind.operations}


def add_kind_routes(app: web.Application, kind: MetadataKind[Any]) -> None:
    """Register the kind's admin routes (only the operations it has)."""
    handlers = kind_handlers(kind)
    base = f"{APP_PATH}/_admin/{kind.path}"
    one = base + "/{" + kind.key_column + "}"
    routes = (
        ("list", "GET", base),
        ("create", "POST", base),
        ("get", "GET", one),
        ("update", "PUT", one),
        ("delete", "DELETE", one),
    )
    for operation, method, path in routes:
        if operation in handlers:
            app.router.add_route(method, path, handlers[operation])
