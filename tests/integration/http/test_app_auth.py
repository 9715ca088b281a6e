"""App auth: login/refresh/logout per app, dual auth (app or platform token), admin check,
and the token attacks the foundation must refuse."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import bcrypt
import jwt
import psycopg
import pytest

from rocketd.auth.tokens import issue_access_token
from tests.support.databases import dsn_for, unique_name
from tests.support.db_users import add_user, app_login
from tests.support.helpers import bearer, error_of, platform_login

AI_STATUS = "/api/{app}/_admin/ai/status"


@pytest.fixture
async def app_name(client: Any) -> str:
    token = (await platform_login(client))["access_token"]
    name = unique_name("app")
    resp = await client.post("/api/_platform/apps", json={"name": name}, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    return name


def app_secret(pg_dsn: str, management_db: str, app: str) -> str:
    with psycopg.connect(dsn_for(pg_dsn, management_db)) as conn:
        row = conn.execute("select jwt_secret from _apps where name = %s", (app,)).fetchone()
    assert row is not None
    return str(row[0])


async def test_seeded_admin_logs_in_and_calls_an_admin_route(client: Any, app_name: str) -> None:
    resp = await app_login(client, app_name, "admin@localhost", "changeme")
    assert resp.status == 200
    data = (await resp.json())["data"]
    claims = jwt.decode(data["access_token"], options={"verify_signature": False})
    assert set(claims) == {"sub", "roles", "iat", "exp"}
    assert claims["roles"] == ["admin"]
    assert claims["exp"] - claims["iat"] == 900
    resp = await client.get(AI_STATUS.format(app=app_name), headers=bearer(data["access_token"]))
    assert resp.status == 200
    assert "X-Trace-ID" in resp.headers


async def test_non_admin_gets_403_on_admin_routes(client: Any, app_name: str, pg_dsn: str) -> None:
    add_user(pg_dsn, app_name, "clerk@x.io", "pw-long-enough", ["clerk"])
    resp = await app_login(client, app_name, "clerk@x.io", "pw-long-enough")
    token = (await resp.json())["data"]["access_token"]
    resp = await client.get(AI_STATUS.format(app=app_name), headers=bearer(token))
    assert resp.status == 403
    assert await error_of(resp) == {"code": "FORBIDDEN", "message": "Admin access required"}


async def test_disabled_user_cannot_log_in_or_refresh(
    client: Any, app_name: str, pg_dsn: str
) -> None:
    add_user(pg_dsn, app_name, "gone@x.io", "pw-long-enough", [], active=False)
    resp = await app_login(client, app_name, "gone@x.io", "pw-long-enough")
    assert resp.status == 401
    assert (await error_of(resp))["message"] == "Account is disabled"
    # The account state is not revealed to someone without the password.
    resp = await app_login(client, app_name, "gone@x.io", "wrong-password")
    assert (await error_of(resp))["message"] == "Invalid email or password"

    add_user(pg_dsn, app_name, "soon@x.io", "pw-long-enough", [])
    pair = (await (await app_login(client, app_name, "soon@x.io", "pw-long-enough")).json())["data"]
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app_name}")) as conn:
        conn.execute("update _users set active = false where email = 'soon@x.io'")
    resp = await client.post(
        f"/api/{app_name}/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert resp.status == 401
    assert (await error_of(resp))["message"] == "Account is disabled"


async def test_refresh_reads_roles_fresh_and_rotates(
    client: Any, app_name: str, pg_dsn: str
) -> None:
    add_user(pg_dsn, app_name, "r@x.io", "pw-long-enough", ["a"])
    pair = (await (await app_login(client, app_name, "r@x.io", "pw-long-enough")).json())["data"]
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app_name}")) as conn:
        conn.execute("update _users set roles = '{a,b}' where email = 'r@x.io'")
    resp = await client.post(
        f"/api/{app_name}/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert resp.status == 200
    new = (await resp.json())["data"]
    claims = jwt.decode(new["access_token"], options={"verify_signature": False})
    assert claims["roles"] == ["a", "b"]
    resp = await client.post(
        f"/api/{app_name}/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert resp.status == 401  # rotated: the old one is spent (and the family revoked)


async def test_expired_refresh_token_is_refused_and_removed(
    client: Any, app_name: str, pg_dsn: str
) -> None:
    pair = (await (await app_login(client, app_name, "admin@localhost", "changeme")).json())["data"]
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app_name}")) as conn:
        conn.execute("update _refresh_tokens set expires_at = now() - interval '1 second'")
    resp = await client.post(
        f"/api/{app_name}/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert resp.status == 401
    assert (await error_of(resp))["message"] == "Refresh token expired"
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app_name}")) as conn:
        assert conn.execute("select count(*) from _refresh_tokens").fetchone() == (0,)


async def test_refresh_tokens_are_stored_as_digests(
    client: Any, app_name: str, pg_dsn: str
) -> None:
    pair = (await (await app_login(client, app_name, "admin@localhost", "changeme")).json())["data"]
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app_name}")) as conn:
        rows = conn.execute("select token::text, token_hash from _refresh_tokens").fetchall()
    assert rows and all(pair["refresh_token"] not in (t, h) for t, h in rows)


async def test_platform_token_is_admin_in_every_app(client: Any, app_name: str) -> None:
    token = (await platform_login(client))["access_token"]
    resp = await client.get(AI_STATUS.format(app=app_name), headers=bearer(token))
    assert resp.status == 200


async def test_app_token_is_worthless_in_another_app_and_on_platform(
    client: Any, app_name: str
) -> None:
    other = unique_name("app")
    ptoken = (await platform_login(client))["access_token"]
    assert (
        await client.post("/api/_platform/apps", json={"name": other}, headers=bearer(ptoken))
    ).status == 201
    token = (await (await app_login(client, app_name, "admin@localhost", "changeme")).json())[
        "data"
    ]["access_token"]
    resp = await client.get(AI_STATUS.format(app=other), headers=bearer(token))
    assert resp.status == 401
    assert (await error_of(resp))["message"] == "Invalid or expired token"
    resp = await client.get("/api/_platform/apps", headers=bearer(token))
    assert resp.status == 401


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


async def test_token_attacks_are_refused(
    client: Any, app_name: str, pg_dsn: str, management_db: str
) -> None:
    secret = app_secret(pg_dsn, management_db, app_name)
    now = int(time.time())
    claims = {
        "sub": "00000000-0000-0000-0000-000000000001",
        "roles": ["admin"],
        "iat": now,
        "exp": now + 600,
    }
    forged = {
        "alg none": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + ".",
        "HS512 with the right secret": jwt.encode(claims, secret, algorithm="HS512"),
        "expired": jwt.encode(
            {**claims, "exp": now - 10, "iat": now - 1000}, secret, algorithm="HS256"
        ),
        "wrong secret": jwt.encode(claims, "x" * 64, algorithm="HS256"),
        "no exp": jwt.encode(
            {"sub": claims["sub"], "roles": ["admin"], "iat": now}, secret, algorithm="HS256"
        ),
        "roles not a list": jwt.encode({**claims, "roles": "admin"}, secret, algorithm="HS256"),
    }
    good = issue_access_token(secret, claims["sub"], ["clerk"], 600)
    head, _payload, sig = good.split(".")
    forged["tampered payload (roles added)"] = f"{head}.{_b64({**claims})}.{sig}"
    for what, token in forged.items():
        resp = await client.get(AI_STATUS.format(app=app_name), headers=bearer(token))
        assert resp.status == 401, what
        assert (await error_of(resp))["message"] == "Invalid or expired token", what


async def test_platform_token_without_platform_admin_role_is_refused(
    client: Any, app_name: str, runtime: Any
) -> None:
    token = issue_access_token(runtime.services.platform_secret, "someone", ["viewer"], 600)
    resp = await client.get(AI_STATUS.format(app=app_name), headers=bearer(token))
    assert resp.status == 401
    resp = await client.get("/api/_platform/apps", headers=bearer(token))
    assert resp.status == 403
    assert (await error_of(resp))["code"] == "FORBIDDEN"


async def test_app_login_with_nul_characters_is_400(client: Any, app_name: str) -> None:
    for body in (
        {"email": "admin@local\x00host", "password": "changeme"},
        {"email": "admin@localhost", "password": "\x00changeme"},
    ):
        resp = await client.post(f"/api/{app_name}/auth/login", json=body)
        assert resp.status == 400
        err = await error_of(resp)
        assert (err["code"], err["message"]) == ("INVALID_PAYLOAD", "Invalid request body")
    # Refresh tokens are looked up by digest: a NUL is just an unknown token.
    for path, status in (("refresh", 401), ("logout", 200)):
        resp = await client.post(f"/api/{app_name}/auth/{path}", json={"refresh_token": "\x00"})
        assert resp.status == status, path


async def test_unknown_app_is_404_before_auth(client: Any) -> None:
    resp = await client.post("/api/nosuchapp/auth/login", json={"email": "a", "password": "b"})
    assert resp.status == 404
    assert await error_of(resp) == {"code": "APP_NOT_FOUND", "message": "App not found: nosuchapp"}
    resp = await client.get(AI_STATUS.format(app="nosuchapp"))
    assert resp.status == 404


async def test_login_rehashes_to_the_configured_cost(
    client: Any, app_name: str, pg_dsn: str
) -> None:
    add_user(pg_dsn, app_name, "old@x.io", "pw-long-enough", [])
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app_name}")) as conn:
        pw_hash = bcrypt.hashpw(b"pw-long-enough", bcrypt.gensalt(rounds=5)).decode()
        conn.execute("update _users set password_hash = %s where email = 'old@x.io'", (pw_hash,))
    assert (await app_login(client, app_name, "old@x.io", "pw-long-enough")).status == 200
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app_name}")) as conn:
        row = conn.execute("select password_hash from _users where email = 'old@x.io'").fetchone()
    assert row is not None and row[0].startswith("$2b$04$")


async def test_ai_generate_says_ai_is_not_configured(client: Any, app_name: str) -> None:
    """The route exists (it was a 404 `route not found`): 501 `NOT_CONFIGURED`, as the contract
    says, in the error shape; only for admins."""
    token = (await platform_login(client))["access_token"]
    url = f"/api/{app_name}/_admin/ai/generate"
    resp = await client.post(url, json={"prompt": "a helpdesk"}, headers=bearer(token))
    assert resp.status == 501
    error = await error_of(resp)
    assert error["code"] == "NOT_CONFIGURED"
    assert error["message"].startswith("AI schema generation is not configured")
    status = await client.get(AI_STATUS.format(app=app_name), headers=bearer(token))
    assert (await status.json())["data"]["configured"] is False
    resp = await client.post(url, json={"prompt": "x"})
    assert resp.status == 401
