"""`/api/{app}/_admin/webhooks` and `/_admin/webhook-logs` (admin only).

The webhook routes come from the webhook kind (`capabilities.webhooks.admin`): changes are
validated, saved and announced in one transaction; this instance then swaps in the new snapshot
before answering, so the next write sees them. The log routes are this module's own.
"""

from __future__ import annotations

from aiohttp import web

from rocketd.capabilities.webhooks import admin
from rocketd.http.keys import APP_ACTOR
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import app_admin
from rocketd.http.responses import data


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
    logs = f"{APP_PATH}/_admin/webhook-logs"
    r.add_get(logs, list_logs)
    r.add_get(logs + "/{id}", get_log)
    r.add_post(logs + "/{id}/retry", retry_log)
