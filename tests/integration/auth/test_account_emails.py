"""Emails are one account whatever their case: users admin, invites, logins (app and platform),
and databases from before the rule that already hold case-duplicates (upgrade, report, repair)."""

from __future__ import annotations

from typing import Any

import jwt
import psycopg
import pytest
import structlog

from rocketd.config import Settings
from rocketd.http.app import create_app
from rocketd.runtime import Runtime
from tests.support.apps import AppClient, new_app
from tests.support.cli import rocketd
from tests.support.databases import dsn_for
from tests.support.db_users import add_user as insert_user
from tests.support.helpers import error_of
from tests.support.perms import PASSWORD, add_user

OTHER_PASSWORD = "another-long-one"
# The app schema step that brought the rule (its version depends on the release).
EMAIL_STEP = "case-insensitive user and invite emails"


@pytest.fixture
async def app(client: Any) -> AppClient:
    return await new_app(client)


def app_db(pg_dsn: str, app: AppClient) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}"), autocommit=True)


def index_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("select to_regclass(%s) is not null", (name,)).fetchone()
    return bool(row and row[0])


async def login_subject(client: Any, path: str, email: str, password: str) -> str:
    resp = await client.post(path, json={"email": email, "password": password})
    assert resp.status == 200, await resp.text()
    token = (await resp.json())["data"]["access_token"]
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


async def test_users_admin_treats_case_variants_as_the_same_email(app: AppClient) -> None:
    first = await add_user(app, "u1@x.io", [])
    status, body = await app.call(
        "POST", "_admin/users", {"email": "U1@X.IO", "password": PASSWORD}
    )
    assert status == 409 and body["error"]["message"] == "A user with this email already exists"
    second = await add_user(app, "u2@x.io", [])
    status, body = await app.call("PUT", f"_admin/users/{second['id']}", {"email": "U1@x.io"})
    assert status == 409, body
    # Changing the case of one's own email is no conflict; the spelling is kept as given.
    renamed = await app.ok("PUT", f"_admin/users/{first['id']}", {"email": "U1@x.io"})
    assert renamed["data"]["email"] == "U1@x.io"
    emails = sorted(u["email"] for u in (await app.ok("GET", "_admin/users"))["data"])
    assert emails == ["U1@x.io", "admin@localhost", "u2@x.io"]


async def test_logins_ignore_the_case_of_the_email(client: Any, app: AppClient) -> None:
    user = await add_user(app, "Mixed.Case@X.io", [])
    subject = await login_subject(client, app.url("auth/login"), "mixed.case@x.IO", PASSWORD)
    assert subject == user["id"]
    resp = await client.post(
        "/api/_platform/auth/login", json={"email": "PLATFORM@LocalHost", "password": "changeme"}
    )
    assert resp.status == 200


async def test_invites_treat_case_variants_as_the_same_email(app: AppClient) -> None:
    await add_user(app, "taken@x.io", [])
    status, body = await app.call("POST", "_admin/invites", {"email": "TAKEN@x.io"})
    assert (status, body["error"]["message"]) == (409, "A user with this email already exists")
    await app.ok("POST", "_admin/invites", {"email": "Pending@x.io"}, 201)
    status, body = await app.call("POST", "_admin/invites", {"email": "pending@X.IO"})
    assert status == 409
    assert body["error"]["message"] == "A pending invite already exists for this email"
    # An account made for a case variant after the invite blocks its acceptance.
    made = (await app.ok("POST", "_admin/invites", {"email": "late@x.io"}, 201))["data"]
    await add_user(app, "LATE@x.io", [])
    resp = await app.client.post(
        app.url("auth/accept-invite"), json={"token": made["token"], "password": PASSWORD}
    )
    assert resp.status == 409
    assert (await error_of(resp))["message"] == "A user with this email already exists"


# --- databases that already hold case-duplicates -------------------------------------------------


def make_app_look_old(conn: psycopg.Connection[Any]) -> None:
    """The app database as a release before the rule left it."""
    conn.execute("drop index _users_email_lower_key")
    conn.execute("drop index idx_invites_email_lower")
    conn.execute("delete from _schema_versions where scope = 'app' and name = %s", (EMAIL_STEP,))


