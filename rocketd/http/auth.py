"""Who is calling: bearer-token parsing, dual auth, and the per-route auth policy.

Each handler declares its policy with a decorator (`public`, `platform`, `app_token`,
`app_admin`); the auth middleware reads it from the matched route and authenticates before the
handler runs. App routes accept an app token (the app's secret) or a platform token (the platform
secret, and only with role `platform_admin`: upstream-gaps S9), which counts as an app admin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from aiohttp import web

from rocketd.auth.principal import ADMIN_ROLE, Principal
from rocketd.auth.tokens import Claims, decode_access_token
from rocketd.errors import Forbidden, Unauthorized
from rocketd.http.keys import PRINCIPAL

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


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("Admin access required")


def principal_of(request: web.Request) -> Principal:
    principal = request.get(PRINCIPAL)
    if not isinstance(principal, Principal):
        raise Unauthorized("Authentication required")
    return principal
