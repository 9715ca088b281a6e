"""`/api/{app}/_admin/rules` and `/_admin/state-machines`: rule and state-machine CRUD (admin only).

Each change is validated (expressions and patterns compiled), saved and announced in one
transaction (engine.rules_admin); then this instance swaps in the new snapshot *before*
answering, so the next write is checked by the new rules.
"""

from __future__ import annotations

from aiohttp import web

from rocketd.capabilities.rules import admin as rules_admin
from rocketd.http.bodies import read_json_object
from rocketd.http.keys import APP_ACTOR
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import app_admin
from rocketd.http.responses import data


@app_admin
async def list_rules(request: web.Request) -> web.StreamResponse:
    return data(await rules_admin.list_rules(request[APP_ACTOR].pool))


@app_admin
async def get_rule(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    return data(await rules_admin.get_rule(actor.pool, request.match_info["id"]))


@app_admin
async def create_rule(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    body = await read_json_object(request)
    rule = await rules_admin.create_rule(actor.pool, actor.app_name, body)
    await actor.reload_now()
    return data(rule.to_json(), 201)


@app_admin
async def update_rule(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    body = await read_json_object(request)
    rule = await rules_admin.update_rule(actor.pool, actor.app_name, request.match_info["id"], body)
    await actor.reload_now()
    return data(rule.to_json())


@app_admin
async def delete_rule(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    row_id = request.match_info["id"]
    await rules_admin.delete_rule(actor.pool, actor.app_name, row_id)
    await actor.reload_now()
    return data({"id": row_id, "deleted": True})


@app_admin
async def list_state_machines(request: web.Request) -> web.StreamResponse:
    return data(await rules_admin.list_state_machines(request[APP_ACTOR].pool))


@app_admin
async def get_state_machine(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    return data(await rules_admin.get_state_machine(actor.pool, request.match_info["id"]))


@app_admin
async def create_state_machine(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    body = await read_json_object(request)
    machine = await rules_admin.create_state_machine(actor.pool, actor.app_name, body)
    await actor.reload_now()
    return data(machine.to_json(), 201)


@app_admin
async def update_state_machine(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    body = await read_json_object(request)
    machine = await rules_admin.update_state_machine(
        actor.pool, actor.app_name, request.match_info["id"], body
    )
    await actor.reload_now()
    return data(machine.to_json())


@app_admin
async def delete_state_machine(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    row_id = request.match_info["id"]
    await rules_admin.delete_state_machine(actor.pool, actor.app_name, row_id)
    await actor.reload_now()
    return data({"id": row_id, "deleted": True})


def add_routes(app: web.Application) -> None:
    r = app.router
    for kind, handlers in (
        ("rules", (list_rules, create_rule, get_rule, update_rule, delete_rule)),
        (
            "state-machines",
            (
                list_state_machines,
                create_state_machine,
                get_state_machine,
                update_state_machine,
                delete_state_machine,
            ),
        ),
    ):
        listing, create, get, update, delete = handlers
        base = f"{APP_PATH}/_admin/{kind}"
        r.add_get(base, listing)
        r.add_post(base, create)
        r.add_get(base + "/{id}", get)
        r.add_put(base + "/{id}", update)
        r.add_delete(base + "/{id}", delete)
