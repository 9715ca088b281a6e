"""Per-app settings: `GET/PUT /api/{app}/_admin/settings` with sections declared here (the kernel
declares none yet), what bad input gets (the error shape, and nothing written), the notice, and
settings in export/import."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from rocketd.engine.app_settings import AppSettingsSection, between
from rocketd.http.app import create_app
from rocketd.http.keys import APP_SETTINGS_SECTIONS
from tests.support.apps import AppClient, new_app
from tests.support.databases import dsn_for
from tests.support.helpers import error_of
from tests.support.perms import raw, user_client


@dataclass(frozen=True)
class Digest:
    enabled: bool = False
    hour: int = 7
    subject: str = "Your digest"
    recipients: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limits:
    default_per_page: int = 25
    ratio: float = 0.5


DIGEST = AppSettingsSection("digest", Digest(), checks={"hour": between(0, 23)})
LIMITS = AppSettingsSection("limits", Limits())
DEFAULTS = {
    "digest": {"enabled": False, "hour": 7, "subject": "Your digest", "recipients": []},
    "limits": {"default_per_page": 25, "ratio": 0.5},
}


@pytest.fixture
async def app(runtime: Any, aiohttp_client: Any) -> AppClient:
    web_app = create_app(runtime.services)
    web_app[APP_SETTINGS_SECTIONS] = (DIGEST, LIMITS)
    return await new_app(await aiohttp_client(web_app))


def stored_rows(pg_dsn: str, app: AppClient) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        return conn.execute("select section, value from _app_settings order by section").fetchall()


async def test_get_fills_in_the_defaults(app: AppClient) -> None:
    assert (await app.ok("GET", "_admin/settings"))["data"] == DEFAULTS


async def test_put_is_partial_per_section_and_key(app: AppClient, pg_dsn: str) -> None:
    got = await app.ok("PUT", "_admin/settings", {"digest": {"hour": 9, "recipients": ["a@x.io"]}})
    expected = {**DEFAULTS, "digest": {**DEFAULTS["digest"], "hour": 9, "recipients": ["a@x.io"]}}
    assert got["data"] == expected
    assert (await app.ok("GET", "_admin/settings"))["data"] == expected
    # Another key of the same section keeps the first; an integral 2.0 is an int.
    got = await app.ok("PUT", "_admin/settings", {"digest": {"enabled": True}, "limits": {}})
    assert got["data"]["digest"] == {**expected["digest"], "enabled": True}
    got = await app.ok("PUT", "_admin/settings", {"limits": {"default_per_page": 50.0}})
    assert got["data"]["limits"] == {"default_per_page": 50, "ratio": 0.5}
    # Only what was set is stored: a later default change reaches this app.
    assert stored_rows(pg_dsn, app) == [
        ("digest", {"hour": 9, "enabled": True, "recipients": ["a@x.io"]}),
        ("limits", {"default_per_page": 50}),
    ]
    # null returns a key to its default; a section with nothing set has no row.
    got = await app.ok("PUT", "_admin/settings", {"limits": {"default_per_page": None}})
    assert got["data"]["limits"] == DEFAULTS["limits"]
    assert [r[0] for r in stored_rows(pg_dsn, app)] == ["digest"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"nope": {}}, "nope", "unknown settings section: nope (known: digest, limits)"),
        ({"digest": {"colour": 1}}, "digest.colour", "unknown key digest.colour"),
        ({"digest": []}, "digest", "digest must be an object"),
        ({"digest": {"hour": "9"}}, "digest.hour", "digest.hour must be an integer"),
        ({"digest": {"hour": 9.5}}, "digest.hour", "digest.hour must be an integer"),
        ({"digest": {"hour": True}}, "digest.hour", "digest.hour must be an integer"),
        ({"digest": {"hour": 24}}, "digest.hour", "digest.hour must be between 0 and 23"),
        ({"digest": {"enabled": "yes"}}, "digest.enabled", "digest.enabled must be true or false"),
        ({"digest": {"subject": 5}}, "digest.subject", "digest.subject must be a string"),
        ({"digest": {"subject": "s" * 1001}}, "digest.subject", "at most 1000 characters"),
        ({"digest": {"recipients": "a"}}, "digest.recipients", "must be an array of strings"),
        ({"digest": {"recipients": ["a"] * 101}}, "digest.recipients", "at most 100 items"),
        ({"limits": {"ratio": "half"}}, "limits.ratio", "limits.ratio must be a number"),
    ],
)
async def test_bad_values_are_422_naming_the_key_and_write_nothing(
    app: AppClient, pg_dsn: str, body: dict[str, Any], field: str, message: str
) -> None:
    # A valid change in the same body is not applied either.
    status, payload = await app.call("PUT", "_admin/settings", {"limits": {"ratio": 1}, **body})
    assert status == 422, payload
    error = payload["error"]
    assert error["code"] == "VALIDATION_FAILED" and message in error["message"]
    assert [d["field"] for d in error["details"]] == [field]
    assert stored_rows(pg_dsn, app) == []
    assert (await app.ok("GET", "_admin/settings"))["data"] == DEFAULTS


async def test_every_problem_is_listed(app: AppClient) -> None:
    status, payload = await app.call(
        "PUT",
        "_admin/settings",
        {"digest": {"hour": -1, "x": 1}, "limits": {"ratio": None}, "y": 2},
    )
    assert status == 422
    fields = sorted(d["field"] for d in payload["error"]["details"])
    assert fields == ["digest.hour", "digest.x", "y"]


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b'"text"', b"", b"null"])
async def test_bodies_that_are_not_objects_are_400(
    app: AppClient, pg_dsn: str, data: bytes
) -> None:
    resp = await raw(app, "PUT", "_admin/settings", data)
    assert resp.status == 400
    assert (await error_of(resp))["code"] == "INVALID_PAYLOAD"
    assert stored_rows(pg_dsn, app) == []


async def test_oversize_body_is_413(app: AppClient, pg_dsn: str) -> None:
    body = json.dumps({"digest": {"subject": "s" * 100_000}})
    resp = await raw(app, "PUT", "_admin/settings", body.encode())
    assert resp.status == 413
    assert (await error_of(resp))["code"] == "PAYLOAD_TOO_LARGE"
    assert stored_rows(pg_dsn, app) == []


async def test_a_change_is_announced(app: AppClient, pg_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(
        dsn_for(pg_dsn, f"rocket_{app.name}"), autocommit=True
    ) as listener:
        await listener.execute("listen rocket_metadata")
        await app.ok("PUT", "_admin/settings", {"digest": {"enabled": True}})
        heard = [n.payload async for n in listener.notifies(timeout=5.0, stop_after=1)]
    assert heard == [app.name]


async def test_only_admins(app: AppClient, pg_dsn: str) -> None:
    clerk = await user_client(app, "clerk@x.io", ["clerk"])
    for method, body in (("GET", None), ("PUT", {"digest": {"hour": 1}})):
        status, payload = await clerk.call(method, "_admin/settings", body)
        assert status == 403
        assert payload["error"]["message"] == "Admin access required"
    assert stored_rows(pg_dsn, app) == []


async def test_settings_travel_in_export_and_import(app: AppClient, pg_dsn: str) -> None:
    exported = (await app.ok("GET", "_admin/export"))["data"]
    assert exported["settings"] == {}  # nothing set: defaults are not exported
    await app.ok("PUT", "_admin/settings", {"digest": {"hour": 5}})
    exported = (await app.ok("GET", "_admin/export"))["data"]
    assert exported["settings"] == {"digest": {"hour": 5}}

    fresh = await new_app(app.client)
    status, body = await fresh.call("POST", "_admin/import", exported)
    assert status == 200, body
    assert body["data"]["summary"]["settings"] == 1
    assert (await fresh.ok("GET", "_admin/settings"))["data"]["digest"]["hour"] == 5

    # Again: the stored section is skipped (and said so); an unknown one is ignored.
    again = {**exported, "settings": {"digest": {"hour": 6}, "galaxy": {"x": 1}}}
    status, body = await fresh.call("POST", "_admin/import", again)
    assert status == 200, body
    report = body["data"]
    assert report["summary"]["settings"] == 0
    assert report["skipped"]["settings"] == ["digest"]
    assert report["ignored"] == ["settings.galaxy: not a settings section of this server"]
    codes = {w["code"] for w in body["meta"]["warnings"]}
    assert codes == {"IMPORT_SKIPPED", "IMPORT_IGNORED"}
    assert (await fresh.ok("GET", "_admin/settings"))["data"]["digest"]["hour"] == 5

    # A bad section rejects the whole document.
    third = await new_app(app.client)
    bad = {"version": 1, "entities": [], "settings": {"digest": {"hour": "late"}}}
    status, body = await third.call("POST", "_admin/import", bad)
    assert status == 422
    assert body["error"]["details"][0]["field"] == "settings.digest.hour"
    assert stored_rows(pg_dsn, third) == []
