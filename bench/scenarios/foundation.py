"""The `foundation` set: the HTTP framework ceiling (`health`) and app login (`login`).

health: `GET /health` on rocketd and on the bare aiohttp baseline, 32 connections each, plus
        pgbench `select 1` (32 clients) for context.
login:  `POST /api/benchapp/auth/login` at bcrypt cost 10 and, after a restart, at cost 12,
        8 connections (bcrypt is CPU bound: more connections only queue), against pgbench
        running the SQL a login does (8 clients), plus one-thread bcrypt verify timings.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable

import bcrypt

from bench.harness import Bench
from bench.loadgen import SQL_DIR
from bench.processes import http_json
from bench.report import Measurement, ScenarioResult, percentile, ratio

HTTP_CONNECTIONS = 32
LOGIN_CONNECTIONS = 8
BCRYPT_COSTS = (10, 12)
# Login runs 3x the base duration: at cost 12 a request takes over a second and 8 requests
# finish in waves, so a 10 s window can gain or lose a whole wave (about 13 % of the count).
LOGIN_DURATION_FACTOR = 3
APP_NAME = "benchapp"
APP_DB = f"rocket_{APP_NAME}"
PLATFORM_CREDENTIALS = {"email": "platform@localhost", "password": "changeme"}
APP_CREDENTIALS = {"email": "admin@localhost", "password": "changeme"}
# A one-thread bcrypt timing stops after this many seconds or iterations, whichever comes first.
VERIFY_BUDGET_S = 3.0
VERIFY_MAX_ITERATIONS = 30


# --- health ----------------------------------------------------------------------------------


def health(bench: Bench) -> ScenarioResult:
    result = ScenarioResult("health", "GET /health, rocketd vs bare aiohttp (framework ceiling)")
    with bench.rocketd() as server:
        rocket = bench.wrk(
            server, "/health", name="rocketd GET /health", connections=HTTP_CONNECTIONS
        )
        bench.stop(server)
    with bench.hello() as server:
        bare = bench.wrk(
            server, "/health", name="bare aiohttp GET /health", connections=HTTP_CONNECTIONS
        )
        bench.stop(server)
    select1 = bench.pgbench(
        bench.management_db, SQL_DIR / "select1.sql", name="pgbench SELECT 1", clients=32
    )
    result.measurements = [rocket, bare, select1]
    result.ratios = [
        ratio(
            "rocketd / bare aiohttp",
            rocket,
            bare,
            "share of the bare aiohttp ceiling that rocketd keeps (its middlewares, routing, "
            "JSON body helper)",
        ),
        ratio(
            "rocketd / pgbench SELECT 1",
            rocket,
            select1,
            "context only: /health does not touch the database",
        ),
    ]
    result.notes = [
        f"wrk: 1 thread, 32 connections, keep-alive, {bench.config.duration_s} s per run after "
        f"a {bench.config.warmup_s} s warm-up.",
        "Both HTTP servers are single-process Python on uvloop with access logging off "
        "(rocketd at log level warning); wrk takes the other core.",
        f"pgbench: `-n -M prepared -c 32 -j 2 -T {bench.config.duration_s}` on the management "
        "database; average latency only (bench/README.md says why).",
    ]
    return result


# --- login -----------------------------------------------------------------------------------


def login(bench: Bench) -> ScenarioResult:
    result = ScenarioResult("login", "app login, bcrypt cost 10 vs 12, vs the login SQL in pgbench")
    bench.require_no_database(APP_DB)
    verifies = [_bcrypt_verify(cost) for cost in BCRYPT_COSTS]  # first, on a quiet machine
    logins = [
        _login_at_cost(bench, cost, result, create_app=cost == BCRYPT_COSTS[0])
        for cost in BCRYPT_COSTS
    ]
    sql_baseline = _login_sql_baseline(bench)
    result.measurements = [*logins, sql_baseline, *verifies]
    result.ratios = [
        *(
            ratio(
                f"login cost {cost} / login SQL", m, sql_baseline, "rocketd login vs its SQL alone"
            )
            for cost, m in zip(BCRYPT_COSTS, logins, strict=True)
        ),
        ratio(
            "login cost 12 / login cost 10",
            logins[1],
            logins[0],
            "throughput left when the bcrypt cost goes from 10 to 12",
        ),
    ]
    result.notes = _login_notes(logins, sql_baseline, verifies)
    result.notes.append(
        f"wrk: 1 thread, 8 connections, --timeout 10s, {logins[0].params['duration_s']} s per "
        f"run after a {bench.config.warmup_s} s warm-up; pgbench: `-n -M prepared -c 8 -j 2 "
        f"-T {bench.config.duration_s}` on {APP_DB}, its inserted rows deleted afterwards."
    )
    return result


def _login_at_cost(
    bench: Bench, cost: int, result: ScenarioResult, *, create_app: bool
) -> Measurement:
    """Start rocketd at `cost` (the same management database each time), log in once so the
    stored hash is re-hashed to `cost`, check it was, then measure."""
    with bench.rocketd(auth_bcrypt_cost=cost) as server:
        if create_app:
            _create_app(server.port)
        _login_once(server.port)
        stored = _stored_hash_cost(bench)
        if stored != cost:
            result.failures.append(f"stored hash has cost {stored} after a login at cost {cost}")
        measurement = bench.wrk(
            server,
            f"/api/{APP_NAME}/auth/login",
            name=f"rocketd app login, bcrypt cost {cost}",
            connections=LOGIN_CONNECTIONS,
            body=json.dumps(APP_CREDENTIALS),
            duration_s=LOGIN_DURATION_FACTOR * bench.config.duration_s,
        )
        bench.stop(server)
    measurement.params["bcrypt_cost"] = cost
    return measurement


def _create_app(port: int) -> None:
    status, body = http_json(port, "POST", "/api/_platform/auth/login", PLATFORM_CREDENTIALS)
    if status != 200:
        raise RuntimeError(f"platform login failed: {status} {body}")
    token = body["data"]["access_token"]
    status, body = http_json(port, "POST", "/api/_platform/apps", {"name": APP_NAME}, token=token)
    if status not in (200, 201):
        raise RuntimeError(f"creating app {APP_NAME} failed: {status} {body}")


def _login_once(port: int) -> None:
    status, body = http_json(port, "POST", f"/api/{APP_NAME}/auth/login", APP_CREDENTIALS)
    if status != 200 or "access_token" not in body.get("data", {}):
        raise RuntimeError(f"app login failed: {status} {body}")


def _stored_hash_cost(bench: Bench) -> int:
    rows = bench.query(
        APP_DB, "select password_hash from _users where email = %s", (APP_CREDENTIALS["email"],)
    )
    return int(str(rows[0][0]).split("$")[2])


def _login_sql_baseline(bench: Bench) -> Measurement:
    """pgbench runs the login's select + refresh-token insert; its rows are deleted afterwards."""
    family = str(uuid.uuid4())
    try:
        return bench.pgbench(
            APP_DB,
            SQL_DIR / "login.sql",
            name="pgbench login SQL (select user + insert refresh token)",
            clients=LOGIN_CONNECTIONS,
            variables={"family": family},
        )
    finally:
        bench.query(APP_DB, "delete from _refresh_tokens where family_id = %s", (family,))


