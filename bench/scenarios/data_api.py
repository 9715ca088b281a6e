"""The `data-api` set: the data API under load against the SQL it needs, and metadata propagation.

Each of `list`, `get`, `create`, `nested`, `update` starts one rocketd (one process, the default
settings apart from a one-hour access token), creates the app `benchdata` with an `order` entity,
a `line` entity and the one-to-many relation `order_lines`, seeds 10,000 orders by SQL
(`sql/data_api_seed.sql`), checks one answer of the route against the database, then measures
the route with wrk (`wrk/data_api.lua`, 32 connections). Then the server stops and pgbench runs
the SQL a straightforward implementation sends for the same operation (`sql/data_api_<op>.sql`,
prepared, 32 clients) on the same table. Rows written by one side are deleted (and the table
vacuumed) before the other side runs, so both start from the same 10,000 rows.

list:    GET /api/benchdata/order?filter[status]=paid&sort=-created_at&per_page=25 (2,500 match)
         vs the page query + a separate COUNT(*);
get:     GET /api/benchdata/order/<random seeded id> vs one select by primary key;
create:  POST /api/benchdata/order (unique numbers) vs one INSERT ... RETURNING;
nested:  POST with 5 `order_lines` children vs parent + 5 child INSERTs in one transaction
         (plus, for context, the 5 children as one multi-row INSERT);
update:  PUT /api/benchdata/order/<random seeded id> {"status": "sent"} vs one UPDATE ... RETURNING.

Every measured run also records where the CPU went (`bench/cpu.py`): the rocketd process, the
PostgreSQL backends of the app database and the load generator, per request and in cores.

propagation: two rocketd processes on one management database; entities are created and then
changed through server A's admin API while the harness polls server B's data route and LISTENs
for the notification A's transaction sends (its arrival marks the commit).

The issue's reference ratios and the targets (1.3x each reference, list at least 0.8x, and p99 at
most 2x p50) are evaluated in the notes and in the rocketd measurement's params; a missed target
is a result, not a failure of the run.

The servers run whatever `import rocketd` finds; to measure a commit while the tree is being
edited, export it and point PYTHONPATH at the export (the notes name the code that ran):

    git archive HEAD rocketd | tar -x -C /tmp/rocketd-head
    PYTHONPATH=/tmp/rocketd-head .venv/bin/python -m bench data-api

To compare two commits, `python -m bench ab` runs both on the same seeded app in alternating
rounds (bench/README.md, "Comparing two versions").
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from bench.cpu import CpuMeter, cpu_note
from bench.harness import SETTLE_S, Bench
from bench.loadgen import BENCH_DIR, SQL_DIR, find_wrk, parse_wrk
from bench.processes import ServerProcess, http_json
from bench.report import Measurement, Ratio, ScenarioResult, percentile, ratio
from bench.versions import code_digest

APP_NAME = "benchdata"
APP_DB = f"rocket_{APP_NAME}"
ORDER_PATH = f"/api/{APP_NAME}/order"
LIST_QUERY = "filter[status]=paid&sort=-created_at&per_page=25"
SEED_ROWS = 10_000
PAID_ROWS = SEED_ROWS // 4  # the seed cycles four statuses
NESTED_CHILDREN = 5
CONNECTIONS = 32
# Long enough for every run of a scenario (the default is 900 s).
ACCESS_TOKEN_TTL_S = 3600
DATA_API_LUA = BENCH_DIR / "wrk" / "data_api.lua"
PLATFORM_CREDENTIALS = {"email": "platform@localhost", "password": "changeme"}
APP_CREDENTIALS = {"email": "admin@localhost", "password": "changeme"}
# Grace added to a wrk run's duration before it is considered hung.
WRK_GRACE_S = 60.0
# Propagation: changes measured per kind, an unmeasured one first, and the poll deadline.
PROPAGATION_CHANGES = 20
PROPAGATION_DEADLINE_S = 10.0
PROPAGATION_POLL_PAUSE_S = 0.001

ORDER_ENTITY: dict[str, Any] = {
    "name": "order",
    "table": "orders",
    "primary_key": {"field": "id", "type": "uuid", "generated": True},
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "number", "type": "string", "required": True, "unique": True},
        {
            "name": "status",
            "type": "string",
            "default": "draft",
            "enum": ["draft", "sent", "paid", "void"],
        },
        {"name": "total", "type": "decimal", "precision": 2, "default": 0},
        {"name": "created_at", "type": "timestamp", "auto": "create"},
    ],
}
LINE_ENTITY: dict[str, Any] = {
    "name": "line",
    "table": "order_lines",
    "primary_key": {"field": "id", "type": "uuid", "generated": True},
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "order_id", "type": "uuid", "required": True},
        {"name": "description", "type": "string"},
        {"name": "qty", "type": "int"},
    ],
}
ORDER_LINES: dict[str, Any] = {
    "name": "order_lines",
    "type": "one_to_many",
    "source": "order",
    "target": "line",
    "source_key": "id",
    "target_key": "order_id",
    "ownership": "source",
    "on_delete": "cascade",
}
# The bodies wrk/data_api.lua sends (the checks send the same).
CREATE_FIELDS = {"status": "draft", "total": "12.50"}
NESTED_LINES = [{"description": f"line {i}", "qty": i} for i in range(1, NESTED_CHILDREN + 1)]
UPDATE_BODY = {"status": "sent"}
RECORD_COLUMNS = ("id", "number", "status", "total", "created_at")


@dataclass(frozen=True)
class Target:
    """The issue's reference ratio (rocketd / pgbench, one run of the reference implementation)
    and the ratio rocketd must reach with one worker."""

    reference: float
    minimum: float


TARGETS: dict[str, Target] = {
    "list": Target(0.54, max(1.3 * 0.54, 0.8)),
    "get": Target(0.032, 1.3 * 0.032),
    "create": Target(0.05, 1.3 * 0.05),
    "nested": Target(0.045, 1.3 * 0.045),
    "update": Target(0.05, 1.3 * 0.05),
}
P99_OVER_P50_MAX = 2.0


@dataclass(frozen=True)
class Operation:
    name: str
    title: str
    rocketd_name: str
    pgbench_name: str
    rocketd_sql: str  # what rocketd sends per request (from rocketd/engine), for the notes


LIST_ROUNDS = 5

OPERATIONS: dict[str, Operation] = {
    "list": Operation(
        "list",
        "list: one filter + sort + page of 25 on 10,000 orders, vs page query + COUNT(*)",
        f"rocketd GET {ORDER_PATH}?{LIST_QUERY}",
        "pgbench page query + COUNT(*) (2 statements)",
        "one statement: no index serves the sort on created_at, so the matches are scanned once"
        " into a MATERIALIZED CTE that is counted and top-N sorted, and PostgreSQL writes each"
        " record's JSON (rocketd/engine/sql_compose.py build_list_page, engine/wire_sql.py)",
    ),
    "get": Operation(
        "get",
        "get by id: a random seeded order, vs one select by primary key",
        f"rocketd GET {ORDER_PATH}/<id>",
        "pgbench select by primary key",
        "one select by primary key",
    ),
    "create": Operation(
        "create",
        "create flat: one order, vs one INSERT ... RETURNING",
        f"rocketd POST {ORDER_PATH}",
        "pgbench INSERT ... RETURNING",
        "BEGIN, INSERT ... RETURNING the record, COMMIT",
    ),
    "nested": Operation(
        "nested",
        "nested create: one order with 5 lines, vs parent + 5 child INSERTs in one transaction",
        f"rocketd POST {ORDER_PATH} with 5 order_lines",
        "pgbench BEGIN, parent INSERT, 5 child INSERTs, COMMIT",
        "BEGIN, parent INSERT, 5 child INSERTs, the re-read of the parent, COMMIT",
    ),
    "update": Operation(
        "update",
        "update by id: status of a random seeded order, vs one UPDATE ... RETURNING",
        f"rocketd PUT {ORDER_PATH}/<id>",
        "pgbench UPDATE ... RETURNING",
        "BEGIN, SELECT ... FOR UPDATE, UPDATE ... RETURNING the record, COMMIT",
    ),
}


# --- the five operations -----------------------------------------------------------------------


def list_(bench: Bench) -> ScenarioResult:
    return _measure_operation(bench, OPERATIONS["list"])


def get(bench: Bench) -> ScenarioResult:
    return _measure_operation(bench, OPERATIONS["get"])


def create(bench: Bench) -> ScenarioResult:
    return _measure_operation(bench, OPERATIONS["create"])


def nested(bench: Bench) -> ScenarioResult:
    return _measure_operation(bench, OPERATIONS["nested"])


def update(bench: Bench) -> ScenarioResult:
    return _measure_operation(bench, OPERATIONS["update"])


def _measure_operation(bench: Bench, op: Operation) -> ScenarioResult:
    if op.name == "list":
        return _measure_list(bench, op)
    result = ScenarioResult(op.name, op.title)
    bench.require_no_database(APP_DB)
    ids_file = bench.workdir / "order-ids.txt"
    with bench.rocketd(auth_access_token_ttl=ACCESS_TOKEN_TTL_S) as server:
        token = _prepare(bench, server, op, ids_file, result)
        warm, rocket = _wrk_data(bench, server, op, token, ids_file)
        bench.stop(server)
    check_rocketd_writes(bench, op.name, warm.requests + rocket.requests, result)
    reset(bench)
    variables = {"status": "paid"} if op.name == "list" else {}
    baseline = _pgbench(bench, f"data_api_{op.name}.sql", op.pgbench_name, variables)
    _check_pgbench_writes(bench, op.name, baseline.requests, result)
    measurements = [rocket, baseline]
    if op.name == "nested":
        reset(bench)
        multirow = _pgbench(
            bench,
            "data_api_nested_multirow.sql",
            "pgbench BEGIN, parent INSERT, one 5-row child INSERT, COMMIT (context)",
        )
        measurements.append(multirow)
    reset(bench)

    result.measurements = measurements
    main = ratio(
        f"rocketd / pgbench, {op.name}",
        rocket,
        baseline,
        "share of the equivalent SQL's throughput that rocketd keeps, one process",
    )
    result.ratios = [main]
    if op.name == "nested":
        result.ratios.append(
            ratio(
                "rocketd / pgbench multi-row children, nested",
                rocket,
                measurements[2],
                "context: against the children sent as one INSERT",
            )
        )
    result.notes = [
        *_target_notes(op.name, rocket, main.value),
        f"rocketd sends per request: {op.rocketd_sql}.",
        *(note for m in measurements if (note := cpu_note(m)) is not None),
        *_operation_notes(bench, op.name),
        _server_code_note(),
    ]
    return result


def _prepare(
    bench: Bench, server: ServerProcess, op: Operation, ids_file: Path, result: ScenarioResult
) -> str:
    """App, schema, seeded rows, the ids file and the answer check; returns the admin token."""
    token = create_app(server.port)
    create_schema(server.port, token)
    seed(bench)
    write_ids(bench, ids_file)
    CHECKS[op.name](bench, server.port, token, result)
    reset(bench)
    return token


def _measure_list(bench: Bench, op: Operation) -> ScenarioResult:
    """list in LIST_ROUNDS alternating rounds (rocketd, then pgbench, the server idle beside it);
    the ratio is the median of the per-round ratios. Reads change nothing, so both sides can
    alternate on the same rows, and alternating keeps a slow spell of this shared machine from
    landing on one side only (single runs of the same code moved between 0.52 and 1.24)."""
    result = ScenarioResult(op.name, f"{op.title}, {LIST_ROUNDS} alternating rounds")
    bench.require_no_database(APP_DB)
    ids_file = bench.workdir / "order-ids.txt"
    rockets: list[Measurement] = []
    baselines: list[Measurement] = []
    with bench.rocketd(auth_access_token_ttl=ACCESS_TOKEN_TTL_S) as server:
        token = _prepare(bench, server, op, ids_file, result)
        env = wrk_env(op, token, ids_file)
        run_wrk(server, env, bench.config.warmup_s, f"{op.rocketd_name} (warm-up)")
        for n in range(1, LIST_ROUNDS + 1):
            time.sleep(SETTLE_S)
            with CpuMeter(APP_DB, server.pid) as meter:
                measured = run_wrk(
                    server, env, bench.config.duration_s, f"{op.rocketd_name}, round {n}"
                )
            meter.attach(measured)
            if measured.errors:
                bench.failures.append(f"{measured.name}: {measured.errors} errors")
            time.sleep(SETTLE_S)
            baseline = _pgbench(
                bench, "data_api_list.sql", f"{op.pgbench_name}, round {n}", {"status": "paid"}
            )
            rockets.append(measured)
            baselines.append(baseline)
        bench.stop(server)
    per_round = [
        r.rate / b.rate if b.rate else 0.0 for r, b in zip(rockets, baselines, strict=True)
    ]
    middle = sorted(range(len(per_round)), key=per_round.__getitem__)[len(per_round) // 2]
    value = per_round[middle]
    result.measurements = [m for pair in zip(rockets, baselines, strict=True) for m in pair]
    result.ratios = [
        Ratio(
            f"rocketd / pgbench, {op.name}",
            rockets[middle].name,
            baselines[middle].name,
            value,
            "share of the equivalent SQL's throughput that rocketd keeps, one process; median "
            "of the rounds: " + ", ".join(f"{r:.3f}" for r in per_round),
        )
    ]
    result.notes = [
        *_target_notes(op.name, rockets[middle], value),
        f"{LIST_ROUNDS} rounds, each {bench.config.duration_s} s of wrk then "
        f"{bench.config.duration_s} s of pgbench; the target lines and CPU figures are those of "
        f"the median round ({middle + 1}).",
        f"rocketd sends per request: {op.rocketd_sql}.",
        *(note for m in (rockets[middle], baselines[middle]) if (note := cpu_note(m)) is not None),
        *_operation_notes(bench, op.name),
        _server_code_note(),
    ]
    return result


def _pgbench(
    bench: Bench, script: str, name: str, variables: dict[str, str] | None = None
) -> Measurement:
    with CpuMeter(APP_DB) as meter:
        measurement = bench.pgbench(
            APP_DB, SQL_DIR / script, name=name, clients=CONNECTIONS, variables=variables
        )
    meter.attach(measurement)
    return measurement


# --- app, schema, seed -------------------------------------------------------------------------


def _ok(status: int, body: Any, expected: tuple[int, ...], what: str) -> Any:
    if status not in expected:
        raise RuntimeError(f"{what} failed: {status} {body}")
    return body


def create_app(port: int) -> str:
    """Create the app through the platform API; return an app admin access token."""
    body = _ok(
        *http_json(port, "POST", "/api/_platform/auth/login", PLATFORM_CREDENTIALS),
        (200,),
        "platform login",
    )
    platform_token = body["data"]["access_token"]
    _ok(
        *http_json(port, "POST", "/api/_platform/apps", {"name": APP_NAME}, token=platform_token),
        (200, 201),
        f"creating app {APP_NAME}",
    )
    return app_login(port)


def app_login(port: int) -> str:
    body = _ok(
        *http_json(port, "POST", f"/api/{APP_NAME}/auth/login", APP_CREDENTIALS),
        (200,),
        "app login",
    )
    return str(body["data"]["access_token"])


def create_schema(port: int, token: str) -> None:
    for kind, definition in (
        ("entities", ORDER_ENTITY),
        ("entities", LINE_ENTITY),
        ("relations", ORDER_LINES),
    ):
        _ok(
            *http_json(port, "POST", f"/api/{APP_NAME}/_admin/{kind}", definition, token=token),
            (201,),
            f"creating {definition['name']}",
        )


def _execute(bench: Bench, statement: str) -> None:
    """Run SQL text as it is (no parameters, so `%` needs no escaping) on the app database."""
    with psycopg.connect(bench.dsn(APP_DB), autocommit=True) as conn:
        conn.execute(statement.encode())


def seed(bench: Bench) -> None:
    _execute(bench, (SQL_DIR / "data_api_seed.sql").read_text())
    _execute(bench, "vacuum analyze orders, order_lines")
    count = bench.query(APP_DB, "select count(*) from orders")[0][0]
    if count != SEED_ROWS:
        raise RuntimeError(f"seeded {count} orders, expected {SEED_ROWS}")


def write_ids(bench: Bench, path: Path) -> None:
    """The seeded ids, one a line, for wrk/data_api.lua (get and update pick one at random)."""
    rows = bench.query(APP_DB, "select id::text from orders order by number")
    path.write_text("".join(f"{row[0]}\n" for row in rows))


def reset(bench: Bench) -> None:
    """Back to the seed: delete written rows, restore the statuses, vacuum."""
    _execute(bench, "delete from order_lines")
    _execute(bench, "delete from orders where number not like 'O-%'")
    _execute(
        bench,
        "update orders set status = s.status from (select o.id,"
        " (array['draft', 'sent', 'paid', 'void'])[1 + substr(o.number, 3)::int % 4] as status"
        " from orders o where o.number like 'O-%') s"
        " where orders.id = s.id and orders.status <> s.status",
    )
    _execute(bench, "vacuum analyze orders, order_lines")


# --- checks: one answer per route, compared with the database ---------------------------------


def _row_record(row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "id": str(row[0]),
        "number": row[1],
        "status": row[2],
        "total": f"{row[3]:.2f}",
    }


def _same_record(record: dict[str, Any], row: tuple[Any, ...]) -> bool:
    return {k: record.get(k) for k in ("id", "number", "status", "total")} == _row_record(row)


def _select_columns() -> str:
    return ", ".join(RECORD_COLUMNS)


def _check_list(bench: Bench, port: int, token: str, result: ScenarioResult) -> None:
    status, body = http_json(port, "GET", f"{ORDER_PATH}?{LIST_QUERY}", token=token)
    _ok(status, body, (200,), "list")
    rows = bench.query(
        APP_DB,
        f"select {_select_columns()} from orders where status = 'paid'"
        " order by created_at desc, id limit 25",
    )
    records = body.get("data", [])
    if body.get("meta") != {"page": 1, "per_page": 25, "total": PAID_ROWS}:
        result.failures.append(f"list meta is {body.get('meta')}, expected total {PAID_ROWS}")
    if len(records) != len(rows) or not all(
        _same_record(r, row) for r, row in zip(records, rows, strict=False)
    ):
        result.failures.append("list page differs from the page query's rows")


def _check_get(bench: Bench, port: int, token: str, result: ScenarioResult) -> None:
    row = bench.query(APP_DB, f"select {_select_columns()} from orders where number = 'O-4242'")[0]
    status, body = http_json(port, "GET", f"{ORDER_PATH}/{row[0]}", token=token)
    _ok(status, body, (200,), "get")
    if not _same_record(body.get("data", {}), row):
        result.failures.append(f"get answered {body.get('data')}, the row is {row}")


def _check_create(bench: Bench, port: int, token: str, result: ScenarioResult) -> None:
    sent = {"number": "CHECK-1", **CREATE_FIELDS}
    status, body = http_json(port, "POST", ORDER_PATH, sent, token=token)
    _ok(status, body, (201,), "create")
    record = body.get("data", {})
    rows = bench.query(
        APP_DB, f"select {_select_columns()} from orders where id = %s", (record.get("id"),)
    )
    if len(rows) != 1 or not _same_record(record, rows[0]) or record["number"] != "CHECK-1":
        result.failures.append(f"create answered {record}, stored {rows}")


def _check_nested(bench: Bench, port: int, token: str, result: ScenarioResult) -> None:
    sent = {"number": "CHECK-2", **CREATE_FIELDS, "order_lines": {"data": NESTED_LINES}}
    status, body = http_json(port, "POST", ORDER_PATH, sent, token=token)
    _ok(status, body, (201,), "nested create")
    record = body.get("data", {})
    lines = bench.query(
        APP_DB,
        "select description, qty from order_lines where order_id = %s order by qty",
        (record.get("id"),),
    )
    expected = [(line["description"], line["qty"]) for line in NESTED_LINES]
    if lines != expected or record.get("number") != "CHECK-2":
        result.failures.append(f"nested create answered {record}, stored lines {lines}")


def _check_update(bench: Bench, port: int, token: str, result: ScenarioResult) -> None:
    row = bench.query(APP_DB, "select id from orders where number = 'O-4241'")[0]
    status, body = http_json(port, "PUT", f"{ORDER_PATH}/{row[0]}", UPDATE_BODY, token=token)
    _ok(status, body, (200,), "update")
    stored = bench.query(APP_DB, f"select {_select_columns()} from orders where id = %s", row)
    record = body.get("data", {})
    if record.get("status") != "sent" or not _same_record(record, stored[0]):
        result.failures.append(f"update answered {record}, stored {stored}")


CHECKS: dict[str, Callable[[Bench, int, str, ScenarioResult], None]] = {
    "list": _check_list,
    "get": _check_get,
    "create": _check_create,
    "nested": _check_nested,
    "update": _check_update,
}


def _written(bench: Bench, prefix: str) -> tuple[int, int]:
    """(orders whose number starts with `prefix`, their lines), from one statement: one snapshot,
    so a nested create still in flight when the load generator stopped counts wholly or not at
    all (two statements could see its lines but not its order)."""
    orders, lines = bench.query(
        APP_DB,
        "select (select count(*) from orders where number like %s),"
        " (select count(*) from order_lines l join orders o on o.id = l.order_id"
        " where o.number like %s)",
        (prefix + "%", prefix + "%"),
    )[0]
    return int(orders), int(lines)


def _check_writes(
    bench: Bench, op: str, prefix: str, requests: int, who: str, result: ScenarioResult
) -> None:
    """Every answered create made a row (a request still in flight when the load generator
    stopped may add one more), and every nested create exactly 5 lines."""
    if op not in ("create", "nested"):
        return
    orders, lines = _written(bench, prefix)
    if orders < requests:
        result.failures.append(f"{who}: {requests} creates answered, {orders} orders stored")
    expected_lines = NESTED_CHILDREN * orders if op == "nested" else 0
    if lines != expected_lines:
        result.failures.append(f"{who}: {orders} orders stored with {lines} lines")


def check_rocketd_writes(bench: Bench, op: str, requests: int, result: ScenarioResult) -> None:
    _check_writes(bench, op, "W-", requests, "rocketd", result)


def _check_pgbench_writes(bench: Bench, op: str, requests: int, result: ScenarioResult) -> None:
    _check_writes(bench, op, "P-", requests, "pgbench", result)


# --- wrk with wrk/data_api.lua -------------------------------------------------------------------


def _wrk_data(
    bench: Bench, server: ServerProcess, op: Operation, token: str, ids_file: Path
) -> tuple[Measurement, Measurement]:
    """A warm-up run, a pause, the measured run (like Bench.wrk, with the data API script and
    its token); returns both. Non-2xx answers and socket errors of the measured run are
    failures of the scenario."""
    env = wrk_env(op, token, ids_file)
    warm = run_wrk(server, env, bench.config.warmup_s, f"{op.rocketd_name} (warm-up)")
    time.sleep(SETTLE_S)
    with CpuMeter(APP_DB, server.pid) as meter:
        measured = run_wrk(server, env, bench.config.duration_s, op.rocketd_name)
    meter.attach(measured)
    if measured.errors:
        bench.failures.append(f"{measured.name}: {measured.errors} errors")
    return warm, measured


def wrk_env(op: Operation, token: str, ids_file: Path) -> dict[str, str]:
    return {
        "BENCH_MODE": op.name,
        "BENCH_TOKEN": token,
        "BENCH_PATH": ORDER_PATH,
        "BENCH_QUERY": LIST_QUERY,
        "BENCH_IDS": str(ids_file),
    }


def wrk_command(
    server: ServerProcess,
    seconds: int,
    *,
    script: Path = DATA_API_LUA,
    connections: int = CONNECTIONS,
) -> list[str]:
    """The wrk command line of one authenticated run (the token and the rest come by `env`)."""
    return [
        find_wrk(),
        "--threads=1",
        f"--connections={connections}",
        f"--duration={seconds}s",
        "--timeout=10s",
        "--latency",
        "--script",
        str(script),
        server.url("/"),
    ]


def run_wrk(
    server: ServerProcess,
    env: dict[str, str],
    seconds: int,
    name: str,
    *,
    script: Path = DATA_API_LUA,
    connections: int = CONNECTIONS,
) -> Measurement:
    params: dict[str, object] = {
        "connections": connections,
        "threads": 1,
        "duration_s": seconds,
        "mode": env["BENCH_MODE"],
    }
    if seconds <= 0:
        return Measurement(name, "wrk", 0.0, "req/s", 0, 0.0, None, None, 0, params)
    argv = wrk_command(server, seconds, script=script, connections=connections)
    run_env = dict(os.environ) | env | {"BENCH_TAG": secrets.token_hex(4)}
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=run_env,
        timeout=seconds + WRK_GRACE_S,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return parse_wrk(proc.stdout, name=name, params=params)


def _server_code_note() -> str:
    """Which rocketd source the servers ran: the directory `import rocketd` finds with this
    environment (PYTHONPATH can point it at an export of a commit) and a digest of its .py files."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os, rocketd; print(os.path.dirname(rocketd.__file__))"],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        env={k: v for k, v in os.environ.items() if not k.startswith("ROCKET_")},
        timeout=30,
        check=False,
    )
    where = Path(proc.stdout.strip() or ".")
    return f"rocketd code under test: {where} (sha256 of its .py files {code_digest(where)})."


