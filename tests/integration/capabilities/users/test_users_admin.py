"""Users admin (`/api/{app}/_admin/users`): CRUD, the password policy, C28 on PUT, and what a
change does to the user's tokens (deactivation, deletion, role removal, other instances)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest
import structlog

from rocketd.http.keys import PLATFORM_USERS
from tests.support.apps import AppClient, new_app
from tests.support.databases import dsn_for
from tests.support.helpers import bearer, error_of, platform_login, wait_until
from tests.support.perms import PASSWORD, add_user, as_user, login_pair, raw

USER_KEYS = {"id", "email", "roles", "active", "created_at", "updated_at"}


@pytest.fixture
async def app(client: Any) -> AppClient:
    return await new_app(client)


def no_secrets(payload: Any, *passwords: str) -> None:
    text = json.dumps(payload)
    assert "password_hash" not in text and "$2b$" not in text, text
    for password in passwords:
        assert password not in text


async def test_create_get_list_and_delete(app: AppClient) -> None:
    user = await add_user(app, "zed@x.io", ["agent", "Support"])
    assert set(user) == USER_KEYS
    assert user["email"] == "zed@x.io"
    assert user["roles"] == ["agent", "Support"]
    assert user["active"] is True
    assert user["created_at"].endswith("Z")
    no_secrets(user, PASSWORD)

    other = await add_user(app, "amy@x.io", [], active=False)
    assert other["active"] is False and other["roles"] == []
    listed = (await app.ok("GET", "_admin/users"))["data"]
    assert [u["email"] for u in listed] == ["admin@localhost", "amy@x.io", "zed@x.io"]
    no_secrets(listed, PASSWORD)

    got = (await app.ok("GET", f"_admin/users/{user['id']}"))["data"]
    assert got == user
    deleted = await app.ok("DELETE", f"_admin/users/{user['id']}")
    assert deleted == {"data": {"id": user["id"], "deleted": True}}
    for method in ("GET", "DELETE", "PUT"):
        status, body = await app.call(method, f"_admin/users/{user['id']}", {"roles": []})
        assert status == 404
        assert body["error"] == {"code": "NOT_FOUND", "message": f"User not found: {user['id']}"}


async def test_malformed_ids_are_404(app: AppClient) -> None:
    for bad in ("not-a-uuid", "1", "x" * 300, "%27%20or%201%3D1"):
        status, body = await app.call("GET", f"_admin/users/{bad}")
        assert status == 404, bad
        assert body["error"]["code"] == "NOT_FOUND"
        assert body["error"]["message"].startswith("User not found: ")
        assert len(body["error"]["message"]) < 150


async def test_create_validation(app: AppClient) -> None:
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"password": PASSWORD}, 422, "email is required"),
        ({"email": "", "password": PASSWORD}, 422, "email is required"),
        ({"email": "a@x.io"}, 422, "password is required"),
        ({"email": "a@x.io", "password": ""}, 422, "password is required"),
        ({"email": "a@x.io", "password": "short"}, 422, "password must be at least 8 characters"),
        ({"email": "a@x.io", "password": "é" * 40}, 422, "password must be at most 72 bytes"),
        ({"email": "a@x.io", "password": "long\x00enough"}, 422, "password must not contain NUL"),
        ({"email": "a" * 300, "password": PASSWORD}, 422, "email must be at most 254 characters"),
        ({"email": "a\x00@x.io", "password": PASSWORD}, 422, "email must not contain control"),
        ({"email": " a@x.io", "password": PASSWORD}, 422, "email must not contain control"),
        (
            {"email": "a@x.io", "password": PASSWORD, "roles": [""]},
            422,
            "roles[0] must not be blank",
        ),
        ({"email": 5, "password": PASSWORD}, 400, "Invalid JSON body"),
        ({"email": "a@x.io", "password": 12345678}, 400, "Invalid JSON body"),
        ({"email": "a@x.io", "password": PASSWORD, "roles": "admin"}, 400, "Invalid JSON body"),
        ({"email": "a@x.io", "password": PASSWORD, "roles": [1]}, 400, "Invalid JSON body"),
        ({"email": "a@x.io", "password": PASSWORD, "active": "yes"}, 400, "Invalid JSON body"),
        ({"email": "a@x.io", "password": PASSWORD, "is_admin": True}, 400, "Invalid JSON body"),
    ]
    for body, status, message in cases:
        got, payload = await app.call("POST", "_admin/users", body)
        assert got == status, (body, payload)
        err = payload["error"]
        assert err["code"] == ("VALIDATION_FAILED" if status == 422 else "INVALID_PAYLOAD")
        assert err["message"].startswith(message), (body, err)
        no_secrets(payload, PASSWORD)
    # The password policy names its rule.
    _, payload = await app.call("POST", "_admin/users", {"email": "a@x.io", "password": "short"})
    assert payload["error"]["details"] == [
        {
            "message": "password must be at least 8 characters",
            "field": "password",
            "rule": "min_length",
        }
    ]
    listed = (await app.ok("GET", "_admin/users"))["data"]
    assert [u["email"] for u in listed] == ["admin@localhost"]  # nothing half-written


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b'"text"', b"", b"null", b"\xff\xfe"])
async def test_bodies_that_are_not_objects_are_400(app: AppClient, data: bytes) -> None:
    for method, path in (("POST", "_admin/users"), ("PUT", f"_admin/users/{uuid.uuid4()}")):
        resp = await raw(app, method, path, data)
        assert resp.status == 400
        assert (await error_of(resp))["code"] == "INVALID_PAYLOAD"


async def test_oversize_body_is_413(app: AppClient) -> None:
    body = json.dumps({"email": "a@x.io", "password": PASSWORD, "roles": ["r" * 50] * 5000})
    resp = await raw(app, "POST", "_admin/users", body.encode())
    assert resp.status == 413
    assert (await error_of(resp))["code"] == "PAYLOAD_TOO_LARGE"


async def test_duplicate_email_is_409(app: AppClient) -> None:
    await add_user(app, "dup@x.io", [])
    status, body = await app.call(
        "POST", "_admin/users", {"email": "dup@x.io", "password": PASSWORD}
    )
    assert status == 409
    assert body["error"] == {"code": "CONFLICT", "message": "A user with this email already exists"}
    other = await add_user(app, "other@x.io", [])
    status, body = await app.call("PUT", f"_admin/users/{other['id']}", {"email": "dup@x.io"})
    assert status == 409
    assert body["error"]["code"] == "CONFLICT"


async def test_common_passwords_and_the_own_email_are_refused(app: AppClient) -> None:
    """`password` used to pass (length was the only check)."""
    common = ("password", "Password1", "qwerty123", "iloveyou", "changeme", "CHANGEME")
    for password in common:
        status, body = await app.call(
            "POST", "_admin/users", {"email": "new@x.io", "password": password}
        )
        assert status == 422, password
        assert body["error"]["details"] == [
            {
                "message": "password is one of the most common passwords;"
                " choose one that is harder to guess",
                "field": "password",
                "rule": "common",
            }
        ]
        no_secrets(body, *([password] if password != "password" else []))  # a word of the message
    for password in ("jane.doe@x.io", "Jane.Doe@X.io", "jane.doe", "JANE.DOE"):
        status, body = await app.call(
            "POST", "_admin/users", {"email": "jane.doe@x.io", "password": password}
        )
        assert status == 422, password
        assert body["error"]["details"][0]["rule"] == "email"
        assert body["error"]["message"] == "password must not be the account's email address"
    user = await add_user(app, "jane.doe@x.io", [])
    # A new password alone is checked against the stored email; with a new email, against it.
    for change in (
        {"password": "jane.doe"},
        {"password": "changeme"},
        {"email": "j.roe@x.io", "password": "j.roe"},
    ):
        status, body = await app.call("PUT", f"_admin/users/{user['id']}", change)
        assert status == 422, (change, body)
    await app.ok("PUT", f"_admin/users/{user['id']}", {"password": "jane.doe-and-more"})
    await login_pair(app, "jane.doe@x.io", "jane.doe-and-more")


async def test_put_keeps_what_it_does_not_send(app: AppClient) -> None:
    user = await add_user(app, "keep@x.io", ["agent"], active=True)
    got = (await app.ok("PUT", f"_admin/users/{user['id']}", {"roles": ["lead"]}))["data"]
    assert got["email"] == "keep@x.io" and got["active"] is True and got["roles"] == ["lead"]
    got = (await app.ok("PUT", f"_admin/users/{user['id']}", {"email": "kept@x.io"}))["data"]
    assert got["roles"] == ["lead"] and got["active"] is True
    # The full echo of a GET is a valid PUT body (read-only keys are ignored).
    got = (await app.ok("PUT", f"_admin/users/{user['id']}", got))["data"]
    assert got["email"] == "kept@x.io"
    # An explicitly empty email is still required; an empty password leaves it unchanged.
    status, body = await app.call("PUT", f"_admin/users/{user['id']}", {"email": ""})
    assert status == 422 and body["error"]["message"] == "email is required"
    await app.ok("PUT", f"_admin/users/{user['id']}", {"password": ""})
    await login_pair(app, "kept@x.io")


async def test_password_reset_and_no_password_in_logs(app: AppClient, pg_dsn: str) -> None:
    user = await add_user(app, "pw@x.io", [])
    old = await login_pair(app, "pw@x.io")
    new_password = "a-brand-new-secret-9"
    with structlog.testing.capture_logs() as logs:
        await app.ok("PUT", f"_admin/users/{user['id']}", {"password": new_password})
        await app.call("PUT", f"_admin/users/{user['id']}", {"password": "tiny"})
    assert new_password not in repr(logs) and "tiny" not in repr(logs)
    resp = await app.client.post(
        app.url("auth/login"), json={"email": "pw@x.io", "password": PASSWORD}
    )
    assert resp.status == 401
    await login_pair(app, "pw@x.io", new_password)
    # A new password ends the sessions that were open.
    resp = await app.client.post(
        app.url("auth/refresh"), json={"refresh_token": old["refresh_token"]}
    )
    assert resp.status == 401
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        row = conn.execute("select password_hash from _users where id = %s", (user["id"],))
        stored = row.fetchone()
    assert stored is not None and stored[0].startswith("$2b$") and new_password not in stored[0]


async def test_deactivation_stops_tokens_at_once(app: AppClient) -> None:
    user = await add_user(app, "gone@x.io", ["admin"])
    pair = await login_pair(app, "gone@x.io")
    me = AppClient(app.client, app.name, pair["access_token"])
    await me.ok("GET", "_admin/users")
    await app.ok("PUT", f"_admin/users/{user['id']}", {"active": False})
    status, body = await me.call("GET", "_admin/users")
    assert status == 401
    assert body["error"] == {"code": "UNAUTHORIZED", "message": "Invalid or expired token"}
    resp = await app.client.post(
        app.url("auth/refresh"), json={"refresh_token": pair["refresh_token"]}
    )
    assert resp.status == 401
    resp = await app.client.post(
        app.url("auth/login"), json={"email": "gone@x.io", "password": PASSWORD}
    )
    assert (await error_of(resp))["message"] == "Account is disabled"
    # Reactivated: a new login works again, the old refresh token stays dead.
    await app.ok("PUT", f"_admin/users/{user['id']}", {"active": True})
    await login_pair(app, "gone@x.io")


async def test_deleted_user_token_is_refused(app: AppClient) -> None:
    user = await add_user(app, "del@x.io", ["admin"])
    pair = await login_pair(app, "del@x.io")
    me = AppClient(app.client, app.name, pair["access_token"])
    await me.ok("GET", "_admin/users")
    await app.ok("DELETE", f"_admin/users/{user['id']}")
    status, body = await me.call("GET", "_admin/users")
    assert status == 401
    assert body["error"]["message"] == "Invalid or expired token"
    resp = await app.client.post(
        app.url("auth/refresh"), json={"refresh_token": pair["refresh_token"]}
    )
    assert resp.status == 401


async def test_removed_role_stops_counting_before_the_token_expires(app: AppClient) -> None:
    user = await add_user(app, "demoted@x.io", ["admin", "agent"])
    me = await as_user(app, "demoted@x.io")
    await me.ok("GET", "_admin/users")
    await app.ok("PUT", f"_admin/users/{user['id']}", {"roles": ["agent"]})
    status, body = await me.call("GET", "_admin/users")
    assert status == 403
    assert body["error"] == {"code": "FORBIDDEN", "message": "Admin access required"}
    # Given back, it counts again: the token still claims it.
    await app.ok("PUT", f"_admin/users/{user['id']}", {"roles": ["agent", "admin"]})
    await me.ok("GET", "_admin/users")


async def test_added_role_counts_from_the_next_refresh(app: AppClient) -> None:
    user = await add_user(app, "promoted@x.io", ["agent"])
    pair = await login_pair(app, "promoted@x.io")
    me = AppClient(app.client, app.name, pair["access_token"])
    await app.ok("PUT", f"_admin/users/{user['id']}", {"roles": ["agent", "admin"]})
    status, _ = await me.call("GET", "_admin/users")
    assert status == 403  # the token does not claim it
    resp = await app.client.post(
        app.url("auth/refresh"), json={"refresh_token": pair["refresh_token"]}
    )
    assert resp.status == 200
    me = AppClient(app.client, app.name, (await resp.json())["data"]["access_token"])
    await me.ok("GET", "_admin/users")


async def test_change_made_elsewhere_is_heard_through_the_database(
    app: AppClient, pg_dsn: str
) -> None:
    """Another instance changes the user and notifies `users:<id>`: this one forgets it."""
    user = await add_user(app, "remote@x.io", ["admin"])
    me = await as_user(app, "remote@x.io")

    def listening() -> bool:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            row = conn.execute(
                "select count(*) from pg_stat_activity where datname = %s"
                " and query ilike 'listen%%'",
                (f"rocket_{app.name}",),
            ).fetchone()
        return bool(row and row[0])

    await wait_until(listening, "the app's metadata listener")
    await me.ok("GET", "_admin/users")  # cached as active
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}"), autocommit=True) as conn:
        conn.execute("update _users set active = false where id = %s", (user["id"],))
        conn.execute("select pg_notify('rocket_metadata', %s)", (f"users:{user['id']}",))

    async def refused() -> bool:
        status, _ = await me.call("GET", "_admin/users")
        return status == 401

    # Without the notification the cache would need its TTL (5 s); with it, well under.
    await wait_until(refused, "the notified change", timeout=3.0)


async def test_platform_user_deactivated_loses_access(
    client: Any, pg_dsn: str, management_db: str
) -> None:
    app = await new_app(client)
    token = (await platform_login(client))["access_token"]
    resp = await client.get(app.url("_admin/users"), headers=bearer(token))
    assert resp.status == 200
    with psycopg.connect(dsn_for(pg_dsn, management_db), autocommit=True) as conn:
        conn.execute("update _platform_users set active = false")
    client.server.app[PLATFORM_USERS].invalidate()  # what the TTL does within seconds
    resp = await client.get(app.url("_admin/users"), headers=bearer(token))
    assert resp.status == 401
    resp = await client.get("/api/_platform/apps", headers=bearer(token))
    assert resp.status == 401
    with psycopg.connect(dsn_for(pg_dsn, management_db), autocommit=True) as conn:
        conn.execute("update _platform_users set active = true")


async def test_non_admin_cannot_manage_users(app: AppClient) -> None:
    await add_user(app, "clerk@x.io", ["clerk"])
    clerk = await as_user(app, "clerk@x.io")
    for method, path, body in (
        ("GET", "_admin/users", None),
        ("POST", "_admin/users", {"email": "x@x.io", "password": PASSWORD, "roles": ["admin"]}),
    ):
        status, payload = await clerk.call(method, path, body)
        assert status == 403
        assert payload["error"]["message"] == "Admin access required"
    listed = (await app.ok("GET", "_admin/users"))["data"]
    assert "x@x.io" not in [u["email"] for u in listed]
