"""The platform API over HTTP: login/refresh/logout and app management, good and bad input."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import structlog

from tests.support.databases import dsn_for, unique_name
from tests.support.helpers import bearer, error_of, platform_login


async def create_app(client: Any, token: str, name: str, **extra: Any) -> Any:
    return await client.post(
        "/api/_platform/apps", json={"name": name, **extra}, headers=bearer(token)
    )


async def test_health_answers_ok_without_auth_or_trace_header(client: Any) -> None:
    resp = await client.get("/health")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}
    assert "X-Trace-ID" not in resp.headers


async def test_ready_reports_database_and_actors(client: Any) -> None:
    resp = await client.get("/ready")
    assert resp.status == 200
    body = await resp.json()
    assert body == {"status": "ready", "checks": {"database": "ok", "actors": "ok"}, "apps": {}}


async def test_platform_login_returns_token_pair_and_flags_default_password(client: Any) -> None:
    data = await platform_login(client)
    assert set(data) == {"access_token", "refresh_token", "default_password"}
    assert data["default_password"] is True


async def test_platform_login_wrong_password_and_unknown_email_get_same_401(client: Any) -> None:
    for email, password in (("platform@localhost", "nope-nope"), ("ghost@x.io", "changeme")):
        resp = await client.post(
            "/api/_platform/auth/login", json={"email": email, "password": password}
        )
        assert resp.status == 401
        err = await error_of(resp)
        assert err == {"code": "UNAUTHORIZED", "message": "Invalid email or password"}


async def test_platform_login_missing_fields(client: Any) -> None:
    resp = await client.post("/api/_platform/auth/login", json={"email": "platform@localhost"})
    assert resp.status == 401
    assert (await error_of(resp))["message"] == "Email and password are required"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1,2]",
        b'"text"',
        b"",
        b'{"email": 5, "password": "x"}',
        b'{"email": "a", "password": "b", "admin": true}',
    ],
)
async def test_platform_login_bad_bodies_are_400(client: Any, body: bytes) -> None:
    resp = await client.post(
        "/api/_platform/auth/login", data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    err = await error_of(resp)
    assert err["code"] == "INVALID_PAYLOAD"
    assert err["message"] == "Invalid request body"


async def test_nul_characters_in_auth_bodies_are_400_never_500(client: Any) -> None:
    """PostgreSQL text cannot hold NUL: a login with one used to be an unauthenticated 500 with a
    traceback in the log."""
    cases = [
        ({"email": "platform@local\x00host", "password": "changeme"}, ["email"]),
        ({"email": "platform@localhost", "password": "change\x00me"}, ["password"]),
        ({"email": "\x00", "password": "\x00"}, ["email", "password"]),
    ]
    with structlog.testing.capture_logs() as logs:
        for body, fields in cases:
            resp = await client.post("/api/_platform/auth/login", json=body)
            assert resp.status == 400, body
            assert await error_of(resp) == {
                "code": "INVALID_PAYLOAD",
                "message": "Invalid request body",
                "details": [
                    {
                        "message": f"{f} must not contain NUL characters",
                        "field": f,
                        "rule": "format",
                    }
                    for f in fields
                ],
            }
        # Refresh tokens are looked up by digest: a NUL is just an unknown token.
        for path, status in (("refresh", 401), ("logout", 200)):
            resp = await client.post(
                f"/api/_platform/auth/{path}", json={"refresh_token": "a\x00b"}
            )
            assert resp.status == status, path
        token = (await platform_login(client))["access_token"]
        resp = await create_app(client, token, unique_name("app"), display_name="Nul\x00Name")
        assert resp.status == 422
        assert (await error_of(resp))["message"] == "display_name must not contain NUL characters"
    assert not [line for line in logs if line["log_level"] in ("error", "critical")], logs


async def test_refresh_rotates_and_reuse_revokes_the_family(client: Any) -> None:
    first = await platform_login(client)
    resp = await client.post(
        "/api/_platform/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert resp.status == 200
    second = (await resp.json())["data"]
    assert second["refresh_token"] != first["refresh_token"]
    # Replaying the rotated token is refused and burns the whole family...
    resp = await client.post(
        "/api/_platform/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert resp.status == 401
    assert (await error_of(resp))["message"] == "Invalid refresh token"
    # ...so the token issued by the legitimate refresh no longer works either.
    resp = await client.post(
        "/api/_platform/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert resp.status == 401


async def test_logout_revokes_refresh_token(client: Any) -> None:
    pair = await platform_login(client)
    resp = await client.post(
        "/api/_platform/auth/logout", json={"refresh_token": pair["refresh_token"]}
    )
    assert resp.status == 200
    assert await resp.json() == {"message": "Logged out"}
    resp = await client.post(
        "/api/_platform/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert resp.status == 401
    resp = await client.post("/api/_platform/auth/logout", json={})
    assert resp.status == 401
    assert (await error_of(resp))["message"] == "Refresh token is required"


async def test_refresh_with_garbage_token_is_401(client: Any) -> None:
    for token in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        resp = await client.post("/api/_platform/auth/refresh", json={"refresh_token": token})
        assert resp.status == 401
        assert (await error_of(resp))["message"] == "Invalid refresh token"


async def test_app_lifecycle_create_list_get_delete(
    client: Any, settings: Any, pg_dsn: str
) -> None:
    token = (await platform_login(client))["access_token"]
    name = unique_name("app")
    resp = await create_app(client, token, name, display_name="My App")
    assert resp.status == 201, await resp.text()
    created = (await resp.json())["data"]
    assert created["name"] == name
    assert created["display_name"] == "My App"
    assert created["db_name"] == f"rocket_{name}"
    assert created["db_driver"] == "postgres"
    assert created["status"] == "active"
    assert "jwt_secret" not in created

    resp = await client.get("/api/_platform/apps", headers=bearer(token))
    listed = (await resp.json())["data"]
    assert [a["name"] for a in listed] == [name]
    assert "jwt_secret" not in listed[0]

    resp = await client.get(f"/api/_platform/apps/{name}", headers=bearer(token))
    assert resp.status == 200
    assert (await resp.json())["data"]["name"] == name

    # The app database exists with its system tables and the seeded admin.
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{name}")) as conn:
        row = conn.execute("select email, roles from _users").fetchone()
    assert row == ("admin@localhost", ["admin"])

    resp = await client.delete(f"/api/_platform/apps/{name}", headers=bearer(token))
    assert resp.status == 200
    assert await resp.json() == {"message": "App deleted"}
    with psycopg.connect(pg_dsn) as conn:
        gone = conn.execute(
            "select count(*) from pg_database where datname = %s", (f"rocket_{name}",)
        ).fetchone()
    assert gone == (0,)
    resp = await client.get(f"/api/_platform/apps/{name}", headers=bearer(token))
    assert resp.status == 404
    assert await error_of(resp) == {"code": "NOT_FOUND", "message": "App not found"}
    resp = await client.post(f"/api/{name}/auth/login", json={"email": "a", "password": "b"})
    assert resp.status == 404
    assert (await error_of(resp))["code"] == "APP_NOT_FOUND"


async def test_creating_an_existing_app_is_409(client: Any) -> None:
    token = (await platform_login(client))["access_token"]
    name = unique_name("app")
    assert (await create_app(client, token, name)).status == 201
    resp = await create_app(client, token, name)
    assert resp.status == 409
    assert await error_of(resp) == {"code": "CONFLICT", "message": f"App already exists: {name}"}


@pytest.mark.parametrize(
    ("name", "message_part"),
    [
        ("", "App name is required"),
        ("MyApp", "lowercase"),
        ("my-app", "lowercase"),
        ("1app", "lowercase"),
        ("app;drop database x", "lowercase"),
        ("app'--", "lowercase"),
        ("_platform", "lowercase"),
        ("postgres", "reserved"),
        ("template1", "reserved"),
        ("pg_catalog", "reserved"),
        ("a" * 57, "at most 56"),
        ("ünï", "lowercase"),
    ],
)
async def test_bad_app_names_are_422_and_leave_nothing(
    client: Any, pg_dsn: str, name: str, message_part: str
) -> None:
    token = (await platform_login(client))["access_token"]
    resp = await create_app(client, token, name)
    assert resp.status == 422
    err = await error_of(resp)
    assert err["code"] == "VALIDATION_FAILED"
    assert message_part in err["message"]
    resp = await client.get("/api/_platform/apps", headers=bearer(token))
    assert (await resp.json())["data"] == []


async def test_app_name_of_maximum_length_works(client: Any) -> None:
    token = (await platform_login(client))["access_token"]
    name = unique_name("m") + "x" * (56 - 11)
    assert len(name) == 56
    resp = await create_app(client, token, name)
    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize(
    "body",
    [
        {"name": 5},
        {"name": "okname", "db_driver": "sqlite"},
        {"name": "okname", "db_driver": "x"},
        {"name": "okname", "display_name": ["x"]},
    ],
)
async def test_wrong_shapes_on_app_create_are_rejected(client: Any, body: dict[str, Any]) -> None:
    token = (await platform_login(client))["access_token"]
    resp = await client.post("/api/_platform/apps", json=body, headers=bearer(token))
    err = await error_of(resp)
    if any(not isinstance(v, str) for v in body.values()):
        # A value of the wrong JSON type is a malformed body: 400 naming the field.
        assert resp.status == 400
        assert err["code"] == "INVALID_PAYLOAD"
        assert err["details"][0]["rule"] == "type"
    else:
        assert resp.status == 422
        assert err["code"] == "VALIDATION_FAILED"


async def test_unknown_keys_and_malformed_json_on_app_create_are_400(client: Any) -> None:
    token = (await platform_login(client))["access_token"]
    resp = await client.post(
        "/api/_platform/apps", json={"name": "okname", "owner": "me"}, headers=bearer(token)
    )
    assert resp.status == 400
    err = await error_of(resp)
    assert err["code"] == "INVALID_PAYLOAD"
    assert err["details"][0]["field"] == "owner"
    resp = await client.post(
        "/api/_platform/apps",
        data=b'{"name": ',
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    assert resp.status == 400
    assert (await error_of(resp))["message"] == "Invalid request body"


async def test_platform_routes_require_a_platform_token(client: Any) -> None:
    resp = await client.get("/api/_platform/apps")
    assert resp.status == 401
    assert (await error_of(resp))["message"] == "Missing auth token"
    resp = await client.get("/api/_platform/apps", headers={"Authorization": "Token abc"})
    assert (await error_of(resp))["message"] == "Invalid auth header format"
    resp = await client.get("/api/_platform/apps", headers=bearer("a.b.c"))
    assert resp.status == 401
    assert (await error_of(resp))["message"] == "Invalid or expired token"


async def test_unknown_app_on_get_and_delete_is_404(client: Any) -> None:
    token = (await platform_login(client))["access_token"]
    resp = await client.get("/api/_platform/apps/nosuchapp", headers=bearer(token))
    assert resp.status == 404
    resp = await client.delete("/api/_platform/apps/nosuchapp", headers=bearer(token))
    assert resp.status == 404
    assert (await error_of(resp))["code"] == "NOT_FOUND"


async def test_oversize_body_is_413_in_error_shape(client: Any) -> None:
    big = b'{"email": "' + b"x" * (70 * 1024) + b'", "password": "y"}'
    resp = await client.post(
        "/api/_platform/auth/login", data=big, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 413
    assert (await error_of(resp))["code"] == "PAYLOAD_TOO_LARGE"


async def test_router_404_and_405_use_error_shape(client: Any) -> None:
    resp = await client.get("/nope")
    assert resp.status == 404
    assert (await error_of(resp))["code"] == "NOT_FOUND"
    resp = await client.put("/api/_platform/apps")
    assert resp.status == 405
    assert (await error_of(resp))["code"] == "METHOD_NOT_ALLOWED"


async def test_trace_id_is_echoed_when_uuid_and_replaced_otherwise(client: Any) -> None:
    tid = "0b7c3f4e-58a5-4a6e-9f0c-2d1d7b0a9e11"
    resp = await client.post("/api/_platform/auth/login", json={}, headers={"X-Trace-ID": tid})
    assert resp.headers["X-Trace-ID"] == tid
    resp = await client.post(
        "/api/_platform/auth/login", json={}, headers={"X-Trace-ID": "'; drop table x"}
    )
    assert resp.headers["X-Trace-ID"] != "'; drop table x"
    assert len(resp.headers["X-Trace-ID"]) == 36


async def test_ai_status_is_not_configured(client: Any) -> None:
    token = (await platform_login(client))["access_token"]
    resp = await client.get("/api/_platform/ai/status", headers=bearer(token))
    assert await resp.json() == {"data": {"configured": False, "model": ""}}