# --- targets and notes ---------------------------------------------------------------------------


def _target_notes(op: str, rocket: Measurement, value: float) -> list[str]:
    target = TARGETS[op]
    met = value >= target.minimum
    rocket.params |= {
        "reference_ratio": target.reference,
        "target_ratio": round(target.minimum, 4),
        "ratio": round(value, 4),
        "ratio_target_met": met,
    }
    how = "1.3x the reference, and at least 0.8" if op == "list" else "1.3x the reference"
    notes = [
        f"Target ratio ({how}): at least {target.minimum:.3f}; reference implementation "
        f"{target.reference:.3f}. Measured {value:.3f} = {value / target.reference:.2f}x the "
        f"reference: **{'met' if met else 'missed'}**"
        + ("." if met else f" (reached {value / target.minimum:.0%} of the target).")
    ]
    if rocket.p50_ms and rocket.p99_ms:
        spread = rocket.p99_ms / rocket.p50_ms
        tail_met = spread <= P99_OVER_P50_MAX
        rocket.params |= {"p99_over_p50": round(spread, 2), "p99_target_met": tail_met}
        notes.append(
            f"Target p99 <= 2x p50: p50 {rocket.p50_ms:.2f} ms, p99 {rocket.p99_ms:.2f} ms "
            f"({spread:.2f}x): **{'met' if tail_met else 'missed'}**."
        )
    return notes


