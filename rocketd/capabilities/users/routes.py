"""`/api/{app}/_admin/users` and `/_admin/invites` (admin only): the app's accounts; and
`/api/{app}/auth/accept-invite` (public), where an invitee becomes a user.

The CRUD routes come from the user and invite kinds (`users.py`, `invites.py`). After a user is
changed or deleted, this instance forgets the user's cached state before answering (other
instances hear it from the database notification), so the user's tokens stop working, or lose
removed roles, from the next request on. Bulk invites and accepting an invite are this module's
own routes.
"""

from __future__ import annotations

from aiohttp import web

from rocketd.capabilities.users import invites, users
from rocketd.http.bodies import read_json_object
from rocketd.http.keys import APP_ACTOR, SERVICES
from rocketd.http.login import app_scope, throttled
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import app_admin, principal_of, public
from rocketd.http.responses import data


def password_policy(request: web.Request) -> users.PasswordPolicy:
    return users.password_policy(request.app[SERVICES].settings)


@app_admin
async def create_invites_bulk(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    principal = principal_of(request)
    invited_by = invites.inviter(principal.user_id, principal.via_platform)
    return data(await invites.create_bulk(request[APP_ACTOR].pool, body, invited_by))


@public
async def accept_invite(request: web.Request) -> web.StreamResponse:
    """201 with a token pair and the new user: the invitee is logged in (spec). Throttled per
    client address: each refused token counts as a failed attempt."""
    actor = request[APP_ACTOR]
    body = await read_json_object(request)  # not JSON: 400 `Invalid JSON body` (spec)
    policy = password_policy(request)
    token, password = invites.parse_accept_body(body, policy)
    async with throttled(request, app_scope(actor.app_name)):
        user = await invites.accept_invite(actor.pool, token, password, policy)
    pair = await actor.accounts.issue_for(user.id, list(user.roles))
    return data({**pair.to_json(), "user": user.to_json()}, 201)


def add_routes(app: web.Application) -> None:
    app.router.add_post(APP_PATH + "/_admin/invites/bulk", create_invites_bulk)
    app.router.add_post(APP_PATH + "/auth/accept-invite", accept_invite)
