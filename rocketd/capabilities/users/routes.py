"""`/api/{app}/_admin/users` and `/_admin/invites` (admin only): the app's accounts.

After a user is changed or deleted, this instance forgets the user's cached state before
answering (other instances hear it from the database notification), so the user's tokens stop
working, or lose removed roles, from the next request on.
"""

from __future__ import annotations

from aiohttp import web

from rocketd.capabilities.users import invites, users
from rocketd.http.bodies import read_json_object
from rocketd.http.keys import APP_ACTOR, SERVICES
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import app_admin, principal_of, public
from rocketd.http.responses import data


def password_policy(request: web.Request) -> users.PasswordPolicy:
    auth = request.app[SERVICES].settings.auth
    return users.PasswordPolicy(auth.password_min_length, auth.bcrypt_cost)


@app_admin
async def list_users(request: web.Request) -> web.StreamResponse:
    return data(await users.list_users(request[APP_ACTOR].pool))


@app_admin
async def get_user(request: web.Request) -> web.StreamResponse:
    return data(await users.get_user(request[APP_ACTOR].pool, request.match_info["id"]))


@app_admin
async def create_user(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    user = await users.create_user(request[APP_ACTOR].pool, body, password_policy(request))
    return data(user, 201)


@app_admin
async def update_user(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    body = await read_json_object(request)
    user = await users.update_user(
        actor.pool, request.match_info["id"], body, password_policy(request)
    )
    actor.forget_users(user["id"])
    return data(user)


@app_admin
async def delete_user(request: web.Request) -> web.StreamResponse:
    actor = request[APP_ACTOR]
    result = await users.delete_user(actor.pool, request.match_info["id"])
    actor.forget_users(result["id"])
    return data(result)


@app_admin
async def list_invites(request: web.Request) -> web.StreamResponse:
    return data(await invites.list_invites(request[APP_ACTOR].pool))


@app_admin
async def create_invite(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    principal = principal_of(request)
    invited_by = invites.inviter(principal.user_id, principal.via_platform)
    return data(await invites.create_invite(request[APP_ACTOR].pool, body, invited_by), 201)


@app_admin
async def create_invites_bulk(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    principal = principal_of(request)
    invited_by = invites.inviter(principal.user_id, principal.via_platform)
    return data(await invites.create_bulk(request[APP_ACTOR].pool, body, invited_by))


@app_admin
async def delete_invite(request: web.Request) -> web.StreamResponse:
    return data(await invites.delete_invite(request[APP_ACTOR].pool, request.match_info["id"]))


@public
async def accept_invite(request: web.Request) -> web.StreamResponse:
    """201 with a token pair and the new user: the invitee is logged in (spec)."""
    actor = request[APP_ACTOR]
    body = await read_json_object(request)  # not JSON: 400 `Invalid JSON body` (spec)
    user = await invites.accept_invite(actor.pool, body, password_policy(request))
    pair = await actor.accounts.issue_for(user.id, list(user.roles))
    return data({**pair.to_json(), "user": user.to_json()}, 201)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post(APP_PATH + "/auth/accept-invite", accept_invite)
    base = APP_PATH + "/_admin/users"
    r.add_get(base, list_users)
    r.add_post(base, create_user)
    r.add_get(base + "/{id}", get_user)
    r.add_put(base + "/{id}", update_user)
    r.add_delete(base + "/{id}", delete_user)
    base = APP_PATH + "/_admin/invites"
    r.add_get(base, list_invites)
    r.add_post(base, create_invite)
    r.add_post(base + "/bulk", create_invites_bulk)
    r.add_delete(base + "/{id}", delete_invite)
