"""Invites: create, bulk, list, revoke, accept with auto-login; tokens random, stored hashed,
single use, expiring; and bad input on every route."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import psycopg
import pytest

from tests.support.apps import AppClient, new_app
from tests.support.databases import dsn_for
from tests.support.helpers import bearer, error_of, platform_login
from tests.support.perms import PASSWORD, add_user, raw, subject

INVITE_KEYS = {"id", "email", "roles", "token", "expires_at", "invited_by", "created_at"}


@pytest.fixture
async def app(client: Any) -> AppClient:
    return await new_app(client)


def app_db(pg_dsn: str, app: AppClient) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}"), autocommit=True)


async def invite(app: AppClient, email: str, roles: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"email": email}
    if roles is not None:
        body["roles"] = roles
    return dict((await app.ok("POST", "_admin/invites", body, 201))["data"])


async def accept(app: AppClient, body: Any) -> Any:
    return await app.client.post(app.url("auth/accept-invite"), json=body)


async def test_create_shape_token_and_stored_digest(app: AppClient, pg_dsn: str) -> None:
    made = await invite(app, "New@Co.com", ["agent"])
    assert set(made) == INVITE_KEYS  # no accepted_at on create (spec)
    assert made["email"] == "New@Co.com"  # single create keeps the email as given
    assert made["roles"] == ["agent"]
    assert uuid.UUID(made["token"]).version == 4
    assert made["invited_by"] == subject(app.token)
    expires = datetime.fromisoformat(made["expires_at"])
    assert timedelta(hours=71, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=72)
    with app_db(pg_dsn, app) as conn:
        rows = conn.execute("select token from _invites").fetchall()
    assert rows == [(hashlib.sha256(made["token"].encode()).hexdigest(),)]


async def test_list_is_newest_first_without_tokens(app: AppClient) -> None:
    first = await invite(app, "a@co.com")
    second = await invite(app, "b@co.com", ["x"])
    listed = (await app.ok("GET", "_admin/invites"))["data"]
    assert [i["id"] for i in listed] == [second["id"], first["id"]]
    assert all(i["token"] is None and i["accepted_at"] is None for i in listed)
    assert set(listed[0]) == INVITE_KEYS | {"accepted_at"}


async def test_platform_admin_invites_with_unknown_inviter(client: Any) -> None:
    app = await new_app(client)
    ptoken = (await platform_login(client))["access_token"]
    resp = await client.post(
        app.url("_admin/invites"), json={"email": "p@co.com"}, headers=bearer(ptoken)
    )
    assert resp.status == 201
    assert (await resp.json())["data"]["invited_by"] is None


async def test_conflicts(app: AppClient) -> None:
    await invite(app, "dup@co.com")
    status, body = await app.call("POST", "_admin/invites", {"email": "dup@co.com"})
    assert status == 409
    assert body["error"] == {
        "code": "CONFLICT",
        "message": "A pending invite already exists for this email",
    }
    status, body = await app.call("POST", "_admin/invites", {"email": "admin@localhost"})
    assert status == 409
    assert body["error"]["message"] == "A user with this email already exists"


async def test_expired_or_accepted_invites_do_not_block_a_new_one(
    app: AppClient, pg_dsn: str
) -> None:
    pending = {"code": "CONFLICT", "message": "A pending invite already exists for this email"}
    await invite(app, "again@co.com")
    assert (await app.call("POST", "_admin/invites", {"email": "again@co.com"})) == (
        409,
        {"error": pending},
    )
    with app_db(pg_dsn, app) as conn:
        conn.execute("update _invites set expires_at = now() - interval '1 second'")
    await invite(app, "again@co.com")  # the expired one no longer counts

    made = await invite(app, "taken@co.com")
    resp = await accept(app, {"token": made["token"], "password": PASSWORD})
    assert resp.status == 201, await resp.text()
    # Accepted: what blocks a new invite now is the user, not the invite...
    status, body = await app.call("POST", "_admin/invites", {"email": "taken@co.com"})
    assert (status, body["error"]["message"]) == (409, "A user with this email already exists")
    (user,) = [
        u for u in (await app.ok("GET", "_admin/users"))["data"] if u["email"] == "taken@co.com"
    ]
    await app.ok("DELETE", f"_admin/users/{user['id']}")
    # ...and once the user is gone, the accepted invite blocks nothing.
    await invite(app, "taken@co.com")


async def test_create_validation(app: AppClient) -> None:
    cases: list[tuple[Any, int, str]] = [
        ({}, 422, "email is required"),
        ({"email": ""}, 422, "email is required"),
        ({"email": None}, 422, "email is required"),
        ({"email": "x" * 300}, 422, "email must be at most 254 characters"),
        ({"email": "a\nb@co.com"}, 422, "email must not contain control"),
        ({"email": 7}, 400, "Invalid JSON body"),
        ({"email": "a@co.com", "roles": "admin"}, 400, "Invalid JSON body"),
        ({"email": "a@co.com", "roles": [{"r": 1}]}, 400, "Invalid JSON body"),
        ({"email": "a@co.com", "token": "mine"}, 400, "Invalid JSON body"),
    ]
    for body, status, message in cases:
        got, payload = await app.call("POST", "_admin/invites", body)
        assert got == status, (body, payload)
        assert payload["error"]["message"].startswith(message), payload
    for data in (b"{", b"[]", b"1", b""):
        resp = await raw(app, "POST", "_admin/invites", data)
        assert resp.status == 400
        assert (await error_of(resp))["message"] == "Invalid JSON body"
    assert (await app.ok("GET", "_admin/invites"))["data"] == []


async def test_accept_creates_the_user_and_logs_in(app: AppClient, pg_dsn: str) -> None:
    made = await invite(app, "joiner@co.com", ["agent", "admin"])
    resp = await accept(app, {"token": made["token"], "password": PASSWORD})
    assert resp.status == 201
    payload = await resp.json()
    data = payload["data"]
    assert set(data) == {"access_token", "refresh_token", "user"}
    user = data["user"]
    assert set(user) == {"id", "email", "roles"}
    assert user["email"] == "joiner@co.com" and user["roles"] == ["agent", "admin"]
    claims = jwt.decode(data["access_token"], options={"verify_signature": False})
    assert claims["sub"] == user["id"] and claims["roles"] == ["agent", "admin"]
    me = AppClient(app.client, app.name, data["access_token"])
    await me.ok("GET", "_admin/users")  # the invited admin is an admin
    resp = await app.client.post(
        app.url("auth/refresh"), json={"refresh_token": data["refresh_token"]}
    )
    assert resp.status == 200
    resp = await app.client.post(
        app.url("auth/login"), json={"email": "joiner@co.com", "password": PASSWORD}
    )
    assert resp.status == 200
    listed = (await app.ok("GET", "_admin/invites"))["data"]
    assert listed[0]["accepted_at"] is not None
    # Single use.
    resp = await accept(app, {"token": made["token"], "password": PASSWORD})
    assert resp.status == 400
    assert await error_of(resp) == {
        "code": "VALIDATION_FAILED",
        "message": "Invite has already been accepted",
        "details": [
            {"message": "Invite has already been accepted", "field": "token", "rule": "invite"}
        ],
    }


async def test_accept_failures(app: AppClient, pg_dsn: str) -> None:
    expired = await invite(app, "late@co.com")
    with app_db(pg_dsn, app) as conn:
        conn.execute("update _invites set expires_at = now() - interval '1 second'")
    taken = await invite(app, "taken@co.com")
    await add_user(app, "taken@co.com", [])
    good = await invite(app, "good@co.com")
    cases: list[tuple[Any, int, str, str]] = [
        (
            {"token": expired["token"], "password": PASSWORD},
            400,
            "VALIDATION_FAILED",
            "Invite has expired",
        ),
        (
            {"token": taken["token"], "password": PASSWORD},
            409,
            "CONFLICT",
            "A user with this email already exists",
        ),
        (
            {"token": str(uuid.uuid4()), "password": PASSWORD},
            404,
            "NOT_FOUND",
            "Invalid invite token",
        ),
        ({"token": "not-a-uuid", "password": PASSWORD}, 404, "NOT_FOUND", "Invalid invite token"),
        ({"token": "x" * 5000, "password": PASSWORD}, 404, "NOT_FOUND", "Invalid invite token"),
        ({"token": "' or 1=1 --", "password": PASSWORD}, 404, "NOT_FOUND", "Invalid invite token"),
        ({"password": PASSWORD}, 422, "VALIDATION_FAILED", "token is required"),
        ({"token": "", "password": PASSWORD}, 422, "VALIDATION_FAILED", "token is required"),
        ({"token": good["token"]}, 422, "VALIDATION_FAILED", "password is required"),
        (
            {"token": good["token"], "password": ""},
            422,
            "VALIDATION_FAILED",
            "password is required",
        ),
        (
            {"token": good["token"], "password": "short"},
            422,
            "VALIDATION_FAILED",
            "password must be at least 8",
        ),
        (
            {"token": good["token"], "password": 12345678},
            400,
            "INVALID_PAYLOAD",
            "Invalid JSON body",
        ),
        ({"token": ["x"], "password": PASSWORD}, 400, "INVALID_PAYLOAD", "Invalid JSON body"),
        (
            {"token": good["token"], "password": PASSWORD, "roles": ["admin"]},
            400,
            "INVALID_PAYLOAD",
            "Invalid JSON body",
        ),
        (
            {"token": good["token"], "password": PASSWORD, "email": "me@evil.io"},
            400,
            "INVALID_PAYLOAD",
            "Invalid JSON body",
        ),
    ]
    for body, status, code, message in cases:
        resp = await accept(app, body)
        assert resp.status == status, (body, await resp.text())
        err = await error_of(resp)
        assert err["code"] == code and err["message"].startswith(message), (body, err)
    for data in (b"{not json", b"[]", b"", b'"t"'):
        resp = await app.client.post(
            app.url("auth/accept-invite"), data=data, headers={"Content-Type": "application/json"}
        )
        assert resp.status == 400
        err = await error_of(resp)
        assert (err["code"], err["message"]) == ("INVALID_PAYLOAD", "Invalid JSON body")
    # None of that made a user; the good invite still works.
    users = [u["email"] for u in (await app.ok("GET", "_admin/users"))["data"]]
    assert "late@co.com" not in users and "good@co.com" not in users
    resp = await accept(app, {"token": good["token"], "password": PASSWORD})
    assert resp.status == 201


async def test_accepted_password_follows_the_policy_with_the_invite_email(app: AppClient) -> None:
    made = await invite(app, "Kimberly.Lee@co.com")
    for password, rule in (
        ("password1", "common"),
        ("changeme", "common"),
        ("kimberly.lee@co.com", "email"),
        ("KIMBERLY.LEE", "email"),
    ):
        resp = await accept(app, {"token": made["token"], "password": password})
        assert resp.status == 422, password
        err = await error_of(resp)
        assert err["details"][0]["rule"] == rule, err
    resp = await accept(app, {"token": made["token"], "password": PASSWORD})
    assert resp.status == 201


async def test_nul_characters_in_accept_bodies_are_no_500(app: AppClient) -> None:
    made = await invite(app, "nul@co.com")
    resp = await accept(app, {"token": "a\x00b", "password": PASSWORD})
    assert resp.status == 404
    resp = await accept(app, {"token": made["token"], "password": "long-enough\x00"})
    assert resp.status == 422
    assert (await error_of(resp))["details"][0]["rule"] == "type"
    status, body = await app.call("POST", "_admin/invites", {"email": "nul\x00@co.com"})
    assert status == 422, body
    status, body = await app.call("POST", "_admin/invites/bulk", {"emails": ["x\x00@co.com"]})
    assert status == 422, body


async def test_concurrent_accepts_make_one_user(app: AppClient) -> None:
    made = await invite(app, "race@co.com")
    results = await asyncio.gather(
        *(accept(app, {"token": made["token"], "password": PASSWORD}) for _ in range(4))
    )
    assert sorted(r.status for r in results) == [201, 400, 400, 400]
    users = [u["email"] for u in (await app.ok("GET", "_admin/users"))["data"]]
    assert users.count("race@co.com") == 1


async def test_concurrent_creates_make_one_pending_invite(app: AppClient) -> None:
    results = await asyncio.gather(
        *(app.call("POST", "_admin/invites", {"email": "twice@co.com"}) for _ in range(4))
    )
    assert sorted(status for status, _ in results) == [201, 409, 409, 409]


async def test_revoke(app: AppClient) -> None:
    made = await invite(app, "revoked@co.com")
    assert await app.ok("DELETE", f"_admin/invites/{made['id']}") == {
        "data": {"id": made["id"], "deleted": True}
    }
    status, body = await app.call("DELETE", f"_admin/invites/{made['id']}")
    assert status == 404
    assert body["error"] == {"code": "NOT_FOUND", "message": f"Invite not found: {made['id']}"}
    status, _ = await app.call("DELETE", "_admin/invites/not-an-id")
    assert status == 404
    resp = await accept(app, {"token": made["token"], "password": PASSWORD})
    assert resp.status == 404


async def test_bulk(app: AppClient) -> None:
    await invite(app, "pending@co.com")
    await add_user(app, "member@co.com", [])
    body = {
        "emails": [
            " New1@Co.com ",
            "new1@co.com",
            "new2@co.com",
            "member@co.com",
            "PENDING@co.com",
        ],
        "roles": ["agent"],
    }
    status, payload = await app.call("POST", "_admin/invites/bulk", body)
    assert status == 200, payload
    result = payload["data"]
    assert [c["email"] for c in result["created"]] == ["new1@co.com", "new2@co.com"]
    assert all(set(c) == {"id", "email", "token", "expires_at"} for c in result["created"])
    assert result["skipped"] == [
        {"email": "member@co.com", "reason": "A user with this email already exists"},
        {"email": "pending@co.com", "reason": "A pending invite already exists for this email"},
    ]
    assert result["summary"] == {"total": 4, "created": 2, "skipped": 2}
    token = result["created"][0]["token"]
    resp = await accept(app, {"token": token, "password": PASSWORD})
    assert resp.status == 201
    assert (await resp.json())["data"]["user"]["roles"] == ["agent"]


async def test_bulk_validation(app: AppClient) -> None:
    required = "emails is required and must be a non-empty array"
    cases: list[tuple[Any, int, str]] = [
        ({}, 422, required),
        ({"emails": []}, 422, required),
        ({"emails": "a@co.com"}, 422, required),
        ({"emails": None}, 422, required),
        ({"emails": ["a@co.com", "  "]}, 422, "emails must not contain blank entries"),
        ({"emails": ["a@co.com", ""]}, 422, "emails must not contain blank entries"),
        ({"emails": [f"u{i}@co.com" for i in range(1001)]}, 422, "emails may hold at most 1000"),
        ({"emails": ["a@co.com", 5]}, 400, "Invalid JSON body"),
        ({"emails": ["a@co.com"], "roles": "x"}, 400, "Invalid JSON body"),
        ({"emails": ["a@co.com"], "extra": 1}, 400, "Invalid JSON body"),
    ]
    for body, status, message in cases:
        got, payload = await app.call("POST", "_admin/invites/bulk", body)
        assert got == status, (body, payload)
        assert payload["error"]["message"].startswith(message), payload
    assert (await app.ok("GET", "_admin/invites"))["data"] == []