async def test_an_upgrade_with_case_duplicates_starts_reports_and_repairs_later(
    settings: Settings, app: AppClient, pg_dsn: str, aiohttp_client: Any
) -> None:
    with app_db(pg_dsn, app) as conn:
        make_app_look_old(conn)
    older = insert_user(pg_dsn, app.name, "U1@x.io", PASSWORD, [])
    newer = insert_user(pg_dsn, app.name, "u1@x.io", OTHER_PASSWORD, [])

    # An instance of this release starts on that database: no failure, a warning instead.
    upgraded = Runtime(settings)
    with structlog.testing.capture_logs() as logs:
        await upgraded.start(http=False)
    try:
        warnings = [
            line
            for line in logs
            if line["log_level"] == "warning" and "differ only in case" in line["event"]
        ]
        assert [w["where"] for w in warnings] == [f"app {app.name}"]
        assert warnings[0]["emails"] == "U1@x.io / u1@x.io"
        with app_db(pg_dsn, app) as conn:
            assert conn.execute(
                "select 1 from _schema_versions where scope = 'app' and name = %s", (EMAIL_STEP,)
            ).fetchone()
            assert not index_exists(conn, "_users_email_lower_key")
            assert index_exists(conn, "_users_email_lower_idx")  # lookups stay indexed
            assert index_exists(conn, "idx_invites_email_lower")
        assert upgraded.services is not None
        client = await aiohttp_client(create_app(upgraded.services))
        login = app.url("auth/login")
        # A login picks the exact spelling; with none, the oldest account.
        assert await login_subject(client, login, "U1@x.io", PASSWORD) == older
        assert await login_subject(client, login, "u1@x.io", OTHER_PASSWORD) == newer
        assert await login_subject(client, login, "u1@X.IO", PASSWORD) == older
        resp = await client.post(login, json={"email": "U1@x.io", "password": OTHER_PASSWORD})
        assert resp.status == 401
        # The rule holds for new accounts although the index cannot.
        status, _ = await app.call(
            "POST", "_admin/users", {"email": "U1@X.IO", "password": PASSWORD}
        )
        assert status == 409
        # check-config reports the pair.
        env = {"ROCKET_DATABASE_URL": settings.database.dsn(), "ROCKET_LOG_LEVEL": "error"}
        out = rocketd("check-config", env=env)
        assert out.returncode == 0, out.stderr
        assert f"warning: app {app.name}: accounts whose emails differ only in case" in out.stdout
        assert "U1@x.io / u1@x.io" in out.stdout
        # The admin resolves it; the next start makes the unique index.
        await app.ok("DELETE", f"_admin/users/{newer}")
    finally:
        await upgraded.stop()
    again = Runtime(settings)
    await again.start(http=False)
    await again.stop()
    with app_db(pg_dsn, app) as conn:
        assert index_exists(conn, "_users_email_lower_key")
        assert not index_exists(conn, "_users_email_lower_idx")
    out = rocketd("check-config", env=env)
    assert "accounts: no emails that differ only in case" in out.stdout


async def test_platform_case_duplicates_are_reported(
    settings: Settings, runtime: Any, pg_dsn: str, management_db: str
) -> None:
    with psycopg.connect(dsn_for(pg_dsn, management_db), autocommit=True) as conn:
        conn.execute("drop index _platform_users_email_lower_key")
        conn.execute(
            "insert into _platform_users (email, password_hash) select 'Platform@localhost',"
            " password_hash from _platform_users"
        )
    second = Runtime(settings)
    with structlog.testing.capture_logs() as logs:
        await second.start(http=False)
    await second.stop()
    assert any(line.get("where") == "platform" for line in logs if line["log_level"] == "warning")
    out = rocketd(
        "check-config",
        env={"ROCKET_DATABASE_URL": settings.database.dsn(), "ROCKET_LOG_LEVEL": "error"},
    )
    assert "warning: platform: accounts whose emails differ only in case" in out.stdout
    assert "Platform@localhost / platform@localhost" in out.stdout


def test_check_config_says_when_it_could_not_look(tmp_path: Any) -> None:
    out = rocketd("check-config", env={"ROCKET_DATA_DIR": str(tmp_path / "none")})
    assert out.returncode == 0
    assert "accounts: not checked (the embedded PostgreSQL is not running)" in out.stdout