def _operation_notes(bench: Bench, op: str) -> list[str]:
    d, w = bench.config.duration_s, bench.config.warmup_s
    notes = [
        f"rocketd: one process, default settings (app pool of 5 connections), log level "
        f"{bench.config.log_level}, access tokens valid {ACCESS_TOKEN_TTL_S} s; wrk: 1 thread, "
        f"{CONNECTIONS} connections, keep-alive, wrk/data_api.lua, {d} s after a {w} s warm-up.",
        f"pgbench: `-n -M prepared -c {CONNECTIONS} -j 2 -T {d}` on {APP_DB}, after the server "
        "stopped; average latency only (bench/README.md says why).",
        f"Both sides start from the same {SEED_ROWS:,} seeded orders (written rows deleted, "
        "statuses restored, `vacuum analyze` in between).",
    ]
    if op in ("get", "update"):
        notes.append(
            "Ids: each request picks one of the 10,000 seeded orders at random. The seed derives "
            "each id from its number (id = md5('O-' || n)::uuid), so pgbench addresses a random "
            "row with `\\set n random(1, 10000)` and `where id = md5('O-' || :n)::uuid`: a "
            "primary-key index lookup with no helper table and no extra statement (a lookup by "
            "the unique `number` would use a different index than rocketd)."
        )
    if op in ("create", "nested"):
        notes.append(
            "Numbers are unique per request (rocketd: W-<run tag>-<thread>-<counter>; pgbench: "
            "P-<random 63-bit>); after each side the harness checked that every answered "
            "create stored an order" + (" with exactly 5 lines." if op == "nested" else ".")
        )
    if op == "list":
        notes.append(
            f"filter status = paid matches {PAID_ROWS:,} of {SEED_ROWS:,} rows; no index on "
            "status or created_at (the entity declares none), so both sides scan and sort."
        )
    return notes


