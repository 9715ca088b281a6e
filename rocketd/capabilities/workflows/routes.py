"""Workflows over HTTP: `/_admin/workflows` (definitions, admin only) and `/_workflows` (instances:
pending list, read, approve, reject, cancel; any valid token of the app, and an instance only
for who may see it: admins, its current step's assignees, readers of its record).

`GET /_admin/workflows/{id}/instances` (admin) lists a workflow's latest runs. Admin routes
come from the workflow kind (`capabilities.workflows.admin`): changes are validated,
saved and announced in one transaction, then this instance reloads before answering. Approve/reject act as the authenticated user, never a header.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from rocketd.capabilities.workflows import instances as workflows
from rocketd.capabilities.workflows.instances import Verdict
from rocketd.errors import InvalidPayload
from rocketd.http.keys import APP_ACTOR
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import app_admin, app_token, principal_of
from rocketd.http.responses import data
from rocketd.tracing import start_span


@app_token
async def pending(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    return data(await workflows.pending(actor.context, principal_of(request)))


@app_token
async def get_instance(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    return data(
        await workflows.get_instance(actor.context, principal_of(request), request.match_info["id"])
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
    action = "workflow.approve" if verdict == "approved" else "workflow.reject"
    async with start_span("workflow", "handler", action) as span:
        span.set_metadata(instance_id=request.match_info["id"][:64])
        instance = await workflows.decide_approval(
            actor.context, principal_of(request), request.match_info["id"], verdict, body
        )
    return data(instance)


@app_admin
async def list_instances(request: web.Request) -> web.StreamResponse:
    status = request.query.get("status") or None
    if status is not None and status not in workflows.INSTANCE_STATUSES:
        allowed = ", ".join(workflows.INSTANCE_STATUSES)
        raise InvalidPayload(f"Invalid status: {status[:40]} (one of {allowed})")
    actor = request[APP_ACTOR]
    return data(await workflows.instances_of(actor.context, request.match_info["id"], status))


@app_token
async def approve(request: web.Request) -> web.StreamResponse:
    return await _decide(request, "approved")


@app_token
async def reject(request: web.Request) -> web.StreamResponse:
    return await _decide(request, "rejected")


@app_token
async def delete_instance(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    await workflows.delete_instance(actor.context, principal_of(request), request.match_info["id"])
    return data({"deleted": True})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{APP_PATH}/_admin/workflows/{{id}}/instances", list_instances)
    runtime = f"{APP_PATH}/_workflows"
    r.add_get(runtime + "/pending", pending)
    r.add_get(runtime + "/{id}", get_instance)
    r.add_post(runtime + "/{id}/approve", approve)
    r.add_post(runtime + "/{id}/reject", reject)
    r.add_delete(runtime + "/{id}", delete_instance)
