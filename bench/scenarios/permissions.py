"""The `permissions` set: what permission enforcement costs a non-admin caller, and login.

row_filter: one rocketd, the app `benchperm` with a `doc` entity seeded with 10,000 rows by SQL,
            spread over 10 owners (one of them the non-admin user `member`). The read policy
            `{"field": "owner_id", "operator": "eq", "value": "$user.id"}` for role `member`
            gives the member a row filter. Measured with wrk (`wrk/permissions.lua`, 32
            connections), one side at a time, in rounds that alternate the order (admin then
            member, member then admin, ...). A shared 2-core machine moves a single A/B pair
            by more than the effect measured here, so the ratio reported is the median of the
            per-round ratios, and the rocketd process's CPU time per request (from /proc, not
            disturbed by other processes) is reported next to it:
              list: the admin lists `?filter[owner_id]=<member id>&per_page=25`, the member
                    lists `?per_page=25` (the row filter adds the same condition): both get the
                    same 25 rows and the same `meta.total` (checked before measuring), so the
                    difference is what permissions cost (grant lookup, filter rendering, the
                    per-request user check);
              get:  both fetch random ids of the member's 1,000 rows (the member's lookup
                    carries the row filter).
            The issue's target: member / admin >= 0.9 for both routes (a miss is reported in
            the notes, not a failure of the run).
member_login: `POST /api/benchperm/auth/login` as the member (bcrypt cost 10, 8 connections),
            3 x the duration, like the foundation login.
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

import jwt

from bench.harness import SETTLE_S, Bench
from bench.loadgen import BENCH_DIR, find_wrk, parse_wrk
from bench.processes import ServerProcess, http_json
from bench.report import Measurement, Ratio, ScenarioResult, combine_runs

APP_NAME = "benchperm"
APP_DB = f"rocket_{APP_NAME}"
DOC_PATH = f"/api/{APP_NAME}/doc"
SEED_ROWS = 10_000
OWNERS = 10
PER_PAGE = 25
CONNECTIONS = 32
ROUNDS = 4  # per route; each round measures both sides, the order alternating
LOGIN_CONNECTIONS = 8
LOGIN_DURATION_FACTOR = 3
ACCESS_TOKEN_TTL_S = 3600  # longer than the whole run
TARGET = 0.9
WRK_GRACE_S = 60.0
PERMISSIONS_LUA = BENCH_DIR / "wrk" / "permissions.lua"
PLATFORM_CREDENTIALS = {"email": "platform@localhost", "password": "changeme"}
ADMIN_CREDENTIALS = {"email": "admin@localhost", "password": "changeme"}
MEMBER_CREDENTIALS = {"email": "member@bench.local", "password": "member-password-1"}

DOC_ENTITY: dict[str, Any] = {
    "name": "doc",
    "table": "docs",
    "primary_key": {"field": "id", "type": "uuid", "generated": True},
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "owner_id", "type": "uuid", "required": True},
        {"name": "title", "type": "string", "required": True},
        {"name": "department", "type": "string"},
        {"name": "pages", "type": "int", "default": 1},
        {"name": "created_at", "type": "timestamp", "auto": "create"},
    ],
}
MEMBER_POLICY = {
    "entity": "doc",
    "action": "read",
    "roles": ["member"],
    "conditions": [{"field": "owner_id", "operator": "eq", "value": "$user.id"}],
}


# --- row_filter --------------------------------------------------------------------------------


def row_filter(bench: Bench) -> ScenarioResult:
    result = ScenarioResult(
        "row_filter", "list and get by id: a member with a row filter vs an admin, same rows"
    )
    bench.require_no_database(APP_DB)
    with (
        bench.rocketd(auth_access_token_ttl=ACCESS_TOKEN_TTL_S) as server,
        tempfile.TemporaryDirectory(prefix="rocketd-bench-perm-") as scratch,
    ):
        admin, member, member_id = _setup(bench, server.port)
        ids_file = Path(scratch) / "ids.txt"
        ids = [str(r[0]) for r in bench.query(APP_DB, _MEMBER_IDS, (member_id,))]
        ids_file.write_text("\n".join(ids) + "\n")
        admin_list = f"{DOC_PATH}?filter[owner_id]={member_id}&per_page={PER_PAGE}"
        member_list = f"{DOC_PATH}?per_page={PER_PAGE}"
        _check(server.port, admin, member, admin_list, member_list, ids, bench, result)

        runs: dict[str, list[Measurement]] = {}
        pid = _pid_of(server)
        for route, sides in (
            ("list", {"admin": _env(admin, admin_list), "member": _env(member, member_list)}),
            (
                "get",
                {
                    "admin": _env(admin, DOC_PATH, ids_file),
                    "member": _env(member, DOC_PATH, ids_file),
                },
            ),
        ):
            for who, env in sides.items():
                if bench.config.warmup_s > 0:
                    _run_wrk(server, env, bench.config.warmup_s, f"{who} (warm-up)", None)
            time.sleep(SETTLE_S)
            for round_no in range(ROUNDS):
                order = ("admin", "member") if round_no % 2 == 0 else ("member", "admin")
                for who in order:
                    name = f"{who} GET {route}"
                    m = _run_wrk(server, sides[who], bench.config.duration_s, name, pid)
                    runs.setdefault(name, []).append(m)
                    if m.errors:
                        bench.failures.append(f"{name}: {m.errors} errors")
        bench.stop(server)

    combined = {name: _combine(name, ms) for name, ms in runs.items()}
    result.measurements = list(combined.values())
    for route in ("list", "get"):
        member_runs, admin_runs = runs[f"member GET {route}"], runs[f"admin GET {route}"]
        per_round = [m.rate / a.rate for m, a in zip(member_runs, admin_runs, strict=True)]
        result.ratios.append(
            Ratio(
                f"member / admin, {route}",
                f"member GET {route}",
                f"admin GET {route}",
                statistics.median(per_round),
                f"throughput kept with permission enforcement, median of {ROUNDS} rounds "
                f"(target >= {TARGET})",
            )
        )
        cpu_m, cpu_a = _cpu_per_request(member_runs), _cpu_per_request(admin_runs)
        if cpu_m and cpu_a:
            result.ratios.append(
                Ratio(
                    f"admin / member CPU per request, {route}",
                    f"admin GET {route}",
                    f"member GET {route}",
                    cpu_a / cpu_m,
                    "the same as a throughput ratio when rocketd is CPU bound, measured on "
                    f"rocketd's own CPU time ({cpu_a:.0f} vs {cpu_m:.0f} us per request)",
                )
            )
    result.notes = _notes(bench, runs, result)
    return result


_MEMBER_IDS = "select id from docs where owner_id = %s order by id"


def _setup(bench: Bench, port: int) -> tuple[str, str, str]:
    """App, entity, member user and policy through the API, rows by SQL; returns the admin
    token, the member token and the member's id."""
    token = _ok(
        *http_json(port, "POST", "/api/_platform/auth/login", PLATFORM_CREDENTIALS),
        "platform login",
    )["data"]["access_token"]
    _ok(
        *http_json(port, "POST", "/api/_platform/apps", {"name": APP_NAME}, token=token),
        "creating the app",
    )
    admin = _login(port, ADMIN_CREDENTIALS)
    base = f"/api/{APP_NAME}/_admin"
    _ok(*http_json(port, "POST", f"{base}/entities", DOC_ENTITY, token=admin), "creating doc")
    _ok(
        *http_json(
            port, "POST", f"{base}/users", {**MEMBER_CREDENTIALS, "roles": ["member"]}, token=admin
        ),
        "creating the member",
    )
    _ok(*http_json(port, "POST", f"{base}/permissions", MEMBER_POLICY, token=admin), "the policy")
    member = _login(port, MEMBER_CREDENTIALS)
    member_id = str(jwt.decode(member, options={"verify_signature": False})["sub"])
    owners = [member_id, *(str(r[0]) for r in bench.query(APP_DB, _OTHER_OWNERS, (OWNERS - 1,)))]
    bench.query(APP_DB, _SEED, (owners, SEED_ROWS))
    bench.query(APP_DB, "create index if not exists idx_docs_owner on docs (owner_id)")
    bench.query(APP_DB, "analyze docs")
    return admin, member, member_id


