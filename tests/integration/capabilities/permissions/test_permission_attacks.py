"""Attacks on authentication and permissions. Each one must fail to get in.

Tokens: `alg: none`, HS256 signed with another app's secret, RS/HS confusion, expired, tampered
payload, the token of a deleted or deactivated user, refresh-token replay. Authorisation: a
non-admin on every `/_admin/*` route (enumerated from the router, so new admin routes are covered
automatically); reading another user's row through `include`, `filter`, the count in `meta` or an
id guess; writing a field into a row the conditions forbid by changing the condition field in the
same request; SQL in permission condition values.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from typing import Any

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rocketd.http.policy import POLICY_ATTR, Policy
from tests.support.apps import AppClient, new_app
from tests.support.databases import dsn_for
from tests.support.helpers import bearer
from tests.support.perms import HELPDESK, add_user, cond, grant, login_pair, subject, user_client

INVALID = {"error": {"code": "UNAUTHORIZED", "message": "Invalid or expired token"}}


@pytest.fixture
async def desk(client: Any) -> AppClient:
    app = await new_app(client)
    await app.load_schema(HELPDESK)
    return app


def app_secret(pg_dsn: str, management_db: str, app: str) -> str:
    with psycopg.connect(dsn_for(pg_dsn, management_db)) as conn:
        row = conn.execute("select jwt_secret from _apps where name = %s", (app,)).fetchone()
    assert row is not None
    return str(row[0])


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def refused(app: AppClient, token: str, what: str) -> None:
    resp = await app.client.get(app.url("ticket"), headers=bearer(token))
    assert resp.status == 401, what
    assert await resp.json() == INVALID, what


# --- tokens ------------------------------------------------------------------------------------


async def test_forged_tokens_are_refused(
    client: Any, desk: AppClient, pg_dsn: str, management_db: str
) -> None:
    other = await new_app(client)
    secret = app_secret(pg_dsn, management_db, desk.name)
    other_secret = app_secret(pg_dsn, management_db, other.name)
    admin_id = subject(desk.token)
    now = int(time.time())
    claims = {"sub": admin_id, "roles": ["admin"], "iat": now, "exp": now + 600}

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    rs256 = jwt.encode(claims, key, algorithm="RS256")
    # The classic confusion: an RS256 header whose signature is an HMAC keyed with the secret
    # the server verifies with (as if the server treated its key as an RSA public key).
    head = b64({"alg": "RS256", "typ": "JWT"}) + "." + b64(claims)
    import hashlib
    import hmac

    confused = head + "." + b64(hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest())
    # And an HS256 token keyed with an RSA public key, in case one were ever configured.
    hs_with_public_key = b64({"alg": "HS256", "typ": "JWT"}) + "." + b64(claims)
    hs_with_public_key += "." + b64(
        hmac.new(public_pem, hs_with_public_key.encode(), hashlib.sha256).digest()
    )

    good = jwt.encode({**claims, "roles": ["clerk"]}, secret, algorithm="HS256")
    g_head, _, g_sig = good.split(".")
    forged = {
        "alg none": b64({"alg": "none", "typ": "JWT"}) + "." + b64(claims) + ".",
        "alg none, no dot": b64({"alg": "none"}) + "." + b64(claims),
        "alg None capitalised": b64({"alg": "None"}) + "." + b64(claims) + ".",
        "HS256 with another app's secret": jwt.encode(claims, other_secret, algorithm="HS256"),
        "RS256 (own key)": rs256,
        "RS/HS confusion (RS256 header, HMAC with the app secret)": confused,
        "HS256 keyed with an RSA public key": hs_with_public_key,
        "HS512 with the right secret": jwt.encode(claims, secret, algorithm="HS512"),
        "expired": jwt.encode({**claims, "iat": now - 2000, "exp": now - 1}, secret, "HS256"),
        "tampered payload (roles added)": f"{g_head}.{b64(claims)}.{g_sig}",
        "tampered header": f"{b64({'alg': 'HS256', 'kid': '../../x'})}.{good.split('.')[1]}.{g_sig}",
        "empty signature": f"{g_head}.{good.split('.')[1]}.",
        "garbage": "not.a.jwt",
        "long": "a" * 4000,
    }
    for what, token in forged.items():
        resp = await desk.client.get(desk.url("_admin/users"), headers=bearer(token))
        assert resp.status == 401, what
        assert await resp.json() == INVALID, what
    # The real one still works, and one app's token is worthless in another.
    await desk.ok("GET", "_admin/users")
    resp = await client.get(other.url("_admin/users"), headers=bearer(desk.token))
    assert resp.status == 401


async def test_token_of_a_deleted_or_deactivated_user(desk: AppClient, pg_dsn: str) -> None:
    await grant(desk, "ticket", "read", ["agent"])
    gone = await add_user(desk, "gone@x.io", ["agent"])
    off = await add_user(desk, "off@x.io", ["agent"])
    gone_pair = await login_pair(desk, "gone@x.io")
    off_pair = await login_pair(desk, "off@x.io")
    for pair in (gone_pair, off_pair):
        assert (
            await desk.client.get(desk.url("ticket"), headers=bearer(pair["access_token"]))
        ).status == 200
    await desk.ok("DELETE", f"_admin/users/{gone['id']}")
    await desk.ok("PUT", f"_admin/users/{off['id']}", {"active": False})
    for pair, what in ((gone_pair, "deleted"), (off_pair, "deactivated")):
        await refused(desk, pair["access_token"], what)
        resp = await desk.client.post(
            desk.url("auth/refresh"), json={"refresh_token": pair["refresh_token"]}
        )
        assert resp.status == 401, what
    # A token minted for a user id that never existed (e.g. with a leaked secret) fails too.


async def test_refresh_token_replay_revokes_the_family(desk: AppClient) -> None:
    await add_user(desk, "r@x.io", [])
    first = await login_pair(desk, "r@x.io")
    resp = await desk.client.post(
        desk.url("auth/refresh"), json={"refresh_token": first["refresh_token"]}
    )
    assert resp.status == 200
    second = (await resp.json())["data"]
    # The stolen first token is replayed: refused, and the legitimate second one dies with it.
    resp = await desk.client.post(
        desk.url("auth/refresh"), json={"refresh_token": first["refresh_token"]}
    )
    assert resp.status == 401
    resp = await desk.client.post(
        desk.url("auth/refresh"), json={"refresh_token": second["refresh_token"]}
    )
    assert resp.status == 401
    # Logout revokes the family too.
    third = await login_pair(desk, "r@x.io")
    resp = await desk.client.post(
        desk.url("auth/refresh"), json={"refresh_token": third["refresh_token"]}
    )
    fourth = (await resp.json())["data"]
    resp = await desk.client.post(
        desk.url("auth/logout"), json={"refresh_token": fourth["refresh_token"]}
    )
    assert resp.status == 200
    for token in (third["refresh_token"], fourth["refresh_token"]):
        resp = await desk.client.post(desk.url("auth/refresh"), json={"refresh_token": token})
        assert resp.status == 401


# --- admin routes -------------------------------------------------------------------------------


def admin_routes(client: Any) -> list[tuple[str, str]]:
    """Every (method, path pattern) under `/api/{app}/_admin/`, from the live router."""
    found: list[tuple[str, str]] = []
    for route in client.server.app.router.routes():
        if route.method in ("HEAD", "OPTIONS"):
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        pattern = info.get("formatter") or info.get("path") or ""
        if "/_admin/" in pattern and pattern.startswith("/api/{app}/"):
            found.append((route.method, pattern))
    return found


async def test_non_admin_gets_403_on_every_admin_route(client: Any, desk: AppClient) -> None:
    routes = admin_routes(client)
    patterns = {p for _, p in routes}
    # The enumeration sees this issue's routes (and so will see later ones).
    for expected in ("_admin/users", "_admin/invites/bulk", "_admin/permissions/{id}"):
        assert f"/api/{{app}}/{expected}" in patterns
    for handler_route in client.server.app.router.routes():
        info = handler_route.resource.get_info() if handler_route.resource else {}
        pattern = info.get("formatter") or info.get("path") or ""
        if "/_admin/" in pattern and handler_route.method != "HEAD":
            policy = getattr(handler_route.handler, POLICY_ATTR, None)
            assert policy is Policy.APP_ADMIN, pattern
    await grant(desk, "ticket", "read", ["agent"])
    agent = await user_client(desk, "agent@x.io", ["agent"])
    for method, pattern in routes:
        path = pattern.replace("{app}", desk.name)
        path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        resp = await client.request(
            method, path, json={"email": "x@x.io", "roles": ["admin"]}, headers=bearer(agent.token)
        )
        assert resp.status == 403, (method, pattern, resp.status)
        assert (await resp.json())["error"] == {
            "code": "FORBIDDEN",
            "message": "Admin access required",
        }, (method, pattern)
    # Nothing was created by any of those calls.
    assert (await desk.ok("GET", "_admin/invites"))["data"] == []
    emails = [u["email"] for u in (await desk.ok("GET", "_admin/users"))["data"]]
    assert emails == ["admin@localhost", "agent@x.io"]


# --- reading other users' rows ------------------------------------------------------------------


async def test_reading_other_users_rows(desk: AppClient) -> None:
    own = [cond("owner_id", "eq", "$user.id")]
    await grant(desk, "ticket", "read", ["customer"], own)
    await grant(desk, "note", "read", ["customer"], [cond("author_id", "eq", "$user.id")])
    ann = await user_client(desk, "ann@x.io", ["customer"])
    bob = await user_client(desk, "bob@x.io", ["customer"])
    a_id, b_id = subject(ann.token), subject(bob.token)
    bobs = (
        await desk.ok(
            "POST",
            "ticket",
            {
                "title": "bob's secret",
                "owner_id": b_id,
                "secret": "s3cr3t",
                "notes": {"data": [{"body": "bob's note", "author_id": b_id}]},
            },
            201,
        )
    )["data"]
    anns = (
        await desk.ok(
            "POST",
            "ticket",
            {
                "title": "ann's",
                "owner_id": a_id,
                # Bob's note hung on Ann's ticket: the include must still hide it from Ann.
                "notes": {"data": [{"body": "bob wrote here", "author_id": b_id}]},
            },
            201,
        )
    )["data"]
    bob_note = (await desk.ok("GET", "note?filter[body]=bob's%20note"))["data"][0]

    def leaks(payload: Any) -> bool:
        text = json.dumps(payload)
        return "s3cr3t" in text or "bob's" in text or "bob wrote" in text

    probes = [
        f"ticket/{bobs['id']}",
        f"ticket/{bobs['id']}?include=notes",
        f"ticket/{anns['id']}?include=notes",
        "ticket?include=notes",
        f"ticket?filter[owner_id]={b_id}",
        "ticket?filter[secret]=s3cr3t",
        f"ticket?filter[id]={bobs['id']}",
        "ticket?filter[title.like]=bob%25",
        "ticket?sort=-secret",
        "ticket?per_page=100&page=1",
        "note?include=ticket",
        f"note/{bob_note['id']}",
        f"note/{bob_note['id']}?include=ticket",
        f"ticket/{uuid.uuid4()}",
    ]
    for path in probes:
        status, payload = await ann.call("GET", path)
        assert status in (200, 404), (path, payload)
        assert not leaks(payload), (path, payload)
        if "meta" in payload:
            assert payload["meta"]["total"] == len(payload["data"]), (path, payload)
    page = await ann.ok("GET", "ticket")
    assert page["meta"]["total"] == 1 and page["data"][0]["id"] == anns["id"]
    # An id guess answers exactly like an id that does not exist.
    guess = await ann.call("GET", f"ticket/{bobs['id']}")
    missing_id = str(uuid.uuid4())
    missing = await ann.call("GET", f"ticket/{missing_id}")
    assert guess[0] == missing[0] == 404
    assert guess[1]["error"]["message"].replace(bobs["id"], "X") == missing[1]["error"][
        "message"
    ].replace(missing_id, "X")


async def test_changing_the_condition_field_in_the_same_request(desk: AppClient) -> None:
    """Update conditions hold on the stored row: sending `status: open` along with the change
    does not make a closed ticket editable."""
    await grant(desk, "ticket", "update", ["agent"], [cond("status", "eq", "open")])
    await grant(desk, "ticket", "read", ["agent"])
    agent = await user_client(desk, "agent@x.io", ["agent"])
    closed = (await desk.ok("POST", "ticket", {"title": "t", "status": "closed"}, 201))["data"]
    status, body = await agent.call(
        "PUT", f"ticket/{closed['id']}", {"status": "open", "secret": "planted"}
    )
    assert status == 403
    assert body["error"]["message"] == "Permission denied for update on ticket"
    stored = (await desk.ok("GET", f"ticket/{closed['id']}"))["data"]
    assert stored["status"] == "closed" and stored["secret"] is None
    # Nor through a nested write of a parent the agent may update.
    await grant(desk, "ticket", "update", ["agent"], [cond("department", "eq", "support")])
    await grant(desk, "note", "update", ["agent"], [cond("author_id", "eq", "$user.id")])
    parent = (
        await desk.ok(
            "POST",
            "ticket",
            {"title": "p", "department": "support", "notes": {"data": [{"body": "x"}]}},
            201,
        )
    )["data"]
    note = (await desk.ok("GET", "note"))["data"][0]
    me = subject(agent.token)
    status, body = await agent.call(
        "PUT",
        f"ticket/{parent['id']}",
        {"notes": {"data": [{"id": note["id"], "author_id": me, "body": "mine now"}]}},
    )
    assert status == 403
    assert (await desk.ok("GET", f"note/{note['id']}"))["data"]["body"] == "x"


async def test_sql_in_condition_values(desk: AppClient, pg_dsn: str) -> None:
    await desk.ok("POST", "ticket", {"title": "t", "department": "ops"}, 201)
    hostile = [
        "x' OR '1'='1",
        "x'; DROP TABLE tickets; --",
        "finance') OR (1=1",
        "$user.id' OR 1=1 --",
        "\\' OR 1=1 --",
    ]
    for i, value in enumerate(hostile):
        role = f"r{i}"
        await grant(desk, "ticket", "read", [role], [cond("department", "eq", value)])
        await grant(desk, "ticket", "update", [role], [cond("department", "in", [value, "x"])])
        user = await user_client(desk, f"{role}@x.io", [role])
        page = await user.ok("GET", "ticket")
        assert page["data"] == [] and page["meta"]["total"] == 0, value
        t = (await desk.ok("GET", "ticket"))["data"][0]
        status, _ = await user.call("PUT", f"ticket/{t['id']}", {"title": "pwned"})
        assert status == 403, value
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{desk.name}")) as conn:
        row = conn.execute("select count(*), min(title) from tickets").fetchone()
    assert row == (1, "t")
    # Field names cannot carry SQL: they are refused at save time (S2).
    status, _ = await desk.call(
        "POST",
        "_admin/permissions",
        {"entity": "ticket", "action": "read", "conditions": [cond('x" = "x', "eq", 1)]},
    )
    assert status == 422


# --- hostile input on every new endpoint ------------------------------------------------------------

HOSTILE: list[Any] = [
    None,
    True,
    0,
    -1,
    1e300,
    2**70,
    "",
    " ",
    "\x00",
    "a\x00b",
    "x" * 10_000,
    "'; drop table _users; --",
    "\u202e\u0000\ufeff",
    "😀" * 100,
    [],
    [None],
    [[]],
    ["\x00"],
    ["x" * 10_000],
    {},
    {"$ne": 1},
    [{"field": "a\x00", "operator": "eq", "value": "\x00"}],
    [{"field": "a", "operator": "in", "value": [[1], {"a": 1}]}],
]


async def test_hostile_values_never_500_nor_write_halfway(desk: AppClient, pg_dsn: str) -> None:
    user = await add_user(desk, "target@x.io", ["agent"])
    policy = await grant(desk, "ticket", "read", ["agent"])
    invite_token = str(uuid.uuid4())
    endpoints: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "_admin/users", {"email": "n@x.io", "password": "pw-long-enough", "roles": []}),
        ("PUT", f"_admin/users/{user['id']}", {"email": "target@x.io", "roles": ["agent"]}),
        ("POST", "_admin/invites", {"email": "i@x.io", "roles": []}),
        ("POST", "_admin/invites/bulk", {"emails": ["b@x.io"], "roles": []}),
        ("POST", "_admin/permissions", {"entity": "ticket", "action": "read", "conditions": []}),
        ("PUT", f"_admin/permissions/{policy['id']}", {"roles": ["agent"], "check": []}),
        ("POST", "auth/accept-invite", {"token": invite_token, "password": "pw-long-enough"}),
    ]
    for method, path, base in endpoints:
        for key in [*base, "unknown"]:
            for value in HOSTILE:
                status, payload = await desk.call(method, path, {**base, key: value})
                assert status < 500, (method, path, key, value, payload)
                if status >= 400:
                    assert set(payload) == {"error"}, payload
                    assert {"code", "message"} <= set(payload["error"]), payload
    # Whatever got in is well-formed; the target user and policy are intact or validly changed.
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{desk.name}")) as conn:
        rows = conn.execute("select email, roles from _users").fetchall()
        assert all("\x00" not in email for email, _ in rows)
        perms = conn.execute("select count(*) from _permissions").fetchone()
    assert perms is not None and perms[0] >= 1
    got = (await desk.ok("GET", f"_admin/users/{user['id']}"))["data"]
    assert got["email"] == "target@x.io"


# --- many-to-many links to rows the caller cannot read ------------------------------------------


def join_rows(pg_dsn: str, app: AppClient) -> set[tuple[str, str]]:
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        rows = conn.execute("select ticket_id, label_id from ticket_label_links").fetchall()
    return {(str(t), str(label)) for t, label in rows}


async def test_links_to_hidden_rows_answer_like_missing_ones(desk: AppClient, pg_dsn: str) -> None:
    """A label the agent's read policy hides can be neither linked nor unlinked, in any mode, on
    create or update, and the answer is the one a made-up id gets: no probing for hidden ids."""
    for action in ("read", "create", "update"):
        await grant(desk, "ticket", action, ["agent"])
    await grant(desk, "label", "read", ["agent"], [cond("team", "eq", "support")])
    agent = await user_client(desk, "agent@x.io", ["agent"])
    sup = (await desk.ok("POST", "label", {"name": "sup", "team": "support"}, 201))["data"]["id"]
    hidden = (await desk.ok("POST", "label", {"name": "sales", "team": "sales"}, 201))["data"]["id"]
    # The admin linked the hidden label to the ticket; the agent may not see or touch that link.
    t = (
        await desk.ok("POST", "ticket", {"title": "t", "labels": {"data": [{"id": hidden}]}}, 201)
    )["data"]["id"]
    before = {(t, hidden)}
    assert join_rows(pg_dsn, desk) == before

    async def same_as_missing(method: str, path: str, body_of: Any, status: int = 422) -> None:
        missing = str(uuid.uuid4())
        got_hidden = await agent.call(method, path, body_of(hidden))
        got_missing = await agent.call(method, path, body_of(missing))
        assert got_hidden[0] == got_missing[0] == status, (body_of(hidden), got_hidden)
        as_text = json.dumps(got_hidden[1]).replace(hidden, "ID")
        assert as_text == json.dumps(got_missing[1]).replace(missing, "ID"), body_of(hidden)
        if status == 422:
            assert got_hidden[1]["error"]["details"][-1]["rule"] == "exists"
        assert join_rows(pg_dsn, desk) == before, body_of(hidden)

    def nested(mode: str | None, *items: dict[str, Any]) -> dict[str, Any]:
        envelope: dict[str, Any] = {"data": list(items)}
        if mode is not None:
            envelope["_write_mode"] = mode
        return {"labels": envelope}

    for mode in (None, "diff", "replace", "append"):
        # Link: alone, and next to a label the agent may link (the whole request fails).
        await same_as_missing("PUT", f"ticket/{t}", lambda i, m=mode: nested(m, {"id": i}))
        await same_as_missing(
            "PUT", f"ticket/{t}", lambda i, m=mode: nested(m, {"id": sup}, {"id": i})
        )
        await same_as_missing(
            "POST", "ticket", lambda i, m=mode: {"title": "n", **nested(m, {"id": i})}
        )
        # Unlink (diff honours `_delete`; replace does not link such an item; append ignores
        # `_delete` items altogether, as the spec says: 200 and nothing changes, either way).
        await same_as_missing(
            "PUT",
            f"ticket/{t}",
            lambda i, m=mode: nested(m, {"id": i, "_delete": True}),
            200 if mode == "append" else 422,
        )
    assert (await desk.ok("GET", "ticket"))["meta"]["total"] == 1  # no create got through

    # What the agent may do still works; replace keeps the link the agent cannot see.
    await agent.ok("PUT", f"ticket/{t}", nested("append", {"id": sup}))
    assert join_rows(pg_dsn, desk) == {(t, hidden), (t, sup)}
    await agent.ok("PUT", f"ticket/{t}", nested("replace"))
    assert join_rows(pg_dsn, desk) == before
    await agent.ok("PUT", f"ticket/{t}", nested("diff", {"id": sup}))
    await agent.ok("PUT", f"ticket/{t}", nested("diff", {"id": sup, "_delete": True}))
    assert join_rows(pg_dsn, desk) == before
    # The admin is not filtered: replace removes every link.
    await desk.ok("PUT", f"ticket/{t}", nested("replace", {"id": sup}))
    assert join_rows(pg_dsn, desk) == {(t, sup)}
