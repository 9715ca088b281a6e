"""The platform user's own account over HTTP (me, password, email), the CLI that changes it, and
the refusal to listen beyond loopback while a platform admin still has `changeme`."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
import pytest

from rocketd.config import ServerSettings, Settings
from rocketd.runtime import Runtime, StartRefused
from tests.support.cli import rocketd
from tests.support.databases import dsn_for
from tests.support.helpers import bearer, error_of, platform_login

NEW_PASSWORD = "Kx9-orbit-lantern"


async def put(client: Any, path: str, token: str, body: Any) -> Any:
    return await client.put(f"/api/_platform/auth/{path}", json=body, headers=bearer(token))


async def login(client: Any, email: str, password: str) -> Any:
    return await client.post(
        "/api/_platform/auth/login", json={"email": email, "password": password}
    )


async def test_me_answers_the_callers_id_and_email(client: Any) -> None:
    token = (await platform_login(client))["access_token"]
    resp = await client.get("/api/_platform/auth/me", headers=bearer(token))
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == {"data"} and set(body["data"]) == {"id", "email"}
    assert body["data"]["email"] == "platform@localhost"
    resp = await client.get("/api/_platform/auth/me")
    assert resp.status == 401


async def test_password_change_checks_the_current_password_and_revokes_other_sessions(
    client: Any,
) -> None:
    mine = await platform_login(client)
    other = await platform_login(client)
    token = mine["access_token"]

    resp = await put(
        client, "password", token, {"current_password": "wrong-one", "new_password": NEW_PASSWORD}
    )
    assert resp.status == 422
    err = await error_of(resp)
    assert err["code"] == "VALIDATION_FAILED"
    assert [d["field"] for d in err["details"]] == ["current_password"]

    resp = await put(
        client, "password", token, {"current_password": "changeme", "new_password": "short"}
    )
    assert resp.status == 422
    assert (await error_of(resp))["details"][0]["field"] == "new_password"
    resp = await put(
        client, "password", token, {"current_password": "changeme", "new_password": "password123"}
    )
    assert (resp.status, (await error_of(resp))["details"][0]["rule"]) == (422, "common")

    body = {
        "current_password": "changeme",
        "new_password": NEW_PASSWORD,
        "refresh_token": mine["refresh_token"],
    }
    resp = await put(client, "password", token, body)
    assert resp.status == 200
    assert await resp.json() == {"message": "Password changed"}

    # The other session's refresh token is revoked, the caller's own one is kept.
    resp = await client.post(
        "/api/_platform/auth/refresh", json={"refresh_token": other["refresh_token"]}
    )
    assert resp.status == 401
    resp = await client.post(
        "/api/_platform/auth/refresh", json={"refresh_token": mine["refresh_token"]}
    )
    assert resp.status == 200
    assert (await login(client, "platform@localhost", "changeme")).status == 401
    resp = await login(client, "platform@localhost", NEW_PASSWORD)
    assert resp.status == 200
    assert "default_password" not in (await resp.json())["data"]


async def test_password_change_without_a_kept_session_revokes_every_refresh_token(
    client: Any,
) -> None:
    mine = await platform_login(client)
    body = {"current_password": "changeme", "new_password": NEW_PASSWORD}
    assert (await put(client, "password", mine["access_token"], body)).status == 200
    resp = await client.post(
        "/api/_platform/auth/refresh", json={"refresh_token": mine["refresh_token"]}
    )
    assert resp.status == 401


@pytest.mark.parametrize(
    ("body", "status", "fields"),
    [
        ({"current_password": "changeme"}, 422, ["new_password"]),
        ({}, 422, ["current_password", "new_password"]),
        ({"current_password": "changeme", "new_password": 12345678}, 400, ["new_password"]),
        ({"current_password": "changeme", "new_password": NEW_PASSWORD, "x": 1}, 400, None),
        ([], 400, None),
    ],
)
async def test_password_change_bad_bodies(
    client: Any, body: Any, status: int, fields: list[str] | None
) -> None:
    token = (await platform_login(client))["access_token"]
    resp = await put(client, "password", token, body)
    assert resp.status == status
    err = await error_of(resp)
    if fields is not None:
        assert [d["field"] for d in err["details"]] == fields
    assert (await login(client, "platform@localhost", "changeme")).status == 200


async def test_email_change_renames_the_login_and_refuses_a_taken_email(
    client: Any, settings: Settings
) -> None:
    token = (await platform_login(client))["access_token"]
    with psycopg.connect(settings.database.dsn(), autocommit=True) as conn:
        conn.execute(
            "insert into _platform_users (email, password_hash) values ('Taken@Example.com', 'x')"
        )
    resp = await put(
        client, "email", token, {"current_password": "changeme", "email": "taken@example.COM"}
    )
    assert resp.status == 409
    assert (await error_of(resp))["code"] == "CONFLICT"
    resp = await put(
        client, "email", token, {"current_password": "nope", "email": "ops@example.com"}
    )
    assert resp.status == 422
    resp = await put(
        client, "email", token, {"current_password": "changeme", "email": " ops@example.com"}
    )
    assert (resp.status, (await error_of(resp))["details"][0]["rule"]) == (422, "format")
    resp = await put(
        client, "email", token, {"current_password": "changeme", "email": "ops@example.com"}
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["data"]["email"] == "ops@example.com" and set(body["data"]) == {"id", "email"}
    assert (await login(client, "ops@example.com", "changeme")).status == 200
    assert (await login(client, "platform@localhost", "changeme")).status == 401
    me = await client.get("/api/_platform/auth/me", headers=bearer(token))
    assert (await me.json())["data"] == body["data"]


async def test_wrong_current_passwords_are_throttled_like_logins(client: Any, runtime: Any) -> None:
    token = (await platform_login(client))["access_token"]
    limit = runtime.settings.auth.login_throttle.account_max_failures
    body = {"current_password": "wrong-one", "new_password": NEW_PASSWORD}
    statuses = [(await put(client, "password", token, body)).status for _ in range(limit + 1)]
    assert statuses == [422] * limit + [429]


# --- refusing the default password beyond loopback ------------------------------------------------


def on_host(settings: Settings, host: str, allow: bool = False) -> Settings:
    return dataclasses.replace(
        settings,
        server=ServerSettings(host=host, port=0),
        auth=dataclasses.replace(settings.auth, allow_default_password=allow),
    )


async def started(settings: Settings) -> None:
    runtime = Runtime(settings)
    try:
        await runtime.start(http=False)
    finally:
        await runtime.stop()


async def test_a_non_loopback_host_is_refused_while_the_admin_has_changeme(
    settings: Settings,
) -> None:
    await started(on_host(settings, "127.0.0.1"))  # seeds the admin with changeme
    for host in ("0.0.0.0", "::", "192.0.2.10", "rocketd.example.com"):
        with pytest.raises(StartRefused) as info:
            await started(on_host(settings, host))
        message = str(info.value)
        assert "platform@localhost" in message and "rocketd platform set-password" in message
    await started(on_host(settings, "0.0.0.0", allow=True))
    await started(on_host(settings, "::1"))
    await started(on_host(settings, "localhost"))


def test_cli_set_password_lets_a_public_host_start(
    pg_dsn: str, management_db: str, settings: Settings
) -> None:
    env = {
        "ROCKET_DATABASE_URL": dsn_for(pg_dsn, management_db),
        "ROCKET_AUTH_BCRYPT_COST": "4",
        "ROCKET_LOG_LEVEL": "error",
    }
    out = rocketd("platform", "set-password", "--password-stdin", env=env, stdin="changeme\n")
    assert out.returncode == 1 and "common" in out.stderr  # the policy holds here too
    out = rocketd("platform", "set-password", env=env, stdin="")
    assert out.returncode == 2 and "--password-stdin" in out.stderr
    # Before the first start: the admin is created with this password (never with changeme).
    out = rocketd(
        "platform", "set-password", "--password-stdin", env=env, stdin="Before-1st-boot\n"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "created the platform admin platform@localhost with this password"
    out = rocketd(
        "platform", "set-password", "--password-stdin", env=env, stdin=NEW_PASSWORD + "\n"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("password of platform@localhost changed")
    with psycopg.connect(settings.database.dsn(), autocommit=True) as conn:
        stored = conn.execute("select password_hash from _platform_users").fetchone()
    import bcrypt

    assert stored is not None and bcrypt.checkpw(NEW_PASSWORD.encode(), stored[0].encode())

    out = rocketd("platform", "set-email", "ops@example.com", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "email of platform@localhost changed to ops@example.com"
    out = rocketd("platform", "set-email", "x@example.com", env=env)  # default account is gone
    assert out.returncode == 1 and "No platform user with email platform@localhost" in out.stderr
    out = rocketd(
        "platform",
        "set-password",
        "--email",
        "OPS@example.com",
        "--password-stdin",
        env=env,
        stdin=NEW_PASSWORD + "2\n",
    )
    assert out.returncode == 0, out.stderr


async def test_after_set_password_a_public_host_starts(
    pg_dsn: str, management_db: str, settings: Settings
) -> None:
    await started(on_host(settings, "127.0.0.1"))
    env = {"ROCKET_DATABASE_URL": dsn_for(pg_dsn, management_db), "ROCKET_AUTH_BCRYPT_COST": "4"}
    out = rocketd(
        "platform", "set-password", "--password-stdin", env=env, stdin=NEW_PASSWORD + "\n"
    )
    assert out.returncode == 0, out.stderr
    await started(on_host(settings, "0.0.0.0"))
