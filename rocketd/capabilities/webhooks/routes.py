"""`/api/{app}/_admin/webhooks` and `/_admin/webhook-logs` (admin only).

Webhook changes are validated, saved and announced in one transaction (rocketd.webhooks.admin);
this instance then swaps in the new snapshot before answering, so the next write sees them.
"""

from __future__ import annotations

from aiohttp import web

from rocketd.capabilities.webhooks import admin
from rocketd.http.bodies import read_json_object
from rocketd.http.keys import APP_ACTOR, SERVICES
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import app_admin
from rocketd.http.responses import data


def _env_prefix(request: web.Request) -> str:
    return request.app[SERVICES].settings.webhooks.env_prefix


@app_admin
async def list_webhooks(request: web.Request) -> web.StreamResponse:
    return data(await admin.list_webhooks(request[APP_ACTOR].pool))


@app_admin
async def get_webhook(request: web.Request) -> web.StreamResponse:
    return data(await admin.get_webhook(request[APP_ACTOR].pool, request.match_info["id"]))


@app_admin
async def create_webhook(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    body = await read_json_object(request)
    row = await admin.create_webhook(actor.pool, actor.app_name, body, _env_prefix(request))
    await actor.reload_now()
    return data(row, 201)


@app_admin
async def update_webhook(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    body = await read_json_object(request)
    row = await admin.update_webhook(
        actor.pool, actor.app_name, request.match_info["id"], body, _env_prefix(request)
    )
    await actor.reload_now()
    return data(row)


@app_admin
async def delete_webhook(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    row_id = request.match_info["id"]
    await admin.delete_webhook(actor.pool, actor.app_name, row_id)
    await actor.reload_now()
    return data({"id": row_id, "deleted": True})


@app_admin
async def list_logs(request: web.Request) -> web.StreamResponse:
    return data(await admin.list_logs(request[APP_ACTOR].pool, request.query))


@app_admin
async def get_log(request: web.Request) -> web.StreamResponse:
    return data(await admin.get_log(request[APP_ACTOR].pool, request.match_info["id"]))


@app_admin
async def retry_log(request: web.Request) -> web.StreamResponse:
    return data(await admin.retry_log(request[APP_ACTOR].pool, request.match_info["id"]))


def add_routes(app: web.Application) -> None:
    r = app.router
    base = f"{APP_PATH}/_admin/webhooks"
    r.add_get(base, list_webhooks)
    r.add_post(base, create_webhook)
    r.add_get(base + "/{id}", get_webhook)
    r.add_put(base + "/{id}", update_webhook)
    r.add_delete(base + "/{id}", delete_webhook)
    logs = f"{APP_PATH}/_admin/webhook-logs"
    r.add_get(logs, list_logs)
    r.add_get(logs + "/{id}", get_log)
    r.add_post(logs + "/{id}/retry", retry_log)