# --- propagation -------------------------------------------------------------------------------


def propagation(bench: Bench) -> ScenarioResult:
    result = ScenarioResult(
        "propagation",
        "metadata propagation: a change through server A's admin API until server B serves it",
    )
    bench.require_no_database(APP_DB)
    with (
        bench.rocketd(auth_access_token_ttl=ACCESS_TOKEN_TTL_S) as a,
        bench.rocketd(auth_access_token_ttl=ACCESS_TOKEN_TTL_S) as b,
    ):
        token = create_app(a.port)
        _poll_until(lambda: _app_login_status(b.port) == 200, "server B knows the app")
        created, updated = asyncio.run(_propagate(bench, a.port, b.port, token))
        bench.stop(b)
        bench.stop(a)
    result.measurements = [
        _latency_measurement("B serves the new entity, after the commit", created.b_after_commit),
        _latency_measurement("B serves the new field, after the commit", updated.b_after_commit),
        _latency_measurement("B serves the new entity, after A answered", created.b_after_a),
        _latency_measurement("B serves the new field, after A answered", updated.b_after_a),
        _latency_measurement("A's admin call, entity create", created.a_call),
        _latency_measurement("A's admin call, field added", updated.a_call),
    ]
    result.notes = [
        _spread_note("Entity created on A: B serves it after the commit", created.b_after_commit),
        _spread_note("Field added on A: B serves it after the commit", updated.b_after_commit),
        _spread_note("Entity created on A: B serves it after A answered", created.b_after_a),
        _spread_note("Field added on A: B serves it after A answered", updated.b_after_a),
        f"{PROPAGATION_CHANGES} changes of each kind, after one unmeasured change of that kind: "
        "creates are new entities (a table each) through `POST /_admin/entities`; updates add "
        "one string field to one entity (which has one record) through "
        "`PUT /_admin/entities/<name>`.",
        "How: in one asyncio loop the harness sends the change to A, polls B's data route "
        f"(keep-alive connection, {PROPAGATION_POLL_PAUSE_S * 1000:.0f} ms pause between polls; "
        "a poll takes about 1 ms, so the resolution is about 2 ms) until B serves it, and "
        f"LISTENs on `{APP_DB}` for the `rocket_metadata` notification that A's transaction "
        "sends. PostgreSQL delivers it when that transaction commits, to B's listener and to "
        "the harness alike, so its arrival marks the commit. B serves a create when "
        "`GET /<entity>` answers 200 instead of 404, an update when the record carries the "
        "new field.",
        "'After the commit' is what the notification path costs: B's listener, the registry "
        "reload, the swap. 'After A answered' is what a client that wrote through A sees on "
        "B; it is negative when B served the change before A's answer arrived (A reloads its "
        "own registry after the commit before it answers, in parallel with B). A's admin call "
        "is the whole change on A: save, migrate and NOTIFY in one transaction, then A's reload.",
        "Two rocketd processes on one management database, started one after the other; the app "
        "was created on A and reached B by the app-lifecycle notification.",
    ]
    return result


