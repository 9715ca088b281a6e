"""The shared edge of the login-like endpoints: every attempt runs inside the login throttle.

`log_in` serves the platform and app logins (same body, same answers, different accounts);
`throttled` wraps any other attempt that proves who the caller is (invite acceptance; later
password reset). The credentials are checked before the throttle is asked, so a malformed body is
a 400 that counts as no attempt; everything after that is counted until it succeeds.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from aiohttp import web

from rocketd.auth.accounts import AccountService, login_credentials
from rocketd.http.bodies import INVALID_REQUEST_BODY, read_strict_object
from rocketd.http.client_address import client_address
from rocketd.http.keys import SERVICES
from rocketd.http.responses import data

AUTH_LOGIN_KEYS = ("email", "password")
# Account scopes of the throttle: the same email on the platform and in each app is another account.
PLATFORM_SCOPE = "platform"


def app_scope(app_name: str) -> str:
    return f"app:{app_name}"


def throttled(
    request: web.Request, scope: str, account: str | None = None
) -> AbstractAsyncContextManager[None]:
    """One attempt by the request's client (on `account` of `scope`, when it names one)."""
    return request.app[SERVICES].login_throttle.attempt(
        address=client_address(request), scope=scope, account=account
    )


async def log_in(request: web.Request, accounts: AccountService, scope: str) -> web.Response:
    body = await read_strict_object(request, AUTH_LOGIN_KEYS, INVALID_REQUEST_BODY, AUTH_LOGIN_KEYS)
    email, password = login_credentials(body.get("email"), body.get("password"))
    async with throttled(request, scope, email):
        pair = await accounts.login(email, password)
    return data(pair.to_json())
