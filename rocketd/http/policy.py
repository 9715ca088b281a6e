"""Who is calling: bearer-token parsing, dual auth, and the per-route auth policy.

Each handler declares its policy with a decorator (`public`, `platform`, `app_token`,
`app_admin`); the auth middleware reads it from the matched route and authenticates before the
handler runs. App routes accept an app token (the app's secret) or a platform token (the platform
secret, and only with role `platform_admin`: upstream-gaps S9), which counts as an app admin.

A valid signature is not the end of it: `confirm_user` then checks, through a short-lived cache
(`rocketd.auth.user_states.UserStates`), that the token's user still exists and is active (app users in
the app's `_users`, platform users in `_platform_users`), and drops roles the user no longer
holds, so deleting, deactivating or demoting a user bites within seconds, not at token expiry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any, Final

from aiohttp import web

from rocketd.auth.principal import ADMIN_ROLE, Principal
from rocketd.auth.tokens import Claims, decode_access_token
from rocketd.auth.user_states import UserStates
from rocketd.engine.caller import Caller
from rocketd.errors import Forbidden, Unauthorized
from rocketd.http.keys import PRINCIPAL, TRACE_ID

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

POLICY_ATTR = "__rocketd_auth_policy__"
PLATFORM_ADMIN_ROLE = "platform_admin"


class Policy(Enum):
    PUBLIC = "public"
    PLATFORM = "platform"
    APP_TOKEN = "app_token"  # noqa: S105 - a policy name, not a secret
    APP_ADMIN = "app_admin"


def _declare(policy: Policy) -> Callable[[Handler], Handler]:
    def mark(handler: Handler) -> Handler:
        setattr(handler, POLICY_ATTR, policy)
        return handler

    return mark


public = _declare(Policy.PUBLIC)
platform = _declare(Policy.PLATFORM)
app_token = _declare(Policy.APP_TOKEN)
app_admin = _declare(Policy.APP_ADMIN)


def policy_of(handler: Any) -> Policy:
    return getattr(handler, POLICY_ATTR, Policy.PUBLIC)


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization")
    if not header:
        raise Unauthorized("Missing auth token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token.strip():
        raise Unauthorized("Invalid auth header format")
    return token.strip()


def _platform_principal(claims: Claims | None) -> Principal | None:
    if claims is None or PLATFORM_ADMIN_ROLE not in claims.roles:
        return None
    roles = claims.roles if ADMIN_ROLE in claims.roles else (*claims.roles, ADMIN_ROLE)
    return Principal(claims.sub, roles, via_platform=True)


def authenticate_platform(request: web.Request, platform_secret: str) -> Principal:
    token = bearer_token(request)
    claims = decode_access_token(platform_secret, token)
    if claims is None:
        raise Unauthorized("Invalid or expired token")
    if PLATFORM_ADMIN_ROLE not in claims.roles:
        raise Forbidden("Platform admin access required")
    return Principal(claims.sub, claims.roles, via_platform=True)


def authenticate_app(request: web.Request, app_secret: str, platform_secret: str) -> Principal:
    token = bearer_token(request)
    claims = decode_access_token(app_secret, token)
    if claims is not None:
        return Principal(claims.sub, claims.roles)
    principal = _platform_principal(decode_access_token(platform_secret, token))
    if principal is None:
        raise Unauthorized("Invalid or expired token")
    return principal


async def confirm_user(principal: Principal, users: UserStates) -> Principal:
    """The principal as its user stands now (S9, S13): 401 `Invalid or expired token` when the
    user is gone or inactive; roles the token claims but the user no longer holds are dropped
    (added roles count from the next refresh). A platform user must still be `platform_admin`;
    the app-admin role that platform admins get in every app is theirs by that, not by a row."""
    state = await users.get(principal.user_id)
    if state is None or not state.active:
        raise Unauthorized("Invalid or expired token")
    held = state.roles
    granted = ADMIN_ROLE if principal.via_platform else None
    roles = tuple(r for r in principal.roles if r in held or r == granted)
    if principal.via_platform and PLATFORM_ADMIN_ROLE not in roles:
        raise Unauthorized("Invalid or expired token")
    if len(roles) == len(principal.roles):
        return principal
    return Principal(principal.user_id, roles, principal.via_platform)


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("Admin access required")


def principal_of(request: web.Request) -> Principal:
    principal = request.get(PRINCIPAL)
    if not isinstance(principal, Principal):
        raise Unauthorized("Authentication required")
    return principal


MAX_USER_AGENT: Final = 512


def caller_of(request: web.Request) -> Caller:
    """The authenticated caller with what the request tells about them (for the engine)."""
    agent = request.headers.get("User-Agent")
    return Caller(
        principal_of(request),
        ip=request.remote,
        user_agent=None if agent is None else agent[:MAX_USER_AGENT],
        trace_id=request.get(TRACE_ID),
    )