def _app_login_status(port: int) -> int:
    return http_json(port, "POST", f"/api/{APP_NAME}/auth/login", APP_CREDENTIALS)[0]


def _poll_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PROPAGATION_DEADLINE_S
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {PROPAGATION_DEADLINE_S:.0f} s")
        time.sleep(0.05)


@dataclass
class _Timings:
    """Per change, in ms from the moment it was sent to A."""

    commit: list[float] = field(default_factory=list)  # the NOTIFY arrived
    a_answered: list[float] = field(default_factory=list)
    b_served: list[float] = field(default_factory=list)

    @property
    def b_after_commit(self) -> list[float]:
        return [b - c for c, b in zip(self.commit, self.b_served, strict=True)]

    @property
    def b_after_a(self) -> list[float]:
        return [b - a for a, b in zip(self.a_answered, self.b_served, strict=True)]

    @property
    def a_call(self) -> list[float]:
        return list(self.a_answered)


class _Propagation:
    """One asyncio loop: the HTTP session to A and B and a LISTEN connection on the app database."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        listen: psycopg.AsyncConnection[Any],
        a_port: int,
        b_port: int,
        token: str,
    ) -> None:
        self.http = http
        self.listen = listen
        self.a = f"http://127.0.0.1:{a_port}/api/{APP_NAME}"
        self.b = f"http://127.0.0.1:{b_port}/api/{APP_NAME}"
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, url, json=body, headers=self.headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def change(
        self,
        method: str,
        path: str,
        body: dict[str, Any],
        served: Callable[[], Awaitable[bool]],
        what: str,
        timings: _Timings | None,
    ) -> None:
        """Send one change to A; time A's answer, the notification and B serving it."""
        if await served():
            raise RuntimeError(f"server B serves {what} before it was made")
        start = time.perf_counter()

        async def a_answers() -> float:
            status, answer = await self.call(method, self.a + path, body)
            at = time.perf_counter()
            _ok(status, answer, (200, 201), what)
            return at

        async def committed() -> float:
            async for notice in self.listen.notifies():
                if notice.payload == APP_NAME:
                    return time.perf_counter()
            raise RuntimeError("the LISTEN connection closed")

        async def b_serves() -> float:
            while not await served():
                await asyncio.sleep(PROPAGATION_POLL_PAUSE_S)
            return time.perf_counter()

        a_at, commit_at, b_at = await asyncio.wait_for(
            asyncio.gather(a_answers(), committed(), b_serves()), PROPAGATION_DEADLINE_S
        )
        if timings is not None:
            timings.commit.append((commit_at - start) * 1000)
            timings.a_answered.append((a_at - start) * 1000)
            timings.b_served.append((b_at - start) * 1000)

    async def creates(self) -> _Timings:
        timings = _Timings()
        for i in range(PROPAGATION_CHANGES + 1):  # the first change is the warm-up
            name = f"probe_{i}"

            async def served(name: str = name) -> bool:
                return (await self.call("GET", f"{self.b}/{name}"))[0] == 200

            await self.change(
                "POST",
                "/_admin/entities",
                _probe_entity(name),
                served,
                f"entity {name}",
                timings if i > 0 else None,
            )
        return timings

    async def updates(self) -> _Timings:
        name = "probe_changed"

        async def exists() -> bool:
            return (await self.call("GET", f"{self.b}/{name}"))[0] == 200

        await self.change("POST", "/_admin/entities", _probe_entity(name), exists, name, None)
        _ok(*await self.call("POST", f"{self.a}/{name}", {"label": "one"}), (201,), "a record")
        timings = _Timings()
        for i in range(PROPAGATION_CHANGES + 1):
            extra = f"extra_{i}"

            async def served(extra: str = extra) -> bool:
                status, body = await self.call("GET", f"{self.b}/{name}")
                records = body.get("data", []) if status == 200 and isinstance(body, dict) else []
                return bool(records) and extra in records[0]

            await self.change(
                "PUT",
                f"/_admin/entities/{name}",
                _probe_entity(name, extra_fields=i + 1),
                served,
                f"field {extra}",
                timings if i > 0 else None,
            )
        return timings


