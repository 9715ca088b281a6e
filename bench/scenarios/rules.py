"""The `rules` set: what five validation rules and a state machine cost a write (issue 4).

rule_cost:  one rocketd, the app `benchrules` with two entities of the same fields (uuid
            generated key, title, qty, unit_price, total, status with the enum draft/open/closed
            and the default draft): `plain` without rules, `ruled` with five `before_write` rules
            (field `min_length` on title, field `min` on qty, expression `record.qty > 1000`,
            expression `record.status == 'closed' && record.total == nil`, computed
            total = `record.qty * record.unit_price`) and a state machine on status (initial
            draft, draft -> open, open -> closed with a guard). Both tables are seeded with
            10,000 rows by SQL, and the rules are checked to be in force before measuring.
            Measured with wrk (32 connections, 1 thread), per operation a warm-up of each side,
            then rounds that alternate the order (plain then ruled, ruled then plain, ...):
              create: POST of the same body to each entity (wrk/post_json.lua);
              update: PUT {"title": ...} of random seeded ids (wrk/put_json.lua); the state
                      field is not sent, so the machine is consulted but no transition runs,
                      while every rule (the computed one included) runs on the merged record.
            A shared 2-core machine moves a single A/B pair by more than the effect measured,
            so the ratio reported is the median of the per-round ratios ruled / plain. The
            issue's target: >= 0.8 for create and update (a miss is reported in the notes, not
            a failure of the run).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import SETTLE_S, Bench
from bench.loadgen import BENCH_DIR, POST_JSON_LUA, find_wrk, parse_wrk
from bench.processes import ServerProcess, http_json
from bench.report import Measurement, Ratio, ScenarioResult, combine_runs

APP_NAME = "benchrules"
APP_DB = f"rocket_{APP_NAME}"
SEED_ROWS = 10_000
CONNECTIONS = 32
ROUNDS = 3  # per operation; each round measures both sides, the order alternating
ROUND_S = 8  # seconds per measured run (capped by --duration)
ACCESS_TOKEN_TTL_S = 3600  # longer than the whole run
TARGET = 0.8
WRK_GRACE_S = 60.0
PUT_JSON_LUA = BENCH_DIR / "wrk" / "put_json.lua"
PLATFORM_CREDENTIALS = {"email": "platform@localhost", "password": "changeme"}
ADMIN_CREDENTIALS = {"email": "admin@localhost", "password": "changeme"}
SIDES = ("plain", "ruled")

CREATE_BODY = json.dumps({"title": "bench item", "qty": 3, "unit_price": "2.50", "total": "7.50"})
UPDATE_BODY = json.dumps({"title": "bench item, updated"})


def _entity(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "table": name,
        "primary_key": {"field": "id", "type": "uuid", "generated": True},
        "fields": [
            {"name": "id", "type": "uuid"},
            {"name": "title", "type": "string", "required": True},
            {"name": "qty", "type": "int", "default": 1},
            {"name": "unit_price", "type": "decimal", "precision": 2, "default": 0},
            {"name": "total", "type": "decimal", "precision": 2},
            {
                "name": "status",
                "type": "string",
                "enum": ["draft", "open", "closed"],
                "default": "draft",
            },
        ],
    }


def _rule(type_: str, definition: dict[str, Any], priority: int) -> dict[str, Any]:
    return {
        "entity": "ruled",
        "hook": "before_write",
        "type": type_,
        "definition": definition,
        "priority": priority,
    }


RULES: list[dict[str, Any]] = [
    _rule(
        "field",
        {"field": "title", "operator": "min_length", "value": 3, "message": "title too short"},
        10,
    ),
    _rule("field", {"field": "qty", "operator": "min", "value": 1, "message": "qty below 1"}, 20),
    _rule("expression", {"expression": "record.qty > 1000", "message": "qty above 1000"}, 30),
    _rule(
        "expression",
        {
            "expression": "record.status == 'closed' && record.total == nil",
            "message": "a closed item needs a total",
        },
        40,
    ),
    _rule("computed", {"field": "total", "expression": "record.qty * record.unit_price"}, 50),
]
STATE_MACHINE: dict[str, Any] = {
    "entity": "ruled",
    "field": "status",
    "definition": {
        "initial": "draft",
        "transitions": [
            {"from": "draft", "to": "open"},
            {
                "from": "open",
                "to": "closed",
                "guard": "record.total != nil && record.qty > 0",
                "message": "an item is closed with a total",
            },
        ],
    },
}

_SEED = (
    "insert into {table} (title, qty, unit_price, total, status)"
    " select 'item ' || i, 1 + i %% 50, 2.50, (1 + i %% 50) * 2.50, 'draft'"
    " from generate_series(1, %s) as i"
)


def rule_cost(bench: Bench) -> ScenarioResult:
    result = ScenarioResult(
        "rule_cost",
        "create/update with 5 rules + a state machine vs the same entity without them",
    )
    bench.require_no_database(APP_DB)
    seconds = min(ROUND_S, bench.config.duration_s)
    runs: dict[str, list[Measurement]] = {}
    with (
        bench.rocketd(auth_access_token_ttl=ACCESS_TOKEN_TTL_S) as server,
        tempfile.TemporaryDirectory(prefix="rocketd-bench-rules-") as scratch,
    ):
        token = setup(bench, server.port)
        check(server.port, token, bench, result)
        id_files = write_id_files(bench, Path(scratch))

        for op in ("create", "update"):
            envs = {side: wrk_env(op, side, token, id_files[side]) for side in SIDES}
            if bench.config.warmup_s > 0:
                for side in SIDES:
                    run_wrk(server, op, envs[side], bench.config.warmup_s, f"{side} (warm-up)")
                time.sleep(SETTLE_S)
            for round_no in range(ROUNDS):
                order = SIDES if round_no % 2 == 0 else tuple(reversed(SIDES))
                for side in order:
                    name = f"{method(op)} {side} ({op})"
                    m = run_wrk(server, op, envs[side], seconds, name)
                    runs.setdefault(name, []).append(m)
                    if m.errors:
                        bench.failures.append(f"{name}: {m.errors} errors")
                    time.sleep(SETTLE_S)
        bench.stop(server)

    result.measurements = [_combine(name, ms) for name, ms in runs.items()]
    per_op: dict[str, list[float]] = {}
    for op in ("create", "update"):
        ruled = runs[f"{method(op)} ruled ({op})"]
        plain = runs[f"{method(op)} plain ({op})"]
        per_round = [r.rate / p.rate for r, p in zip(ruled, plain, strict=True)]
        per_op[op] = per_round
        result.ratios.append(
            Ratio(
                f"ruled / plain, {op}",
                f"{method(op)} ruled ({op})",
                f"{method(op)} plain ({op})",
                statistics.median(per_round),
                f"{op} throughput kept with 5 rules + a state machine, median of {ROUNDS} "
                f"rounds (target >= {TARGET}); rounds: " + ", ".join(f"{r:.3f}" for r in per_round),
            )
        )
    result.notes = _notes(bench, seconds, runs, result)
    return result


def id_file(directory: Path, side: str) -> Path:
    """Where `write_id_files` puts the seeded ids of `side`."""
    return directory / f"{side}-ids.txt"


def write_id_files(bench: Bench, directory: Path) -> dict[str, Path]:
    """Per side, a file of its seeded ids, one a line (wrk/put_json.lua picks them at random)."""
    files: dict[str, Path] = {}
    for side in SIDES:
        files[side] = id_file(directory, side)
        ids = bench.query(APP_DB, f"select id from {side} order by id")
        files[side].write_text("\n".join(str(r[0]) for r in ids) + "\n")
    return files


def reset(bench: Bench) -> None:
    """Back to the seeded rows: the creates' rows deleted (the updates keep the seeded rows,
    retitled), dead rows vacuumed."""
    title = json.loads(CREATE_BODY)["title"]
    for side in SIDES:
        bench.query(APP_DB, f"delete from {side} where title = %s", (title,))
        bench.query(APP_DB, f"vacuum analyze {side}")


def created_rows(bench: Bench, side: str) -> int:
    """Rows the create body made on `side` since the last reset."""
    title = json.loads(CREATE_BODY)["title"]
    return int(bench.query(APP_DB, f"select count(*) from {side} where title = %s", (title,))[0][0])


def method(op: str) -> str:
    return "POST" if op == "create" else "PUT"


def setup(bench: Bench, port: int) -> str:
    """App, entities, rules and machine through the admin API, seed rows by SQL; returns the
    admin token."""
    platform = _ok(
        *http_json(port, "POST", "/api/_platform/auth/login", PLATFORM_CREDENTIALS),
        "platform login",
    )["data"]["access_token"]
    _ok(
        *http_json(port, "POST", "/api/_platform/apps", {"name": APP_NAME}, token=platform),
        "creating the app",
    )
    token = admin_token(port)
    base = f"/api/{APP_NAME}/_admin"
    for side in SIDES:
        _ok(
            *http_json(port, "POST", f"{base}/entities", _entity(side), token=token),
            f"creating {side}",
        )
    for rule in RULES:
        _ok(*http_json(port, "POST", f"{base}/rules", rule, token=token), f"rule {rule}")
    _ok(
        *http_json(port, "POST", f"{base}/state-machines", STATE_MACHINE, token=token),
        "creating the state machine",
    )
    for side in SIDES:
        bench.query(APP_DB, _SEED.format(table=side), (SEED_ROWS,))
        bench.query(APP_DB, f"analyze {side}")
    return token


def admin_token(port: int) -> str:
    """An access token of the app's admin."""
    answer = http_json(port, "POST", f"/api/{APP_NAME}/auth/login", ADMIN_CREDENTIALS)
    return str(_ok(*answer, "admin login")["data"]["access_token"])


