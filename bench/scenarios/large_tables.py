"""The `large-tables` set: lists on a million rows with a declared index, without totals, by
cursor, and an index built while writes run.

Each scenario starts one rocketd, creates the app `benchlarge` with a `product` entity (bigint
identity key, `category` of 100 values, `price`, `name`, `created_at`), seeds `SEED_ROWS` rows
(1,000,000; `BENCH_LARGE_ROWS` overrides it for a quick check of the harness) in one
`INSERT ... SELECT generate_series`, then declares the index `(category, -price)` through the
admin API and waits for its build (`CREATE INDEX CONCURRENTLY`, outside the admin transaction)
to be `ready`; the build time is in the notes.

list:   GET /product?filter[category]=c7&sort=-price&per_page=25 (10,000 match of 1,000,000),
        the same with `total=false`, and pgbench running the page query + COUNT(*) on the same
        rows (`sql/large_tables_list.sql`), in alternating rounds; ratios: rocketd / pgbench
        (target >= 0.8) and total=false / total.
deep:   page 1,000 of the plain list (primary-key order) and page 300 of the filtered list, by
        offset (`page=`) and by cursor (`after=` the `next_cursor` of the page before), one
        request at a time: latency.
build:  writes (POST /product, 16 connections) alone, then the same load while an index on
        `name` is declared and built on the million rows; ratio writes-during-build / writes
        (target >= 0.8) and no failed write.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote

import psycopg

from bench.cpu import CpuMeter, cpu_note
from bench.harness import SETTLE_S, Bench
from bench.loadgen import BENCH_DIR, SQL_DIR, parse_wrk
from bench.processes import ServerProcess, http_json
from bench.report import Measurement, Ratio, ScenarioResult, percentile, ratio
from bench.scenarios.data_api import ACCESS_TOKEN_TTL_S, WRK_GRACE_S, run_wrk, wrk_command

APP_NAME: Final = "benchlarge"
APP_DB: Final = f"rocket_{APP_NAME}"
PRODUCT_PATH: Final = f"/api/{APP_NAME}/product"
SEED_ROWS: Final = int(os.environ.get("BENCH_LARGE_ROWS", "1000000"))
CATEGORIES: Final = 100
LIST_QUERY: Final = "filter[category]=c7&sort=-price&per_page=25"
LIST_ROUNDS: Final = 3
LIST_CONNECTIONS: Final = 16  # the shared PostgreSQL of a dev machine runs out at 32 + others
WRITE_CONNECTIONS: Final = 16
DEEP_SAMPLES: Final = 50
BUILD_TIMEOUT_S: Final = 600.0
SCRIPT: Final = BENCH_DIR / "wrk" / "large_tables.lua"
PLATFORM_CREDENTIALS: Final = {"email": "platform@localhost", "password": "changeme"}
APP_CREDENTIALS: Final = {"email": "admin@localhost", "password": "changeme"}
LIST_INDEX: Final = {"fields": ["category", "-price"], "unique": False}
WRITE_INDEX: Final = {"fields": ["name"], "unique": False}

PRODUCT: Final[dict[str, Any]] = {
    "name": "product",
    "table": "products",
    "primary_key": {"field": "id", "type": "bigint", "generated": True},
    "fields": [
        {"name": "id", "type": "bigint"},
        {"name": "category", "type": "string", "required": True},
        {"name": "price", "type": "decimal", "precision": 2},
        {"name": "name", "type": "string"},
        {"name": "created_at", "type": "timestamp", "auto": "create"},
    ],
}

SEED_SQL: Final = f"""
insert into products (category, price, name, created_at)
select 'c' || (g % {CATEGORIES}), ((g::bigint * 7919) % 100000) / 100.0, 'product ' || g,
       now() - make_interval(secs => g)
  from generate_series(1, {SEED_ROWS}) g