_OTHER_OWNERS = "select gen_random_uuid() from generate_series(1, %s)"
_SEED = (
    "insert into docs (owner_id, title, department, pages, created_at)"
    " select (%s::uuid[])[1 + i %% 10], 'doc ' || i, 'dept ' || (i %% 7), 1 + i %% 50,"
    " now() - make_interval(secs => i)"
    " from generate_series(1, %s) as i"
)


def _check(
    port: int,
    admin: str,
    member: str,
    admin_list: str,
    member_list: str,
    ids: list[str],
    bench: Bench,
    result: ScenarioResult,
) -> None:
    """The two sides must answer the same before their speed is compared."""
    a = _ok(*http_json(port, "GET", admin_list, token=admin), "admin list")
    m = _ok(*http_json(port, "GET", member_list, token=member), "member list")
    if a != m or m["meta"]["total"] != SEED_ROWS // OWNERS:
        result.failures.append("the member's list differs from the admin's filtered list")
    a = _ok(*http_json(port, "GET", f"{DOC_PATH}/{ids[0]}", token=admin), "admin get")
    m = _ok(*http_json(port, "GET", f"{DOC_PATH}/{ids[0]}", token=member), "member get")
    if a != m:
        result.failures.append("the member's record differs from the admin's")
    hidden = bench.query(
        APP_DB,
        "select id from docs where owner_id <> %s limit 1",
        (jwt.decode(member, options={"verify_signature": False})["sub"],),
    )
    status, _ = http_json(port, "GET", f"{DOC_PATH}/{hidden[0][0]}", token=member)
    if status != 404:
        result.failures.append(f"another owner's doc answered {status} to the member, not 404")