def check(port: int, token: str, bench: Bench, result: ScenarioResult) -> None:
    """The rules and the machine must be in force on `ruled` (and absent on `plain`)."""
    path = f"/api/{APP_NAME}"

    def expect(method: str, url: str, body: dict[str, Any], status: int, what: str) -> Any:
        got, answer = http_json(port, method, url, body, token=token)
        if got != status:
            result.failures.append(f"{what}: expected {status}, got {got} {answer}")
        return answer

    created = expect(
        "POST", f"{path}/ruled", {"title": "check", "qty": 4, "unit_price": "2.50"}, 201, "create"
    )
    record = created.get("data", {}) if isinstance(created, dict) else {}
    if str(record.get("total")) not in ("10.00", "10.0", "10") or record.get("status") != "draft":
        result.failures.append(f"computed total / initial state not applied: {record}")
    rid = record.get("id")
    expect("POST", f"{path}/ruled", {"title": "no", "qty": 0}, 422, "field rules")
    expect("POST", f"{path}/ruled", {"title": "many", "qty": 2000}, 422, "expression rule")
    expect("POST", f"{path}/plain", {"title": "no", "qty": 2000}, 201, "plain has no rules")
    if rid:
        item = f"{path}/ruled/{rid}"
        expect("PUT", item, {"status": "closed"}, 422, "draft -> closed is not a transition")
        expect("PUT", item, {"status": "open"}, 200, "draft -> open")
        expect("PUT", item, {"status": "closed"}, 200, "open -> closed (guard passes)")
        expect("PUT", item, json.loads(UPDATE_BODY), 200, "title update")
    for side in SIDES:
        bench.query(APP_DB, f"delete from {side} where left(title, 5) <> 'item '")


