"""A pattern with a huge counted repetition, against a real `rocketd serve` process: refused with a
422 when an admin saves it (field rule, `matches` literal, import file), the rule's documented
error when a writer supplies it in record data, and the server keeps answering.

The server runs with its address space capped and every request has a deadline, so a server that
freezes compiling (as before the pattern limits) fails these tests instead of hanging the run.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.support.databases import app_databases, drop_databases, dsn_for, unique_name
from tests.support.helpers import wait_until
from tests.support.orphans import die_with_test_process
from tests.support.paths import ROOT
from tests.support.processes import call, free_port, new_app_admin

pytestmark = pytest.mark.e2e

HUGE = "x{1000000000}"
REFUSAL = "repetition {1000000000} repeats more than 1000 times"
# Seconds for one request: generous; a refusal takes milliseconds, a freeze never ends.
DEADLINE = aiohttp.ClientTimeout(total=30)
ENTITY = {
    "name": "code",
    "table": "codes",
    "primary_key": {"field": "id", "type": "uuid", "generated": True},
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "a", "type": "string"},
        {"name": "b", "type": "string"},
    ],
}


def _capped_memory() -> None:  # in the child, before exec
    limit = 4 * 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.fixture(scope="module")
def server(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a rocketd process on its own management database."""
    management_db = unique_name("rkt_mgmt_")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROCKET_")}
    env.pop("DATABASE_URL", None)
    port = free_port()
    env.update(
        ROCKET_DATABASE_URL=dsn_for(pg_dsn, management_db),
        ROCKET_SERVER_HOST="127.0.0.1",
        ROCKET_SERVER_WORKERS="1",
        ROCKET_SERVER_PORT=str(port),
        ROCKET_AUTH_BCRYPT_COST="4",
        ROCKET_LOG_FORMAT="json",
    )
    log = (tmp_path_factory.mktemp("patterns") / "rocketd.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rocketd", "serve"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_test_process(then=_capped_memory),
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:  # a frozen server ignores SIGTERM
            proc.kill()
            proc.wait(timeout=15)
        log.close()
        drop_databases(pg_dsn, [*app_databases(pg_dsn, management_db), management_db])


async def ready(http: aiohttp.ClientSession, base: str) -> bool:
    try:
        async with http.get(base + "/ready") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def app_with_entity(http: aiohttp.ClientSession, base: str) -> tuple[str, str]:
    await wait_until(lambda: ready(http, base), "rocketd /ready", timeout=90, interval=0.2)
    app, token = await new_app_admin(http, base, "pat")
    status, body = await call(http, "POST", f"{base}/api/{app}/_admin/entities", token, ENTITY)
    assert status == 201, body
    return app, token


def refused(status: int, body: Any) -> list[dict[str, Any]]:
    """The details of a 422 in the contract's error shape."""
    assert status == 422, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "VALIDATION_FAILED"
    return list(body["error"]["details"])


async def test_saving_a_rule_with_a_huge_count_is_a_422(server: str) -> None:
    async with aiohttp.ClientSession(timeout=DEADLINE) as http:
        app, token = await app_with_entity(http, server)
        rules = f"{server}/api/{app}/_admin/rules"
        field_rule = {"field": "a", "operator": "pattern", "value": HUGE}
        status, body = await call(
            http,
            "POST",
            rules,
            token,
            {"entity": "code", "hook": "before_write", "type": "field", "definition": field_rule},
        )
        assert refused(status, body) == [
            {"message": f"invalid pattern: {REFUSAL} at position 1", "field": "definition.value"}
        ]
        expression = {"expression": f"record.a matches '{HUGE}'"}
        status, body = await call(
            http,
            "POST",
            rules,
            token,
            {
                "entity": "code",
                "hook": "before_write",
                "type": "expression",
                "definition": expression,
            },
        )
        (detail,) = refused(status, body)
        assert detail["field"] == "definition.expression"
        assert f"invalid regular expression: {REFUSAL}" in detail["message"]
        status, body = await call(http, "GET", rules, token)
        assert (status, body["data"]) == (200, [])


async def test_an_import_with_a_huge_count_is_refused_whole(server: str) -> None:
    async with aiohttp.ClientSession(timeout=DEADLINE) as http:
        app, token = await app_with_entity(http, server)
        document = {
            "version": 1,
            "rules": [
                {
                    "entity": "code",
                    "hook": "before_write",
                    "type": "field",
                    "definition": {"field": "b", "operator": "pattern", "value": "^ok$"},
                },
                {
                    "entity": "code",
                    "hook": "before_write",
                    "type": "field",
                    "definition": {"field": "a", "operator": "pattern", "value": HUGE},
                },
            ],
        }
        status, body = await call(
            http, "POST", f"{server}/api/{app}/_admin/import", token, document
        )
        details = refused(status, body)
        assert [d["field"] for d in details] == ["rules[1].definition.value"]
        assert REFUSAL in details[0]["message"]
        status, body = await call(http, "GET", f"{server}/api/{app}/_admin/rules", token)
        assert (status, body["data"]) == (200, [])  # nothing applied


async def test_a_huge_count_in_record_data_fails_the_rule_and_the_server_keeps_answering(
    server: str,
) -> None:
    async with aiohttp.ClientSession(timeout=DEADLINE) as http:
        app, token = await app_with_entity(http, server)
        rule = {
            "entity": "code",
            "hook": "before_write",
            "type": "expression",
            "definition": {"expression": "record.a matches record.b"},
        }
        status, body = await call(http, "POST", f"{server}/api/{app}/_admin/rules", token, rule)
        assert status == 201, body
        records = f"{server}/api/{app}/code"
        status, body = await call(http, "POST", records, token, {"a": "x", "b": HUGE})
        assert refused(status, body) == [
            {
                "message": "rule evaluation error: invalid regular expression:"
                f" {REFUSAL} (character 1 of the pattern)",
                "rule": "expression",
            }
        ]
        assert await ready(http, server)
        status, body = await call(http, "POST", records, token, {"a": "abc", "b": "^z"})
        assert status == 201, body
