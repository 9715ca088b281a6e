"""The `workflows` set: durable workflow instances, end to end.

throughput: one rocketd, app `benchwf`. The entity `order` has a workflow triggered by
            `status` -> `placed` with five action steps (set_field, create_record, send_event,
            set_field, create_record: every step is its own claimed transaction, see
            docs/workflows.md). wrk creates placed orders (POST, 16 connections) for the
            duration; then the harness waits for every instance to finish. Reported: instances
            completed per second from the first instance created to the last one finished, and
            the per-instance latency (created -> completed) from the rows themselves.
trigger_cost: the same POST on three identical entities, in rounds that rotate the order:
            `plain_order` (no workflow), `held_order` (its workflow starts at an approval step:
            the write inserts the instance row and sends the signal, the runner finds nothing
            to run) and `order` (the 5-step workflow above, run by the same process while wrk
            keeps writing). held / plain is the added cost of a triggering write (target
            >= 0.85); order / plain is the whole cost, the five step transactions included.
            Then, in the same run and on the same (emptied) tables, a second deployment: an
            API-only rocketd (`background_work: false`) that wrk hits, and a background rocketd
            (`background_work: true`, under `nice -n 10`) on the same management database that
            runs every step. The same rotating rounds, back to back (no drain between runs:
            the background instance catches up while wrk writes), give the same ratios; also
            reported: instances completed during the rounds, runnable ones left when the last
            round ended, and how long after it every instance was completed (with a deadline;
            the scenario fails if they do not drain).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.harness import SETTLE_S, Bench
from bench.loadgen import WrkRun, run_wrk
from bench.processes import ServerProcess, http_json
from bench.report import Measurement, Ratio, ScenarioResult, verdict_note

APP_NAME = "benchwf"
APP_DB = f"rocket_{APP_NAME}"
CONNECTIONS = 16
ROUNDS = 3
TARGET = 0.85
DRAIN_TIMEOUT_S = 300.0
ACCESS_TOKEN_TTL_S = 3600
BACKGROUND_NICE = 10
SPLIT = f"split (API-only + background nice {BACKGROUND_NICE})"
PLATFORM_CREDENTIALS = {"email": "platform@localhost", "password": "changeme"}
ADMIN_CREDENTIALS = {"email": "admin@localhost", "password": "changeme"}


def _entity(name: str, table: str) -> dict[str, Any]:
    return {
        "name": name,
        "table": table,
        "primary_key": {"field": "id", "type": "uuid", "generated": True},
        "fields": [
            {"name": "id", "type": "uuid"},
            {"name": "status", "type": "string"},
            {"name": "amount", "type": "int"},
            {"name": "stage", "type": "int", "default": 0},
            {"name": "updated_at", "type": "timestamp", "auto": "update"},
        ],
    }


AUDIT = {
    "name": "audit",
    "table": "audits",
    "primary_key": {"field": "id", "type": "uuid", "generated": True},
    "fields": [{"name": "id", "type": "uuid"}, {"name": "order_id", "type": "string"}],
}


def _set(stage: int) -> dict[str, Any]:
    return {
        "type": "set_field",
        "entity": "order",
        "record_id": "context.record_id",
        "field": "stage",
        "value": stage,
    }


AUDIT_ROW = {"type": "create_record", "entity": "audit", "data": {"order_id": "context.record_id"}}
WORKFLOW: dict[str, Any] = {
    "name": "fulfil",
    "trigger": {"type": "state_change", "entity": "order", "field": "status", "to": "placed"},
    "context": {"record_id": "record.id", "amount": "record.amount"},
    "steps": [
        {"id": "s1", "type": "action", "actions": [_set(1)], "then": {"goto": "s2"}},
        {"id": "s2", "type": "action", "actions": [AUDIT_ROW], "then": {"goto": "s3"}},
        {
            "id": "s3",
            "type": "action",
            "actions": [{"type": "send_event", "event": "order.placed"}],
            "then": {"goto": "s4"},
        },
        {"id": "s4", "type": "action", "actions": [_set(2)], "then": {"goto": "s5"}},
        {"id": "s5", "type": "action", "actions": [AUDIT_ROW], "then": "end"},
    ],
}
HOLD: dict[str, Any] = {
    "name": "hold",
    "trigger": {"type": "state_change", "entity": "held_order", "field": "status", "to": "placed"},
    "context": {"record_id": "record.id"},
    "steps": [
        {
            "id": "review",
            "type": "approval",
            "assignee": {"type": "role", "role": "buyer"},
            "on_approve": "end",
        }
    ],
}
BODY = json.dumps({"status": "placed", "amount": 12})
SIDES = {"plain": "plain_order", "held": "held_order", "full": "order"}


def _ok(status: int, body: Any, what: str) -> Any:
    if status not in (200, 201):
        raise RuntimeError(f"{what} failed: {status} {body}")
    return body


def setup(bench: Bench, port: int) -> str:
    bench.require_no_database(APP_DB)
    platform = _ok(
        *http_json(port, "POST", "/api/_platform/auth/login", PLATFORM_CREDENTIALS), "login"
    )["data"]["access_token"]
    _ok(*http_json(port, "POST", "/api/_platform/apps", {"name": APP_NAME}, token=platform), "app")
    admin = str(
        _ok(*http_json(port, "POST", f"/api/{APP_NAME}/auth/login", ADMIN_CREDENTIALS), "admin")[
            "data"
        ]["access_token"]
    )
    base = f"/api/{APP_NAME}/_admin"
    entities = [_entity(name, f"{name}s") for name in SIDES.values()]
    for entity in (*entities, AUDIT):
        _ok(*http_json(port, "POST", f"{base}/entities", entity, token=admin), entity["name"])
    for flow in (WORKFLOW, HOLD):
        _ok(*http_json(port, "POST", f"{base}/workflows", flow, token=admin), flow["name"])
    return admin


def admin_token(port: int) -> str:
    return str(
        _ok(*http_json(port, "POST", f"/api/{APP_NAME}/auth/login", ADMIN_CREDENTIALS), "admin")[
            "data"
        ]["access_token"]
    )


def post(server: ServerProcess, token: str, entity: str, seconds: int, name: str) -> Measurement:
    run = WrkRun(
        url=server.url(f"/api/{APP_NAME}/{entity}"),
        duration_s=seconds,
        connections=CONNECTIONS,
        body=BODY,
        headers={"Authorization": f"Bearer {token}"},
    )
    return run_wrk(run, name=name)


def reset(bench: Bench) -> None:
    """Empty the entities' tables, the instances and the outbox (the definitions stay)."""
    bench.query(
        APP_DB,
        "truncate orders, plain_orders, held_orders, audits, _workflow_instances, _outbox",
    )