async def _propagate(
    bench: Bench, a_port: int, b_port: int, token: str
) -> tuple[_Timings, _Timings]:
    listen = await psycopg.AsyncConnection.connect(bench.dsn(APP_DB), autocommit=True)
    try:
        await listen.execute("LISTEN rocket_metadata")
        async with aiohttp.ClientSession() as http:
            run = _Propagation(http, listen, a_port, b_port, token)
            return await run.creates(), await run.updates()
    finally:
        await listen.close()


def _probe_entity(name: str, extra_fields: int = 0) -> dict[str, Any]:
    fields = [{"name": "id", "type": "uuid"}, {"name": "label", "type": "string"}]
    fields += [{"name": f"extra_{i}", "type": "string"} for i in range(extra_fields)]
    return {
        "name": name,
        "table": name,
        "primary_key": {"field": "id", "type": "uuid", "generated": True},
        "fields": fields,
    }


def _latency_measurement(name: str, samples_ms: list[float]) -> Measurement:
    ordered = sorted(samples_ms)
    return Measurement(
        name=name,
        tool="python",
        rate=float(len(ordered)),
        unit="changes",
        requests=len(ordered),
        avg_ms=statistics.fmean(ordered),
        p50_ms=statistics.median(ordered),
        p99_ms=percentile(ordered, 99),
        errors=0,
        params={
            "connections": 1,
            "min_ms": round(ordered[0], 2),
            "median_ms": round(statistics.median(ordered), 2),
            "max_ms": round(ordered[-1], 2),
            "samples_ms": [round(x, 2) for x in samples_ms],
        },
    )


def _spread_note(what: str, samples_ms: list[float]) -> str:
    return (
        f"{what}: min {min(samples_ms):.1f} ms, median {statistics.median(samples_ms):.1f} ms, "
        f"max {max(samples_ms):.1f} ms over {len(samples_ms)} changes."
    )


SCENARIOS: dict[str, Callable[[Bench], ScenarioResult]] = {
    "list": list_,
    "get": get,
    "create": create,
    "nested": nested,
    "update": update,
    "propagation": propagation,
}