def _env(token: str, path: str, ids_file: Path | None = None) -> dict[str, str]:
    return {"BENCH_TOKEN": token, "BENCH_PATH": path, "BENCH_IDS": str(ids_file or "")}


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _pid_of(server: ServerProcess) -> int | None:
    # ServerProcess keeps its Popen private; the pid is only read, for /proc.
    proc = server._proc
    return proc.pid if proc is not None else None


def _cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a process so far."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _cpu_per_request(runs: list[Measurement]) -> float | None:
    """rocketd CPU microseconds per request over all runs of one side."""
    cpu = [m.params.get("rocketd_cpu_s") for m in runs]
    if any(not isinstance(c, float) for c in cpu):
        return None
    requests = sum(m.requests for m in runs)
    return sum(c for c in cpu if isinstance(c, float)) * 1e6 / requests if requests else None


def _run_wrk(
    server: ServerProcess, env: dict[str, str], seconds: int, name: str, pid: int | None
) -> Measurement:
    """One wrk run; with `pid`, the rocketd CPU time it took goes into the params."""
    params: dict[str, object] = {"connections": CONNECTIONS, "threads": 1, "duration_s": seconds}
    argv = [
        find_wrk(),
        "--threads=1",
        f"--connections={CONNECTIONS}",
        f"--duration={seconds}s",
        "--timeout=10s",
        "--latency",
        "--script",
        str(PERMISSIONS_LUA),
        server.url("/"),
    ]
    before = _cpu_s(pid)
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=dict(os.environ) | env,
        timeout=seconds + WRK_GRACE_S,
        check=False,
    )
    after = _cpu_s(pid)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    if before is not None and after is not None:
        params["rocketd_cpu_s"] = round(after - before, 3)
    return parse_wrk(proc.stdout, name=name, params=params)