def instances(bench: Bench, workflow: str) -> int:
    """Instances of `workflow` since the last reset."""
    query = "select count(*) from _workflow_instances where workflow_name = %s"
    return int(bench.query(APP_DB, query, (workflow,))[0][0])


def _wait_drained(bench: Bench) -> float:
    """Seconds waited until no instance has a step to run (waiting ones do not count)."""
    started = time.monotonic()
    while True:
        running = bench.query(
            APP_DB,
            "select count(*) from _workflow_instances where status = 'running' and not waiting",
        )[0][0]
        if running == 0:
            return time.monotonic() - started
        if time.monotonic() - started > DRAIN_TIMEOUT_S:
            raise RuntimeError(f"{running} instances still running after {DRAIN_TIMEOUT_S} s")
        time.sleep(0.2)


_STATS = """
select count(*),
       count(*) filter (where status = 'completed'),
       extract(epoch from max(updated_at) - min(created_at)),
       avg(extract(epoch from updated_at - created_at)) * 1000,
       percentile_cont(0.5) within group (order by extract(epoch from updated_at - created_at)),
       percentile_cont(0.99) within group (order by extract(epoch from updated_at - created_at))
from _workflow_instances
"""


def throughput(bench: Bench) -> ScenarioResult:
    result = ScenarioResult(
        "throughput", "5-step all-action workflows started and run to completion per second"
    )
    with bench.rocketd(auth_access_token_ttl=ACCESS_TOKEN_TTL_S) as server:
        token = setup(bench, server.port)
        writes = post(server, token, "order", bench.config.duration_s, "POST order (triggers)")
        waited = _wait_drained(bench)
        total, completed, span, avg_ms, p50, p99 = bench.query(APP_DB, _STATS)[0]
        audits = bench.query(APP_DB, "select count(*) from audits")[0][0]
        orders = bench.query(APP_DB, "select count(*) from orders where stage = 2")[0][0]
        bench.stop(server)
    if completed != total or audits != 2 * total or orders != total:
        result.failures.append(
            f"{total} instances: {completed} completed, {audits} audit rows (expected "
            f"{2 * total}), {orders} orders at stage 2"
        )
    rate = float(completed) / float(span) if span else 0.0
    result.measurements = [
        writes,
        Measurement(
            name="instances completed",
            tool="python",
            rate=rate,
            unit="instances/s",
            requests=int(completed),
            avg_ms=float(avg_ms or 0.0),
            p50_ms=float(p50 or 0.0) * 1000,
            p99_ms=float(p99 or 0.0) * 1000,
            errors=int(total - completed),
            params={"steps": 5, "span_s": round(float(span or 0.0), 2)},
        ),
    ]
    result.notes = [
        f"wrk POSTed {writes.requests:,} placed orders ({writes.rate:,.0f} req/s, "
        f"{CONNECTIONS} connections, {bench.config.duration_s} s, no warm-up: every instance "
        "counts), while the runner in the same process worked through the instances.",
        f"{completed:,} of {total:,} instances completed; the last {waited:.1f} s after wrk "
        f"stopped. Throughput = completed / (last completion - first creation) = "
        f"{rate:,.0f} instances/s = {5 * rate:,.0f} steps/s.",
        "Instance latency (created -> completed) includes queueing behind the writes still "
        "arriving: it measures a saturated runner, not an idle one.",
        f"Checked: {audits:,} audit rows (2 per instance) and every order at stage 2.",
    ]
    return result