def wrk_env(op: str, side: str, token: str, ids: Path) -> dict[str, str]:
    return {
        "BENCH_TOKEN": token,
        "BENCH_PATH": f"/api/{APP_NAME}/{side}",
        "BENCH_IDS": str(ids),
        "BENCH_BODY": CREATE_BODY if op == "create" else UPDATE_BODY,
    }


def run_wrk(
    server: ServerProcess, op: str, env: dict[str, str], seconds: int, name: str
) -> Measurement:
    params: dict[str, object] = {
        "connections": CONNECTIONS,
        "threads": 1,
        "duration_s": seconds,
        "method": method(op),
    }
    argv = [
        find_wrk(),
        "--threads=1",
        f"--connections={CONNECTIONS}",
        f"--duration={seconds}s",
        "--timeout=10s",
        "--latency",
    ]
    if op == "create":
        # post_json.lua sends BENCH_BODY; the token goes in a header.
        argv += ["--header", f"Authorization: Bearer {env['BENCH_TOKEN']}"]
        argv += ["--script", str(POST_JSON_LUA), server.url(env["BENCH_PATH"])]
    else:
        argv += ["--script", str(PUT_JSON_LUA), server.url("/")]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=dict(os.environ) | env,
        timeout=seconds + WRK_GRACE_S,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return parse_wrk(proc.stdout, name=name, params=params)


def _combine(name: str, runs: list[Measurement]) -> Measurement:
    return combine_runs(name, runs, CONNECTIONS)


def _notes(
    bench: Bench, seconds: int, runs: dict[str, list[Measurement]], result: ScenarioResult
) -> list[str]:
    notes = [
        f"wrk: 1 thread, {CONNECTIONS} connections, keep-alive; per operation a "
        f"{bench.config.warmup_s} s warm-up of each side, then {ROUNDS} rounds of one {seconds} s "
        "run per side, the order alternating; the table shows each side's mean over its runs.",
        f"Create body {CREATE_BODY} to both entities (on ruled the computed rule overwrites "
        f"total); update body {UPDATE_BODY} to random ids of {SEED_ROWS:,} seeded rows per "
        "entity (no state change, so no transition runs).",
        "Checked before measuring: on ruled a create gets the computed total and the initial "
        "state, qty 0 / a short title / qty 2000 answer 422, draft -> closed answers 422, "
        "draft -> open -> closed answers 200; plain accepts qty 2000.",
    ]
    for name, ms in runs.items():
        notes.append(f"{name}: runs at {', '.join(f'{m.rate:,.0f}' for m in ms)} req/s.")
    for r in result.ratios:
        verdict = "meets" if r.value >= TARGET else "MISSES"
        notes.append(f"{r.name}: {r.value:.3f} {verdict} the target of {TARGET}.")
    return notes


def _ok(status: int, body: Any, what: str) -> Any:
    if status not in (200, 201):
        raise RuntimeError(f"{what} failed: {status} {body}")
    return body


SCENARIOS: dict[str, Callable[[Bench], ScenarioResult]] = {"rule_cost": rule_cost}