"""


def _ok(status: int, body: Any, expected: tuple[int, ...], what: str) -> Any:
    if status not in expected:
        raise RuntimeError(f"{what} failed: {status} {body}")
    return body


def _prepare(bench: Bench, server: ServerProcess, result: ScenarioResult) -> tuple[str, float]:
    """App, entity, a million rows, the list index built; returns an app admin token and the
    seconds the build took."""
    if bench.database_exists(APP_DB):
        raise RuntimeError(f"database {APP_DB} exists; drop it first: dropdb {APP_DB}")
    port = server.port
    login = _ok(
        *http_json(port, "POST", "/api/_platform/auth/login", PLATFORM_CREDENTIALS), (200,), "login"
    )
    platform = login["data"]["access_token"]
    _ok(
        *http_json(port, "POST", "/api/_platform/apps", {"name": APP_NAME}, token=platform),
        (200, 201),
        "creating the app",
    )
    body = _ok(
        *http_json(port, "POST", f"/api/{APP_NAME}/auth/login", APP_CREDENTIALS),
        (200,),
        "app login",
    )
    token = str(body["data"]["access_token"])
    _ok(
        *http_json(port, "POST", f"/api/{APP_NAME}/_admin/entities", PRODUCT, token=token),
        (201,),
        "entity",
    )
    started = time.monotonic()
    with psycopg.connect(bench.dsn(APP_DB), autocommit=True) as conn:
        conn.execute(SEED_SQL.encode())
        conn.execute("vacuum analyze products")
    result.notes.append(f"seeded {SEED_ROWS:,} rows in {time.monotonic() - started:.1f} s")
    seconds = declare_and_wait(port, token, [LIST_INDEX])
    result.notes.append(
        f"index (category, price DESC) built concurrently on {SEED_ROWS:,} rows in {seconds:.1f} s"
        " (declared through the admin API, polled until its state was ready)"
    )
    return token, seconds


def declare_and_wait(port: int, token: str, indexes: list[dict[str, Any]]) -> float:
    """PUT the entity with `indexes`; seconds until every declared index is `ready`."""
    started = time.monotonic()
    _ok(
        *http_json(
            port,
            "PUT",
            f"/api/{APP_NAME}/_admin/entities/product",
            {**PRODUCT, "indexes": indexes},
            token=token,
        ),
        (200,),
        "declaring indexes",
    )
    while time.monotonic() - started < BUILD_TIMEOUT_S:
        status, body = http_json(
            port, "GET", f"/api/{APP_NAME}/_admin/entities/product", token=token
        )
        states = [
            i["state"] for i in _ok(status, body, (200,), "entity")["data"].get("indexes", [])
        ]
        if any(s.startswith("failed") for s in states):
            raise RuntimeError(f"index build failed: {states}")
        if len(states) == len(indexes) and all(s == "ready" for s in states):
            return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError("index build did not finish in time")


def _env(mode: str, token: str, query: str = "") -> dict[str, str]:
    return {
        "BENCH_MODE": mode,
        "BENCH_TOKEN": token,
        "BENCH_PATH": PRODUCT_PATH,
        "BENCH_QUERY": query,
    }


def _wrk(
    server: ServerProcess, env: dict[str, str], seconds: int, name: str, connections: int
) -> Measurement:
    with CpuMeter(APP_DB, server.pid) as meter:
        measured = run_wrk(server, env, seconds, name, script=SCRIPT, connections=connections)
    meter.attach(measured)
    return measured


# --- list --------------------------------------------------------------------------------------


def list_(bench: Bench) -> ScenarioResult:
    result = ScenarioResult(
        "list",
        f"filter + sort + page of 25 on {SEED_ROWS:,} rows with the matching declared index,"
        f" {LIST_ROUNDS} alternating rounds",
    )
    totals: list[Measurement] = []
    untotals: list[Measurement] = []
    baselines: list[Measurement] = []
    duration = bench.config.duration_s
    with bench.rocketd(auth_access_token_ttl=ACCESS_TOKEN_TTL_S) as server:
        token, _ = _prepare(bench, server, result)
        counted = _env("list", token, LIST_QUERY)
        uncounted = _env("list", token, LIST_QUERY + "&total=false")
        run_wrk(server, counted, bench.config.warmup_s, "warm-up", script=SCRIPT)
        for n in range(1, LIST_ROUNDS + 1):
            time.sleep(SETTLE_S)
            totals.append(
                _wrk(server, counted, duration, f"rocketd list, round {n}", LIST_CONNECTIONS)
            )
            time.sleep(SETTLE_S)
            untotals.append(
                _wrk(
                    server,
                    uncounted,
                    duration,
                    f"rocketd list total=false, round {n}",
                    LIST_CONNECTIONS,
                )
            )
            time.sleep(SETTLE_S)
            with CpuMeter(APP_DB) as meter:
                baseline = bench.pgbench(
                    APP_DB,
                    SQL_DIR / "large_tables_list.sql",
                    name=f"pgbench page + COUNT(*), round {n}",
                    clients=LIST_CONNECTIONS,
                    variables={"category": "c7"},
                )
            meter.attach(baseline)
            baselines.append(baseline)
        bench.stop(server)
    for m in [*totals, *untotals]:
        if m.errors:
            result.failures.append(f"{m.name}: {m.errors} errors")
    per_round = [t.rate / b.rate if b.rate else 0.0 for t, b in zip(totals, baselines, strict=True)]
    skip = [u.rate / t.rate if t.rate else 0.0 for u, t in zip(untotals, totals, strict=True)]
    middle = sorted(range(LIST_ROUNDS), key=per_round.__getitem__)[LIST_ROUNDS // 2]
    result.measurements = [
        m for trio in zip(totals, untotals, baselines, strict=True) for m in trio
    ]
    result.ratios = [
        Ratio(
            "rocketd / pgbench, list with index",
            totals[middle].name,
            baselines[middle].name,
            per_round[middle],
            "median of the rounds: "
            + ", ".join(f"{r:.3f}" for r in per_round)
            + " (target >= 0.8)",
        ),
        Ratio(
            "total=false / total, rocketd",
            untotals[middle].name,
            totals[middle].name,
            statistics.median(skip),
            "median of the rounds: " + ", ".join(f"{r:.3f}" for r in skip),
        ),
    ]
    if per_round[middle] < 0.8:
        result.notes.append(f"target missed: rocketd / pgbench {per_round[middle]:.3f} < 0.8")
    result.notes += [
        note for m in (totals[middle], baselines[middle]) if (note := cpu_note(m)) is not None
    ]
    return result


# --- deep pages --------------------------------------------------------------------------------


def _latencies(port: int, token: str, paths: dict[str, str]) -> list[Measurement]:
    """`DEEP_SAMPLES` sequential requests per path, the paths taking turns (so a slow spell of
    a shared machine lands on both): one measurement per path."""
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(DEEP_SAMPLES):
        for name, path in paths.items():
            started = time.perf_counter()
            _ok(*http_json(port, "GET", path, token=token), (200,), name)
            samples[name].append((time.perf_counter() - started) * 1000)
    out = []
    for name, values in samples.items():
        ordered = sorted(values)
        out.append(
            Measurement(
                name=name,
                tool="python",
                rate=1000 / statistics.fmean(ordered),
                unit="req/s",
                requests=len(ordered),
                avg_ms=statistics.fmean(ordered),
                p50_ms=statistics.median(ordered),
                p99_ms=percentile(ordered, 99),
                errors=0,
                params={"connections": 1, "path": paths[name]},
            )
        )
    return out


def _cursor_before(port: int, token: str, query: str, page: int) -> str:
    status, body = http_json(
        port, "GET", f"{PRODUCT_PATH}?{query}&page={page - 1}&total=false", token=token
    )
    cursor = _ok(status, body, (200,), "page before")["meta"].get("next_cursor")
    if not cursor:
        raise RuntimeError(f"no next_cursor on page {page - 1} of {query}")
    return str(cursor)


def deep(bench: Bench) -> ScenarioResult:
    result = ScenarioResult("deep", "a deep page by offset and by cursor, one request at a time")
    filtered_page = min(300, SEED_ROWS // CATEGORIES // 25)
    cases = [
        ("per_page=25", 1000, "plain list, page 1,000"),
        (LIST_QUERY, filtered_page, f"filtered list, page {filtered_page}"),
    ]
    with bench.rocketd(auth_access_token_ttl=ACCESS_TOKEN_TTL_S) as server:
        token, _ = _prepare(bench, server, result)
        for query, page, label in cases:
            cursor = _cursor_before(server.port, token, query, page)
            by_offset, by_cursor = _latencies(
                server.port,
                token,
                {
                    f"{label} by offset": f"{PRODUCT_PATH}?{query}&page={page}&total=false",
                    f"{label} by cursor": f"{PRODUCT_PATH}?{query}&after={quote(cursor)}",
                },
            )
            offset_ids = http_json(
                server.port, "GET", f"{PRODUCT_PATH}?{query}&page={page}&total=false", token=token
            )
            cursor_ids = http_json(
                server.port, "GET", f"{PRODUCT_PATH}?{query}&after={quote(cursor)}", token=token
            )
            if [r["id"] for r in offset_ids[1]["data"]] != [r["id"] for r in cursor_ids[1]["data"]]:
                result.failures.append(f"{label}: the cursor page differs from the offset page")
            result.measurements += [by_offset, by_cursor]
            result.ratios.append(
                Ratio(
                    f"offset / cursor latency (p50), {label}",
                    by_offset.name,
                    by_cursor.name,
                    (by_offset.p50_ms or 0) / (by_cursor.p50_ms or 1),
                    "how many times longer the offset page takes",
                )
            )
        bench.stop(server)
    result.notes.append(f"{DEEP_SAMPLES} sequential requests each; both answers are checked equal")
    return result


# --- an index build under writes ---------------------------------------------------------------


def build(bench: Bench) -> ScenarioResult:
    result = ScenarioResult("build", f"declaring an index on {SEED_ROWS:,} rows while writes run")
    duration = bench.config.duration_s
    with bench.rocketd(auth_access_token_ttl=ACCESS_TOKEN_TTL_S) as server:
        token, first_build = _prepare(bench, server, result)
        env = _env("create", token)
        run_wrk(
            server,
            env,
            bench.config.warmup_s,
            "warm-up",
            script=SCRIPT,
            connections=WRITE_CONNECTIONS,
        )
        time.sleep(SETTLE_S)
        alone = _wrk(server, env, duration, "writes alone", WRITE_CONNECTIONS)
        time.sleep(SETTLE_S)
        # The load must outlast the build: give it three times what the first build took.
        window = max(duration, int(3 * first_build) + 5)
        during, seconds = _writes_during_build(server, env, window)
        bench.stop(server)
    result.measurements = [alone, during]
    result.ratios = [
        ratio("writes during build / writes alone", during, alone, "target >= 0.8, no failed write")
    ]
    for m in (alone, during):
        if m.errors:
            result.failures.append(f"{m.name}: {m.errors} failed writes")
    result.notes.append(
        f"index on name built concurrently in {seconds:.1f} s under the write load; the load ran"
        f" {during.params.get('duration_s')} s around it (started 1 s before the declaration)"
    )
    if during.rate < 0.8 * alone.rate:
        result.notes.append("target missed: writes kept less than 0.8 of their throughput")
    return result


def _writes_during_build(
    server: ServerProcess, env: dict[str, str], duration: int
) -> tuple[Measurement, float]:
    """Start the write load, declare the second index 1 s later, wait for it; the load runs for
    `duration` seconds, which must cover the build (else the run fails and says so)."""
    seconds = duration
    argv = wrk_command(server, seconds, script=SCRIPT, connections=WRITE_CONNECTIONS)
    run_env = dict(os.environ) | env | {"BENCH_TAG": "build"}
    with CpuMeter(APP_DB, server.pid) as meter:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=run_env
        )
        time.sleep(1.0)
        token = env["BENCH_TOKEN"]
        built = declare_and_wait(server.port, token, [LIST_INDEX, WRITE_INDEX])
        out, err = proc.communicate(timeout=seconds + WRK_GRACE_S)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err or out}")
    params: dict[str, object] = {
        "connections": WRITE_CONNECTIONS,
        "threads": 1,
        "duration_s": seconds,
        "mode": "create",
    }
    measured = parse_wrk(out, name="writes during the index build", params=params)
    meter.attach(measured)
    if built + 1.0 > seconds:
        raise RuntimeError(
            f"the build took {built:.1f} s, longer than the {seconds} s write run: rerun with --duration {int(built) + 5}"
        )
    return measured, built


SCENARIOS: dict[str, Callable[[Bench], ScenarioResult]] = {
    "list": list_,
    "deep": deep,
    "build": build,
}