def _combine(name: str, runs: list[Measurement]) -> Measurement:
    cpu = _cpu_per_request(runs)
    return combine_runs(
        name,
        runs,
        CONNECTIONS,
        rocketd_cpu_us_per_request=None if cpu is None else round(cpu),
    )


def _notes(bench: Bench, runs: dict[str, list[Measurement]], result: ScenarioResult) -> list[str]:
    notes = [
        f"wrk: 1 thread, {CONNECTIONS} connections, keep-alive, wrk/permissions.lua; per route "
        f"a {bench.config.warmup_s} s warm-up of each side, then {ROUNDS} rounds of one "
        f"{bench.config.duration_s} s run per side, the order alternating; the table shows each "
        "side's mean over its runs.",
        f"{SEED_ROWS:,} docs over {OWNERS} owners; the member owns {SEED_ROWS // OWNERS:,}. "
        "Both sides' list answers (rows and meta.total) were checked equal before measuring, "
        "and another owner's doc answers 404 to the member.",
    ]
    for name, ms in runs.items():
        cpu = _cpu_per_request(ms)
        cpu_text = "" if cpu is None else f"; rocketd CPU {cpu:.0f} us per request"
        notes.append(f"{name}: runs at {', '.join(f'{m.rate:,.0f}' for m in ms)} req/s{cpu_text}.")
    for r in result.ratios:
        verdict = "meets" if r.value >= TARGET else "MISSES"
        notes.append(f"{r.name}: {r.value:.3f} {verdict} the target of {TARGET}.")
    return notes


# --- login -------------------------------------------------------------------------------------


def member_login(bench: Bench) -> ScenarioResult:
    result = ScenarioResult("member_login", "app login of a non-admin user (bcrypt cost 10)")
    bench.require_no_database(APP_DB)
    with bench.rocketd(auth_access_token_ttl=ACCESS_TOKEN_TTL_S) as server:
        _setup_login(server.port)
        measurement = bench.wrk(
            server,
            f"/api/{APP_NAME}/auth/login",
            name="rocketd app login (member, bcrypt cost 10)",
            connections=LOGIN_CONNECTIONS,
            body=json.dumps(MEMBER_CREDENTIALS),
            duration_s=LOGIN_DURATION_FACTOR * bench.config.duration_s,
        )
        bench.stop(server)
    result.measurements = [measurement]
    result.notes = [
        f"wrk: 1 thread, {LOGIN_CONNECTIONS} connections, {measurement.params['duration_s']} s "
        f"after a {bench.config.warmup_s} s warm-up; bcrypt dominates (see the foundation "
        "login scenario for the per-core ceiling). The member does not use a default password, "
        "so no warning is logged per login.",
    ]
    return result


def _setup_login(port: int) -> None:
    token = _ok(
        *http_json(port, "POST", "/api/_platform/auth/login", PLATFORM_CREDENTIALS),
        "platform login",
    )["data"]["access_token"]
    _ok(
        *http_json(port, "POST", "/api/_platform/apps", {"name": APP_NAME}, token=token),
        "creating the app",
    )
    admin = _login(port, ADMIN_CREDENTIALS)
    _ok(
        *http_json(
            port,
            "POST",
            f"/api/{APP_NAME}/_admin/users",
            {**MEMBER_CREDENTIALS, "roles": ["member"]},
            token=admin,
        ),
        "creating the member",
    )
    _login(port, MEMBER_CREDENTIALS)


# --- helpers -----------------------------------------------------------------------------------


def _ok(status: int, body: Any, what: str) -> Any:
    if status not in (200, 201):
        raise RuntimeError(f"{what} failed: {status} {body}")
    return body


def _login(port: int, credentials: dict[str, str]) -> str:
    body = _ok(
        *http_json(port, "POST", f"/api/{APP_NAME}/auth/login", credentials),
        f"login as {credentials['email']}",
    )
    return str(body["data"]["access_token"])


SCENARIOS: dict[str, Callable[[Bench], ScenarioResult]] = {
    "row_filter": row_filter,
    "member_login": member_login,
}