def _warm_up(bench: Bench, server: ServerProcess, token: str) -> None:
    if bench.config.warmup_s > 0:
        for entity in SIDES.values():
            post(server, token, entity, bench.config.warmup_s, "warm-up")
        _wait_drained(bench)
    time.sleep(SETTLE_S)


def _rotating_rounds(
    bench: Bench, server: ServerProcess, token: str, prefix: str, *, drain_between: bool
) -> dict[str, list[Measurement]]:
    """ROUNDS rounds of one run per side, the order rotating. With `drain_between` every run
    starts from an idle runner; without, runs follow each other after the usual pause."""
    runs: dict[str, list[Measurement]] = {side: [] for side in SIDES}
    order = list(SIDES)
    for round_no in range(ROUNDS):
        sides = order[round_no:] + order[:round_no]
        for position, side in enumerate(sides):
            entity = SIDES[side]
            name = f"{prefix}POST {entity}"
            m = post(server, token, entity, bench.config.duration_s, name)
            runs[side].append(m)
            if m.errors:
                bench.failures.append(f"{name}: {m.errors} errors")
            if drain_between:
                _wait_drained(bench)  # the next run starts from an idle runner
            if drain_between or (round_no, position) != (ROUNDS - 1, len(sides) - 1):
                time.sleep(SETTLE_S)
    return runs


def _add_ratios(
    result: ScenarioResult, runs: dict[str, list[Measurement]], prefix: str, full_meaning: str
) -> dict[str, list[float]]:
    combined = {side: _combine(f"{prefix}POST {SIDES[side]}", ms) for side, ms in runs.items()}
    result.measurements += list(combined.values())
    values: dict[str, list[float]] = {}
    for side, meaning in (
        ("held", f"the added cost of a triggering write (target >= {TARGET})"),
        ("full", full_meaning),
    ):
        per_round = [w.rate / o.rate for w, o in zip(runs[side], runs["plain"], strict=True)]
        values[side] = per_round
        result.ratios.append(
            Ratio(
                f"{prefix}{SIDES[side]} / plain_order",
                combined[side].name,
                combined["plain"].name,
                statistics.median(per_round),
                f"{meaning}, median of {ROUNDS} rounds",
            )
        )
    return values


_COUNTS = """
select count(*) filter (where status = 'completed'),
       count(*) filter (where workflow_name = 'fulfil'),
       count(*) filter (where status = 'running' and not waiting)
from _workflow_instances
"""


def _counts(bench: Bench) -> tuple[int, int, int]:
    """(completed, created by the 5-step workflow, runnable) instances."""
    completed, fulfil, runnable = bench.query(APP_DB, _COUNTS)[0]
    return int(completed), int(fulfil), int(runnable)


