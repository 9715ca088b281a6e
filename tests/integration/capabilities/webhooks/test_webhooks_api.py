"""Webhooks end to end: admin CRUD, the outbox in the write transaction, delivery to real
receivers on 127.0.0.1 (retries, failure, manual retry, signature, env headers), sync hooks
that roll writes back, state-machine actions through the same outbox."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from structlog.testing import capture_logs

from rocketd.config import Settings, WebhookSettings
from tests.support.apps import AppClient, new_app
from tests.support.databases import dsn_for
from tests.support.helpers import wait_until as _wait_until
from tests.support.perms import cond, grant
from tests.support.perms import user_client as perms_user
from tests.support.receiver import Receiver

SECRET = "test-signing-secret"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    fast = WebhookSettings(
        allow_networks=("127.0.0.0/8",),
        retry_base_seconds=0.2,
        sweep_interval=0.2,
        timeout=3.0,
        sync_timeout=0.5,
        secret=SECRET,
    )
    return dataclasses.replace(settings, webhooks=fast)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


TICKET = {
    "name": "ticket",
    "table": "tickets",
    "primary_key": {"field": "id", "type": "uuid", "generated": True},
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "title", "type": "string", "required": True},
        {"name": "status", "type": "string"},
    ],
}


async def ticket_app(client: Any) -> AppClient:
    app = await new_app(client)
    await app.ok("POST", "_admin/entities", TICKET, 201)
    return app


def app_rows(pg_dsn: str, app: AppClient, query: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn_for(pg_dsn, f"rocket_{app.name}"), row_factory=dict_row) as conn:
        return list(conn.execute(query).fetchall())


async def wait_until(condition: Any, timeout: float = 10.0) -> None:
    """Poll slowly: the conditions read the database synchronously (blocking the loop)."""
    await _wait_until(condition, timeout=timeout, interval=0.1)


async def logs(app: AppClient, query: str = "") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (await app.ok("GET", f"_admin/webhook-logs{query}"))["data"]
    return rows


async def add_hook(app: AppClient, **body: Any) -> dict[str, Any]:
    hook: dict[str, Any] = (await app.ok("POST", "_admin/webhooks", body, 201))["data"]
    return hook


# ------------------------------------------------------------------------------------- admin


async def test_admin_crud_defaults_and_validation(client: Any) -> None:
    app = await ticket_app(client)
    hook = await add_hook(app, entity="ticket", url="https://erp.example.com/h")
    assert {k: hook[k] for k in ("hook", "method", "headers", "condition", "async", "active")} == {
        "hook": "after_write",
        "method": "POST",
        "headers": {},
        "condition": "",
        "async": True,
        "active": True,
    }
    assert hook["retry"] == {"max_attempts": 3, "backoff": "exponential"}
    sync = await add_hook(app, entity="ticket", hook="before_write", url="http://x.example/h")
    assert sync["async"] is False  # an omitted `async` follows the hook
    listed = (await app.ok("GET", "_admin/webhooks"))["data"]
    assert [h["hook"] for h in listed] == ["after_write", "before_write"]

    cases: list[tuple[dict[str, Any], str]] = [
        ({"url": "https://a.example"}, "entity is required"),
        ({"entity": "ticket", "hook": "x", "url": "https://a.example"}, "hook must be"),
        ({"entity": "ticket"}, "url is required"),
        ({"entity": "ticket", "url": "ftp://a.example"}, "url must start with"),
        ({"entity": "ticket", "url": "https://a.example", "method": "post"}, "method must be"),
        ({"entity": "ticket", "url": "https://a.example", "async": False}, "must be async"),
        (
            {"entity": "ticket", "hook": "before_delete", "url": "https://a", "async": True},
            "must not be async",
        ),
        ({"entity": "ticket", "url": "https://a.example", "condition": "record. =="}, "condition"),
        ({"entity": "ticket", "url": "https://a.example", "condition": "secret.x"}, "unknown"),
        (
            {"entity": "ticket", "url": "https://a.example", "headers": {"K": "{{env.PGPASS}}"}},
            "ROCKET_WEBHOOK_",
        ),
        (
            {"entity": "ticket", "url": "https://a.example", "retry": {"max_attempts": 0}},
            "max_attempts",
        ),
        (
            {"entity": "ticket", "url": "https://a.example", "retry": {"backoff": "random"}},
            "backoff",
        ),
    ]
    for body, message in cases:
        status, payload = await app.call("POST", "_admin/webhooks", body)
        assert status == 422, (body, payload)
        assert payload["error"]["code"] == "VALIDATION_FAILED"
        assert message in payload["error"]["message"], (message, payload)

    updated = (
        await app.ok(
            "PUT",
            f"_admin/webhooks/{hook['id']}",
            {"entity": "ticket", "url": "https://b.example/h", "retry": {"max_attempts": 1}},
        )
    )["data"]
    assert updated["url"] == "https://b.example/h" and updated["method"] == "POST"
    assert updated["retry"] == {"max_attempts": 1, "backoff": "exponential"}
    got = (await app.ok("GET", f"_admin/webhooks/{hook['id']}"))["data"]
    assert got == updated
    deleted = await app.ok("DELETE", f"_admin/webhooks/{hook['id']}")
    assert deleted["data"] == {"id": hook["id"], "deleted": True}
    for method, path in (
        ("GET", f"_admin/webhooks/{hook['id']}"),
        ("PUT", f"_admin/webhooks/{hook['id']}"),
        ("DELETE", "_admin/webhooks/not-a-uuid"),
        ("GET", "_admin/webhook-logs/not-a-uuid"),
        ("POST", f"_admin/webhook-logs/{hook['id']}/retry"),
    ):
        status, payload = await app.call(method, path, {"entity": "t", "url": "https://a"})
        assert status == 404, (method, path, payload)
    status, payload = await app.call("POST", "_admin/webhooks", [1])
    assert status == 400


# ------------------------------------------------------------------------------------- async


async def test_after_write_and_after_delete_are_delivered_signed_and_logged(
    client: Any, receiver: Receiver, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROCKET_WEBHOOK_ERP_KEY", "s3cret-value")
    app = await ticket_app(client)
    hook = await add_hook(
        app,
        entity="ticket",
        url=receiver.url,
        headers={"X-Api-Key": "{{env.ROCKET_WEBHOOK_ERP_KEY}}", "X-Source": "rocket"},
        condition="record.status != 'skip'",
    )
    gone = await add_hook(app, entity="ticket", hook="after_delete", url=receiver.url)
    ticket = (await app.ok("POST", "ticket", {"title": "a", "status": "open"}, 201))["data"]
    await wait_until(lambda: len(receiver.received) == 1, timeout=10)
    first = receiver.received[0]
    payload = first.json
    assert payload["event"] == "after_write" and payload["action"] == "create"
    assert payload["entity"] == "ticket" and payload["record"]["id"] == ticket["id"]
    assert "old" not in payload
    assert payload["changes"]["title"] == {"old": None, "new": "a"}
    assert payload["user"]["roles"] == ["admin"]
    assert payload["idempotency_key"].startswith("wh_")
    assert first.headers["X-Api-Key"] == "s3cret-value"
    assert first.headers["X-Rocket-Idempotency-Key"] == payload["idempotency_key"]
    expected = hmac.new(SECRET.encode(), first.body, hashlib.sha256).hexdigest()
    assert first.headers["X-Rocket-Signature"] == f"sha256={expected}"

    await app.ok("PUT", f"ticket/{ticket['id']}", {"status": "closed"})
    await app.ok("PUT", f"ticket/{ticket['id']}", {"status": "skip"})  # condition false
    await wait_until(lambda: len(receiver.received) == 2, timeout=10)
    update = receiver.received[1].json
    assert update["action"] == "update" and update["old"]["status"] == "open"
    assert update["changes"] == {"status": {"old": "open", "new": "closed"}}

    await app.ok("DELETE", f"ticket/{ticket['id']}")
    await wait_until(lambda: len(receiver.received) == 3, timeout=10)
    deleted = receiver.received[2].json
    assert deleted["event"] == "after_delete" and deleted["action"] == "delete"
    assert deleted["record"]["status"] == "skip" and "old" not in deleted

    await wait_until(
        lambda: all(r["status"] == "delivered" for r in app_rows(pg_dsn, app, LOGS)), timeout=10
    )
    rows = await logs(app, f"?webhook_id={hook['id']}")
    assert len(rows) == 2 and all(r["status"] == "delivered" for r in rows)
    row = rows[0]
    assert row["attempt"] == 1 and row["response_status"] == 200 and row["response_body"] == "ok"
    # Secrets are never stored: the log keeps the template, not the resolved value.
    assert row["request_headers"]["X-Api-Key"] == "{{env.ROCKET_WEBHOOK_ERP_KEY}}"
    assert "s3cret-value" not in json.dumps(app_rows(pg_dsn, app, LOGS), default=str)
    assert (await logs(app, f"?webhook_id={gone['id']}"))[0]["hook"] == "after_delete"
    assert await logs(app, "?status=failed") == []
    assert len(await logs(app, "?entity=ticket&status=delivered")) == 3
    assert (await app.ok("GET", f"_admin/webhook-logs/{row['id']}"))["data"] == row
    status, payload = await app.call("POST", f"_admin/webhook-logs/{row['id']}/retry")
    assert status == 422
    assert payload["error"]["message"] == "Can only retry failed or retrying webhook logs"


LOGS = "select * from _webhook_logs"


async def test_failures_are_retried_then_failed_and_can_be_retried_by_hand(
    client: Any, receiver: Receiver, pg_dsn: str
) -> None:
    app = await ticket_app(client)
    receiver.script = [500, 503]  # two failures, then 200
    await add_hook(app, entity="ticket", url=receiver.url)
    await app.ok("POST", "ticket", {"title": "a"}, 201)
    await wait_until(
        lambda: [r["status"] for r in app_rows(pg_dsn, app, LOGS)] == ["delivered"], timeout=15
    )
    (row,) = app_rows(pg_dsn, app, LOGS)
    assert row["attempt"] == 3 and row["response_status"] == 200
    keys = {r.json["idempotency_key"] for r in receiver.received}
    assert len(receiver.received) == 3 and keys == {row["idempotency_key"]}

    redirect = await Receiver(status=302, headers={"Location": receiver.url}).start()
    try:
        await add_hook(
            app, entity="ticket", url=redirect.url, retry={"max_attempts": 1, "backoff": "linear"}
        )
        await app.ok("POST", "ticket", {"title": "b"}, 201)
        await wait_until(lambda: len(app_rows(pg_dsn, app, LOGS + FAILED)) == 1, timeout=10)
        (failed,) = app_rows(pg_dsn, app, LOGS + FAILED)
        assert failed["error"] == "HTTP 302" and failed["attempt"] == 1  # not followed
        assert len(receiver.received) == 4  # the redirect target got only the 200 write
        redirect.status = 200
        retried = await app.ok("POST", f"_admin/webhook-logs/{failed['id']}/retry")
        assert retried["data"]["status"] == "retrying" and retried["data"]["attempt"] == 1
        await wait_until(
            lambda: (
                app_rows(pg_dsn, app, f"{LOGS} where id = '{failed['id']}'")[0]["status"]
                == "delivered"
            ),
            timeout=10,
        )
    finally:
        await redirect.stop()


FAILED = " where status = 'failed'"


async def test_refused_targets_fail_at_delivery(client: Any, pg_dsn: str) -> None:
    app = await ticket_app(client)
    await add_hook(
        app,
        entity="ticket",
        url="http://169.254.169.254/latest/meta-data",
        retry={"max_attempts": 1},
    )
    await app.ok("POST", "ticket", {"title": "a"}, 201)
    await wait_until(lambda: len(app_rows(pg_dsn, app, LOGS + FAILED)) == 1, timeout=10)
    (row,) = app_rows(pg_dsn, app, LOGS)
    assert row["response_status"] == 0 and "refused" in row["error"]


# -------------------------------------------------------------------------------------- sync


async def test_sync_hooks_gate_the_write(client: Any, receiver: Receiver, pg_dsn: str) -> None:
    app = await ticket_app(client)
    await add_hook(
        app, entity="ticket", hook="before_write", url=receiver.url, condition="action == 'create'"
    )
    ticket = (await app.ok("POST", "ticket", {"title": "a"}, 201))["data"]
    assert receiver.received[0].json["record"]["title"] == "a"
    assert receiver.received[0].json["event"] == "before_write"
    (logged,) = app_rows(pg_dsn, app, LOGS)
    assert logged["status"] == "delivered" and logged["hook"] == "before_write"

    receiver.status = 500
    status, payload = await app.call("POST", "ticket", {"title": "b"})
    assert status == 422, payload
    assert payload["error"]["code"] == "VALIDATION_FAILED"
    assert "HTTP 500" in payload["error"]["message"]
    assert "status 500" in payload["error"]["details"][0]["message"]
    await app.ok("PUT", f"ticket/{ticket['id']}", {"title": "c"})  # condition false: no call

    receiver.status, receiver.delay = 200, 2.0  # beyond sync_timeout (0.5 s)
    status, payload = await app.call("POST", "ticket", {"title": "slow"})
    assert status == 422 and "timed out" in payload["error"]["message"]
    titles = [r["title"] for r in app_rows(pg_dsn, app, "select title from tickets")]
    assert titles == ["c"]
    assert len(app_rows(pg_dsn, app, LOGS)) == 1  # the rolled-back writes left no outbox row

    receiver.delay = 0
    await add_hook(app, entity="ticket", hook="before_delete", url=receiver.url)
    receiver.status = 409
    status, payload = await app.call("DELETE", f"ticket/{ticket['id']}")
    assert status == 422, payload
    assert len(app_rows(pg_dsn, app, "select * from tickets")) == 1
    receiver.status = 204
    await app.ok("DELETE", f"ticket/{ticket['id']}")
    assert receiver.received[-1].json["event"] == "before_delete"
    assert app_rows(pg_dsn, app, "select * from tickets") == []


async def test_a_refusing_sync_hook_tells_ordinary_writers_nothing_about_it(
    client: Any, receiver: Receiver, pg_dsn: str
) -> None:
    """A non-admin writer learns that a webhook refused the write, not which one, where it
    points or what it answered; the app admin and the server log keep the detail."""
    app = await ticket_app(client)
    await grant(app, "ticket", "read", ["clerk"], [cond("status", "neq", "secret")])
    for action in ("create", "update", "delete"):
        await grant(app, "ticket", action, ["clerk"])
    clerk = await perms_user(app, "clerk@x.io", ["clerk"])
    ticket = (await clerk.ok("POST", "ticket", {"title": "before any hook"}, 201))["data"]
    write_hook = await add_hook(app, entity="ticket", hook="before_write", url=receiver.url)
    delete_hook = await add_hook(app, entity="ticket", hook="before_delete", url=receiver.url)
    secrets = (write_hook["id"], delete_hook["id"], "127.0.0.1", str(receiver.port), "HTTP",
               "status", "timed out", "refused:", "loopback", "link-local", "169.254")  # fmt: skip

    def generic(action: str) -> dict[str, Any]:
        return {
            "error": {
                "code": "VALIDATION_FAILED",
                "message": f"Webhook rejected the {action}",
                "details": [{"message": f"a webhook refused this {action}", "rule": "webhook"}],
            }
        }

    async def refused(method: str, path: str, body: Any, action: str, why: str) -> None:
        with capture_logs() as logged:
            status, payload = await clerk.call(method, path, body)
        assert (status, payload) == (422, generic(action)), why
        assert not [s for s in secrets if s in json.dumps(payload)], why
        # The log keeps what happened.
        [entry] = [e for e in logged if e["event"] == "sync webhook refused the write"]
        assert entry["webhook"] in (write_hook["id"], delete_hook["id"]), why
        # The app admin gets the detail.
        status, payload = await app.call(method, path, body)
        assert status == 422 and payload["error"]["message"].startswith(
            f"Webhook rejected the {action}: "
        ), why
        assert payload["error"]["details"][0]["message"].startswith("webhook "), why

    receiver.status = 500
    await refused("POST", "ticket", {"title": "a"}, "create", "HTTP 500")
    await refused("PUT", f"ticket/{ticket['id']}", {"title": "b"}, "update", "HTTP 500")
    receiver.status, receiver.delay = 200, 2.0  # beyond sync_timeout (0.5 s)
    await refused("POST", "ticket", {"title": "slow"}, "create", "timeout")
    receiver.delay = 0
    metadata_url = "http://169.254.169.254/latest/meta-data"
    await app.ok("PUT", f"_admin/webhooks/{write_hook['id']}", {**write_hook, "url": metadata_url})
    await refused("POST", "ticket", {"title": "ssrf"}, "create", "refused target")
    await app.ok("DELETE", f"_admin/webhooks/{write_hook['id']}")
    receiver.status = 403
    await refused("DELETE", f"ticket/{ticket['id']}", None, "delete", "HTTP 403")
    titles = [r["title"] for r in app_rows(pg_dsn, app, "select title from tickets")]
    assert titles == ["before any hook"]

    # A condition that cannot be evaluated: the writer gets a bare 500, the admin the detail.
    await app.ok("DELETE", f"_admin/webhooks/{delete_hook['id']}")
    broken = await add_hook(
        app,
        entity="ticket",
        hook="before_write",
        url=receiver.url,
        condition="record.title matches record.status",
    )
    status, payload = await clerk.call("POST", "ticket", {"title": "c"})
    assert (status, payload) == (
        500,
        {"error": {"code": "INTERNAL_ERROR", "message": "Internal server error"}},
    )
    status, payload = await app.call("POST", "ticket", {"title": "c"})
    assert status == 500 and broken["id"] in payload["error"]["message"]
