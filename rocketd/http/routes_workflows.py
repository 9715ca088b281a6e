"""Workflows over HTTP: `/_admin/workflows` (definitions, admin only) and `/_workflows` (instances:
pending list, read, approve, reject, cancel; any valid token of the app, and an instance only
for who may see it: admins, its current step's assignees, readers of its record).

Admin changes are validated, saved and announced in one transaction, then this instance reloads
before answering (as for rules). Approve/reject act as the authenticated user, never a header.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from rocketd.engine import workflows, workflows_admin
from rocketd.engine.workflows import Verdict
from rocketd.errors import InvalidPayload
from rocketd.http.auth import app_admin, app_token, principal_of
from rocketd.http.bodies import read_json_object
from rocketd.http.keys import APP_ACTOR
from rocketd.http.paths import APP_PATH
from rocketd.http.responses import data


@app_admin
async def list_workflows(request: web.Request) -> web.StreamResponse:
    return data(await workflows_admin.list_workflows(request[APP_ACTOR].pool))


@app_admin
async def get_workflow(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    return data(await workflows_admin.get_workflow(actor.pool, request.match_info["id"]))


@app_admin
async def create_workflow(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    body = await read_json_object(request)
    workflow = await workflows_admin.create_workflow(actor.pool, actor.app_name, body)
    await actor.reload_now()
    return data(workflow.to_json(), 201)


@app_admin
async def update_workflow(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    body = await read_json_object(request)
    workflow = await workflows_admin.update_workflow(
        actor.pool, actor.app_name, request.match_info["id"], body
    )
    await actor.reload_now()
    return data(workflow.to_json())


@app_admin
async def delete_workflow(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    row_id = request.match_info["id"]
    await workflows_admin.delete_workflow(actor.pool, actor.app_name, row_id)
    await actor.reload_now()
    return data({"id": row_id, "deleted": True})


@app_token
async def pending(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    return data(await workflows.pending(actor.pool, actor.snapshot, principal_of(request)))


@app_token
async def get_instance(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    return data(
        await workflows.get_instance(
            actor.pool, actor.snapshot, principal_of(request), request.match_info["id"]
        )
    )


async def _optional_body(request: web.Request) -> dict[str, Any]:
    """The body is optional (`{}` upstream); `step` and `comment` are read when present."""
    if not request.can_read_body:
        return {}
    text = await request.text()
    if not text.strip():
        return {}
    try:
        body = json.loads(text)
    except ValueError:
        raise InvalidPayload("Invalid request body: body is not valid JSON") from None
    return body if isinstance(body, dict) else {}


async def _decide(request: web.Request, verdict: Verdict) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    body = await _optional_body(request)
    instance = await workflows.decide(
        actor.pool, actor.snapshot, principal_of(request), request.match_info["id"], verdict, body
    )
    return data(instance)


@app_token
async def approve(request: web.Request) -> web.StreamResponse:
    return await _decide(request, "approved")


@app_token
async def reject(request: web.Request) -> web.StreamResponse:
    return await _decide(request, "rejected")


@app_token
async def delete_instance(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    await workflows.delete_instance(
        actor.pool, actor.snapshot, principal_of(request), request.match_info["id"]
    )
    return data({"deleted": True})


def add_routes(app: web.Application) -> None:
    r = app.router
    base = f"{APP_PATH}/_admin/workflows"
    r.add_get(base, list_workflows)
    r.add_post(base, create_workflow)
    r.add_get(base + "/{id}", get_workflow)
    r.add_put(base + "/{id}", update_workflow)
    r.add_delete(base + "/{id}", delete_workflow)
    runtime = f"{APP_PATH}/_workflows"
    r.add_get(runtime + "/pending", pending)
    r.add_get(runtime + "/{id}", get_instance)
    r.add_post(runtime + "/{id}/approve", approve)
    r.add_post(runtime + "/{id}/reject", reject)
    r.add_delete(runtime + "/{id}", delete_instance)