def _split(bench: Bench, result: ScenarioResult) -> dict[str, list[float]]:
    """The API-only + niced background deployment; returns the per-round ratios."""
    # Both deployments start from empty tables (the definitions stay).
    reset(bench)
    with (
        bench.rocketd(
            nice=BACKGROUND_NICE, background_work="true", auth_access_token_ttl=ACCESS_TOKEN_TTL_S
        ) as background,
        bench.rocketd(background_work="false", auth_access_token_ttl=ACCESS_TOKEN_TTL_S) as api,
    ):
        niceness = background.niceness()
        token = admin_token(api.port)
        _warm_up(bench, api, token)
        completed_before, created_before, _ = _counts(bench)
        started = time.monotonic()
        runs = _rotating_rounds(bench, api, token, f"{SPLIT}: ", drain_between=False)
        ended = time.monotonic()
        completed_after, created_after, runnable = _counts(bench)
        drained = True
        try:
            drain_s = _wait_drained(bench)
        except RuntimeError as exc:
            result.failures.append(f"{SPLIT}: {exc} after the last round")
            drained, drain_s = False, DRAIN_TIMEOUT_S
        final_completed, final_created, _ = _counts(bench)
        bench.stop(api)
        bench.stop(background)
    values = _add_ratios(
        result,
        runs,
        f"{SPLIT}: ",
        "the whole cost seen by the API-only instance; the steps run in the background one",
    )
    during = completed_after - completed_before
    created = created_after - created_before
    span = ended - started
    result.measurements.append(
        Measurement(
            name=f"{SPLIT}: instances completed during the rounds",
            tool="python",
            rate=during / span if span > 0 else 0.0,
            unit="instances/s",
            requests=during,
            avg_ms=0.0,
            p50_ms=None,
            p99_ms=None,
            errors=runnable,
            params={
                "created_5_step": created,
                "runnable_at_last_round_end": runnable,
                "drain_after_last_round_s": round(drain_s, 2) if drained else None,
                "background_niceness": niceness,
            },
        )
    )
    if final_completed != final_created:  # held instances wait; every 5-step one completes
        result.failures.append(
            f"{SPLIT}: {final_created} 5-step instances, {final_completed} completed"
        )
    result.notes += [
        f"{SPLIT}: wrk hits an API-only rocketd (`background_work: false`); a second rocketd "
        f"(`background_work: true`, niceness {niceness} as read from the kernel) on the same "
        "management database runs every step. Same tables (emptied first), same rotating "
        "rounds, but back to back: the harness does not wait for the instances between runs, "
        "so plain and held runs after an order run share the machine with the background "
        "instance catching up.",
        f"{SPLIT}: per-round held / plain: " + ", ".join(f"{r:.3f}" for r in values["held"]),
        f"{SPLIT}: per-round order / plain: " + ", ".join(f"{r:.3f}" for r in values["full"]),
        f"{SPLIT}: {during:,} instances completed during the rounds ({span:.0f} s, pauses "
        f"included) for {created:,} 5-step instances created; {runnable:,} were still runnable "
        f"when the last round ended, "
        + (
            f"and every instance was completed {drain_s:.1f} s after it."
            if drained
            else f"and some were still running {DRAIN_TIMEOUT_S:.0f} s after it."
        ),
        f"{SPLIT}: the background process's own CPU priority is lowered; the PostgreSQL "
        "backends running its step transactions are not (they run at normal priority).",
    ]
    return values


def trigger_cost(bench: Bench) -> ScenarioResult:
    result = ScenarioResult(
        "trigger_cost",
        "a triggering write vs the same write on an entity without workflows (one process, "
        "then API-only + background)",
    )
    with bench.rocketd(auth_access_token_ttl=ACCESS_TOKEN_TTL_S) as server:
        token = setup(bench, server.port)
        _warm_up(bench, server, token)
        runs = _rotating_rounds(bench, server, token, "", drain_between=True)
        bench.stop(server)
    values = _add_ratios(
        result,
        runs,
        "",
        "the whole cost: the write plus its 5 step transactions in the same process",
    )
    result.notes = [
        f"wrk: 1 thread, {CONNECTIONS} connections, POST {BODY}; {ROUNDS} rounds of one "
        f"{bench.config.duration_s} s run per entity, the order rotating; single process: "
        "after each run the harness waits until no instance is running.",
        "per-round held / plain: " + ", ".join(f"{r:.3f}" for r in values["held"]),
        "per-round order / plain: " + ", ".join(f"{r:.3f}" for r in values["full"]),
        "order / plain_order is lower because the same process also runs five step "
        "transactions per write while wrk is writing (each step is claimed and committed on "
        "its own, which is what makes a crash lose or repeat nothing).",
    ]
    split = _split(bench, result)
    verdicts = {
        "single process": statistics.median(values["held"]),
        SPLIT: statistics.median(split["held"]),
    }
    result.notes.append(verdict_note("held_order / plain_order", TARGET, verdicts))
    return result


def _combine(name: str, runs: list[Measurement]) -> Measurement:
    return Measurement(
        name=name,
        tool="wrk",
        rate=statistics.fmean(m.rate for m in runs),
        unit="req/s",
        requests=sum(m.requests for m in runs),
        avg_ms=statistics.fmean(m.avg_ms for m in runs),
        p50_ms=statistics.fmean(m.p50_ms or 0.0 for m in runs),
        p99_ms=statistics.fmean(m.p99_ms or 0.0 for m in runs),
        errors=sum(m.errors for m in runs),
        params={
            "connections": CONNECTIONS,
            "runs": len(runs),
            "run_rates": [round(m.rate) for m in runs],
        },
    )


SCENARIOS: dict[str, Callable[[Bench], ScenarioResult]] = {
    "throughput": throughput,
    "trigger_cost": trigger_cost,
}