def _bcrypt_verify(cost: int) -> Measurement:
    """One thread verifying the password against a hash of `cost`: the CPU a login cannot avoid."""
    password = APP_CREDENTIALS["password"].encode()
    hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds=cost))
    samples_us: list[int] = []
    deadline = time.monotonic() + VERIFY_BUDGET_S
    while len(samples_us) < VERIFY_MAX_ITERATIONS and (
        len(samples_us) < 3 or time.monotonic() < deadline
    ):
        start = time.perf_counter_ns()
        bcrypt.checkpw(password, hashed)
        samples_us.append((time.perf_counter_ns() - start) // 1000)
    ordered = sorted(samples_us)
    avg_ms = sum(ordered) / len(ordered) / 1000
    return Measurement(
        name=f"bcrypt verify, cost {cost} (1 thread, in-process)",
        tool="python",
        rate=1000 / avg_ms,
        unit="ops/s",
        requests=len(ordered),
        avg_ms=avg_ms,
        p50_ms=percentile(ordered, 50) / 1000,
        p99_ms=percentile(ordered, 99) / 1000,
        errors=0,
        params={"connections": 1, "bcrypt_cost": cost},
    )


def _login_notes(
    logins: list[Measurement], sql_baseline: Measurement, verifies: list[Measurement]
) -> list[str]:
    cores = _cores()
    notes = []
    for login_m, verify in zip(logins, verifies, strict=True):
        cost = login_m.params["bcrypt_cost"]
        ceiling = cores * verify.rate
        notes.append(
            f"cost {cost}: one bcrypt verify takes {verify.avg_ms:.1f} ms of one core, so "
            f"{cores} cores cap logins at about {ceiling:.0f}/s; measured "
            f"{login_m.rate:.1f}/s ({login_m.rate / ceiling:.0%} of that cap)."
        )
    extra_ms = verifies[1].avg_ms - verifies[0].avg_ms
    notes += [
        f"Going from cost 10 to 12 multiplies the hashing work by 4: +{extra_ms:.0f} ms of CPU "
        f"per login, {verifies[1].avg_ms / verifies[0].avg_ms:.1f}x measured.",
        f"bcrypt dominates: the login SQL alone takes {sql_baseline.avg_ms:.2f} ms on average (8 clients) "
        f"against {verifies[0].avg_ms:.0f} ms (cost 10) or {verifies[1].avg_ms:.0f} ms "
        "(cost 12) of hashing per login.",
        "The server was restarted with ROCKET_AUTH_BCRYPT_COST=12 on the same databases; the "
        "first login re-hashed the stored password to cost 12 (checked in _users before the "
        "measured run).",
        "The seeded admin keeps the default password, so every login also logs a "
        "'default password' warning; that logging is part of the measured cost.",
    ]
    return notes


def _cores() -> int:
    return os.cpu_count() or 1


SCENARIOS: dict[str, Callable[[Bench], ScenarioResult]] = {"health": health, "login": login}
