"""Running workflows: instances, steps, approvals and timeouts, durable in `_workflow_instances`.

Lifecycle of an instance:

- **Start** (`start_instances`, the workflows' AFTER_WRITE stage): the row is inserted inside
  the write transaction that changed the trigger field, so a commit always has its instance and a
  rollback never does; the same transaction sends the `workflows` signal, delivered on commit.
- **Steps** (`advance`): each step runs in its own transaction that first claims the instance row
  with `FOR UPDATE SKIP LOCKED`, runs the step (every workflow action is a write to this same
  database: a record update or insert, a webhook outbox row) and persists the new position with its
  history entry, then commits. A step's effects and its transition commit together or not at all,
  so a crash anywhere re-runs nothing that committed and loses nothing that did not: the instance
  is still `running` at the step it had reached, and the next sweep resumes it there.
- **Waiting**: entering an approval step sets `waiting`, its deadline and its resolved assignees
  in the same transaction as the transition into it. Approve/reject (`decide_approval`) lock the row
  (blocking `FOR UPDATE`), so of two concurrent approvals one wins and the other sees the new
  state: 422 `INVALID_STATE`.
- **Timeouts** (`fire_timeouts`): claim due waiting rows with `FOR UPDATE SKIP LOCKED`, add
  `timed_out`, follow `on_timeout`; the deadline is cleared in the same transaction, so each
  timeout fires once across any number of instances.

Who sees an instance (`_may_see`): admins, users who may read its record (that entity's read
policy and row filter) and the assignees of the approval step it waits at; for everybody else the
runtime routes answer as for a missing instance, because the context holds the record's values.

`set_field` and `create_record` are *system writes* through the write pipeline
(`records.update_in` / `create_in` in `WriteMode.SYSTEM`): the workflow is the authority, so the
API-only stages (permissions, validation rules, state-machine transition checks, workflow
starts) do not run, while the planner and executor (field types, auto timestamps, slugs;
soft-deleted rows are not found), initial states and the entity's `after_write` webhooks do.
Workflow start is API-only, so a workflow cannot trigger itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from rocketd.auth.principal import Principal
from rocketd.capabilities.state_machines import state_text
from rocketd.capabilities.webhooks import enqueue_direct
from rocketd.capabilities.workflows.book import WORKFLOWS
from rocketd.capabilities.workflows.model import (
    Step,
    Workflow,
    WorkflowAction,
    parse_workflow,
    resolve_path,
)
from rocketd.db.retention import delete_older_than
from rocketd.engine import records
from rocketd.engine.business_events import BusinessEvent, emit_business_event
from rocketd.engine.caller import SYSTEM_CALLER, Caller
from rocketd.engine.pipeline import AppContext, WriteMode
from rocketd.engine.record_state import json_value
from rocketd.engine.snapshot import AppSnapshot
from rocketd.engine.tracer import trace_span
from rocketd.engine.write.transaction import execute_at_commit
from rocketd.errors import ApiError, Forbidden, InvalidState, NotFound
from rocketd.expressions import EvaluationError
from rocketd.logging import get_logger
from rocketd.metadata.field_types import parse_pk
from rocketd.metadata.model import Entity
from rocketd.metadata.parse import MetadataError
from rocketd.timestamps import iso_utc
from rocketd.tracing import AnySpan, ContinuedTrace, current_ids

log = get_logger("rocketd.capabilities.workflows.instances")

SIGNAL: Final = "workflows"
MAX_STEPS_PER_ADVANCE: Final = 1000  # a safety net: spinning cycles are rejected at save time
MAX_HISTORY: Final = 500  # upstream-gaps P14: the oldest entries go first
CLAIM_BATCH: Final = 100

Verdict = Literal["approved", "rejected"]


def _now() -> datetime:
    return datetime.now(UTC)


def _entry(step: str, status: str, moment: datetime, **extra: Any) -> dict[str, Any]:
    return {"step": step, "status": status, **extra, "at": iso_utc(moment)}


def _with_entry(history: Sequence[Any], entry: Mapping[str, Any]) -> list[Any]:
    return [*history, dict(entry)][-MAX_HISTORY:]


def instance_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "workflow_id": str(row["workflow_id"]),
        "workflow_name": row["workflow_name"],
        "status": row["status"],
        "current_step": row["current_step"],
        "current_step_deadline": iso_utc(row["current_step_deadline"]),
        "context": row["context"],
        "history": row["history"],
        "created_at": iso_utc(row["created_at"]),
        "updated_at": iso_utc(row["updated_at"]),
    }


# ----------------------------------------------------------------------------------- positions


def _position(
    workflow: Workflow, target: str | None, context: Mapping[str, Any], moment: datetime
) -> dict[str, Any]:
    """The columns of an instance that goes to `target` (None: completed). Entering an approval
    step sets its deadline and resolved assignees and makes the instance wait."""
    if target is None:
        return {
            "status": "completed",
            "current_step": None,
            "current_step_deadline": None,
            "waiting": False,
            "assignees": None,
        }
    step = workflow.step(target)
    if step is None or step.type != "approval":
        return {
            "status": "running",
            "current_step": target,
            "current_step_deadline": None,
            "waiting": False,
            "assignees": None,
        }
    return {
        "status": "running",
        "current_step": target,
        "current_step_deadline": moment + step.timeout if step.timeout is not None else None,
        "waiting": True,
        "assignees": _relation_assignees(step, context),
    }


def _failed() -> dict[str, Any]:
    return {"status": "failed", "current_step_deadline": None, "waiting": False}


def _relation_assignees(step: Step, context: Mapping[str, Any]) -> list[str] | None:
    """A `relation` assignee's path resolved to user ids when the step is entered."""
    assignee = step.assignee
    if assignee is None or assignee.type != "relation" or assignee.path is None:
        return None
    path = assignee.path
    value = (
        resolve_path({"context": context}, path)
        if path.startswith("context.")
        else resolve_path(context, path)
    )
    values = value if isinstance(value, list) else [value]
    return [str(v) for v in values if v is not None and v != ""]


_SET_COLUMNS: Final = (
    "status",
    "current_step",
    "current_step_deadline",
    "waiting",
    "assignees",
)


async def _save(
    conn: AsyncConnection[Any],
    instance_id: Any,
    columns: Mapping[str, Any],
    history: Sequence[Any] | None,
) -> None:
    names = [c for c in _SET_COLUMNS if c in columns]
    params: list[Any] = [columns[c] for c in names]
    if history is not None:
        names.append("history")
        params.append(Jsonb(list(history)))
    statement = sql.SQL("update _workflow_instances set {}, updated_at = now() where id = %s")
    sets = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in names)
    await conn.execute(statement.format(sets), (*params, instance_id))


# ------------------------------------------------------------------------------------- start


def build_context(workflow: Workflow, entity: Entity, record: Mapping[str, Any]) -> dict[str, Any]:
    record_json = json_value(dict(record))
    record_id = record_json.get(entity.primary_key.field)
    root = {
        "trigger": {"record_id": record_id, "record": record_json},
        "record": record_json,
        "record_id": record_id,
    }
    return {name: resolve_path(root, path) for name, path in workflow.context.items()}


INSERT_INSTANCE: Final = (
    "insert into _workflow_instances (workflow_id, workflow_name, status, current_step,"
    " current_step_deadline, waiting, assignees, context, trigger_entity, trigger_record_id,"
    " trace_id, parent_span_id)"
    " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


async def start_instances(
    conn: AsyncConnection[Any],
    snapshot: AppSnapshot,
    entity: Entity,
    record: Mapping[str, Any],
    old: Mapping[str, Any] | None,
) -> int:
    """Inside the write transaction: one instance per active workflow whose trigger field changed
    to its `to` value (upstream-gaps C13: the stored field, state machine or not)."""
    started = 0
    moment = _now()
    for workflow in snapshot[WORKFLOWS].for_entity(entity.name):
        name = workflow.trigger.field
        new = state_text(record.get(name))
        if new == "" or new != workflow.trigger.to:
            continue
        if old is not None and state_text(json_value(old.get(name))) == new:
            continue
        context = build_context(workflow, entity, record)
        position = _position(workflow, workflow.first_step, context, moment)
        waiting = position["waiting"]
        # An instance waiting at its first (approval) step needs no runner: no signal.
        await execute_at_commit(
            conn,
            INSERT_INSTANCE,
            (
                workflow.id,
                workflow.name,
                position["status"],
                position["current_step"],
                position["current_step_deadline"],
                waiting,
                position["assignees"],
                Jsonb(context),
                entity.name,
                state_text(record.get(entity.primary_key.field)),
                *current_ids(),
            ),
            signal=None if waiting else SIGNAL,
        )
        started += 1
    return started


PURGE_BATCH: Final = 1000


async def purge_finished(conn: AsyncConnection[Any], older_than_days: float) -> int:
    """Delete finished instances (any status but `running`) last changed more than
    `older_than_days` ago, in batches (short statements, short locks); the number deleted."""
    return await delete_older_than(
        conn,
        "_workflow_instances",
        "updated_at",
        older_than_days,
        only="status <> 'running'",
        batch=PURGE_BATCH,
    )


# ------------------------------------------------------------------------------------- steps


CLAIM_SKIP: Final = (
    "select * from _workflow_instances where id = %s and status = 'running' and not waiting"
    " for update skip locked"
)
CLAIM_WAIT: Final = (
    "select * from _workflow_instances where id = %s and status = 'running' and not waiting"
    " for update"
)


class StepFailed(Exception):
    """An action or condition failed: the instance becomes `failed`."""


async def _definition(
    conn: AsyncConnection[Any], snapshot: AppSnapshot, workflow_id: Any
) -> Workflow | None:
    """The snapshot's definition, or the stored one when this instance has not reloaded yet."""
    found = snapshot[WORKFLOWS].by_id.get(str(workflow_id))
    if found is not None:
        return found
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "select id, name, trigger, context, steps, active from _workflows where id = %s",
        (workflow_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    try:
        return parse_workflow({**row, "id": str(row["id"])})
    except MetadataError:
        return None


def _context_value(value: Any, context: Mapping[str, Any], moment: datetime) -> Any:
    """An action value: `"now"`, a `context.<path>` reference, or a literal."""
    if value == "now":
        return iso_utc(moment)
    if isinstance(value, str) and value.startswith("context."):
        return resolve_path({"context": context}, value)
    return value


AfterCommit = list[Any]


def _action_entity(app: AppContext, action: WorkflowAction) -> Entity:
    """The entity an action writes to; the step fails when the app has no such entity (it was
    dropped after the workflow was saved)."""
    name = str(action.get("entity") or "")
    entity = app.registry.entity(name)
    if entity is None:
        raise StepFailed(f"{action.type}: unknown entity {name}")
    return entity


async def _set_field(
    conn: AsyncConnection[Any],
    app: AppContext,
    action: WorkflowAction,
    context: Mapping[str, Any],
    moment: datetime,
    after_commit: AfterCommit,
) -> None:
    entity = _action_entity(app, action)
    record_id = resolve_path({"context": context}, str(action.get("record_id")))
    if record_id is None:
        raise StepFailed(f"set_field: record_id {action.get('record_id')} resolved to null")
    value = action.get("value")
    value = iso_utc(moment) if value == "now" else value
    try:
        await records.update_in(
            conn,
            app,
            SYSTEM_CALLER,
            entity,
            str(record_id),
            {str(action.get("field")): value},
            mode=WriteMode.SYSTEM,
            after_commit=after_commit,
        )
    except NotFound:
        raise StepFailed(f"set_field: {entity.name} with id {record_id} not found") from None


async def _create_record(
    conn: AsyncConnection[Any],
    app: AppContext,
    action: WorkflowAction,
    context: Mapping[str, Any],
    moment: datetime,
    after_commit: AfterCommit,
) -> None:
    entity = _action_entity(app, action)
    raw = action.get("data") if action.get("data") is not None else action.get("value")
    data = raw if isinstance(raw, Mapping) else {}
    body = {key: _context_value(v, context, moment) for key, v in data.items()}
    await records.create_in(
        conn, app, SYSTEM_CALLER, entity, body, mode=WriteMode.SYSTEM, after_commit=after_commit
    )


async def _run_action(
    conn: AsyncConnection[Any],
    app: AppContext,
    row: Mapping[str, Any],
    step: Step,
    action: WorkflowAction,
    moment: datetime,
    after_commit: AfterCommit,
) -> None:
    context: Mapping[str, Any] = row["context"]
    source = {
        "source": "workflow",
        "workflow": row["workflow_name"],
        "workflow_id": str(row["workflow_id"]),
        "instance_id": str(row["id"]),
        "step": step.id,
        "at": iso_utc(moment),
    }
    if action.type == "set_field":
        await _set_field(conn, app, action, context, moment, after_commit)
    elif action.type == "create_record":
        await _create_record(conn, app, action, context, moment, after_commit)
    elif action.type == "webhook":
        # Delivered by the webhook dispatcher like a registered webhook: logged, retried,
        # signed, SSRF-guarded; the row commits with the step.
        method = str(action.get("method") or "POST").upper()
        body = {**source, "data": dict(context)}
        entity = str(row.get("trigger_entity") or "")
        await enqueue_direct(conn, "workflow", entity, str(action.get("url") or ""), method, body)
    elif action.type == "send_event":
        event = BusinessEvent(
            action=str(action.get("event") or ""),
            source="workflow",
            entity=row.get("trigger_entity"),
            record_id=row.get("trigger_record_id"),
            metadata={**source, "data": dict(context)},
            trace_id=None if row.get("trace_id") is None else str(row["trace_id"]),
        )
        # announced once the step committed: a step that fails announces nothing
        after_commit.append(lambda: emit_business_event(app, event))


async def _run_step(
    conn: AsyncConnection[Any], app: AppContext, instance_id: Any, wait: bool
) -> bool:
    """Claim the instance and run its current step in one transaction; False when there is
    nothing (more) to run here: finished, waiting, or (unless `wait`) locked by someone else."""
    after_commit: AfterCommit = []
    more = await _run_step_in(conn, app, instance_id, wait, after_commit)
    for work in after_commit:  # the step committed: its system writes' after-commit work
        await work()
    return more


async def _run_step_in(
    conn: AsyncConnection[Any],
    app: AppContext,
    instance_id: Any,
    wait: bool,
    after_commit: AfterCommit,
) -> bool:
    snapshot = app.snapshot
    async with conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(CLAIM_WAIT if wait else CLAIM_SKIP, (instance_id,))
        row = await cur.fetchone()
        if row is None:
            return False
        moment = _now()
        history: list[Any] = list(row["history"])
        workflow = await _definition(conn, snapshot, row["workflow_id"])
        step = None if workflow is None else workflow.step(row["current_step"])
        if workflow is None or step is None:
            message = "workflow definition not found" if workflow is None else "step not found"
            entry = _entry(str(row["current_step"]), "failed", moment, error=message)
            await _save(conn, instance_id, _failed(), _with_entry(history, entry))
            return False
        try:
            # a savepoint: a failed action leaves nothing behind
            async with conn.transaction(), _step_span(app, row, "workflow.advance", step.id):
                target, status = await _execute(conn, app, row, step, moment, after_commit)
        except (StepFailed, ApiError, psycopg.Error) as exc:
            after_commit.clear()
            if isinstance(exc, psycopg.OperationalError):
                raise  # transient (connection, deadlock): the step is retried by a later sweep
            message = exc.message if isinstance(exc, ApiError) else str(exc).strip()
            log.warning("workflow step failed", instance=str(instance_id), step=step.id)
            entry = _entry(step.id, "failed", moment, error=message)
            await _save(conn, instance_id, _failed(), _with_entry(history, entry))
            return False
        position = _position(workflow, target, row["context"], moment)
        await _save(
            conn, instance_id, position, _with_entry(history, _entry(step.id, status, moment))
        )
        return position["status"] == "running" and not position["waiting"]


def _step_span(
    app: AppContext, row: Mapping[str, Any], action: str, step: str
) -> AnySpan | ContinuedTrace:
    """A span of the instance's trace (the request that started it), in whichever process."""
    return trace_span(
        app,
        row.get("trace_id"),
        row.get("parent_span_id"),
        "workflow",
        "engine",
        action,
        entity=row.get("trigger_entity"),
        record_id=row.get("trigger_record_id"),
        metadata={"workflow": row["workflow_name"], "instance_id": str(row["id"]), "step": step},
    )


async def _execute(
    conn: AsyncConnection[Any],
    app: AppContext,
    row: Mapping[str, Any],
    step: Step,
    moment: datetime,
    after_commit: AfterCommit,
) -> tuple[str | None, str]:
    """Run one action or condition step: (next step or None for end, history status)."""
    if step.type == "action":
        for action in step.actions:
            await _run_action(conn, app, row, step, action, moment, after_commit)
        return step.goto("then"), "completed"
    if step.type == "condition":
        if step.expression is None:
            raise StepFailed("condition without expression")
        try:
            result = step.expression.test({"context": row["context"]})
        except EvaluationError as exc:
            raise StepFailed(f"condition error: {exc.message}") from None
        key = "on_true" if result else "on_false"
        return step.goto(key), key
    raise StepFailed(f"step {step.id} is an approval step but the instance is not waiting")


async def advance(
    conn: AsyncConnection[Any], app: AppContext, instance_id: Any, *, wait: bool = False
) -> None:
    """Run steps until the instance finishes or waits. Workers (`wait=False`) leave an instance
    someone else holds to them; a request (`wait=True`) waits for the lock, then re-checks, so
    it can answer with the advanced instance (a step still runs once: the claim re-reads it)."""
    for _ in range(MAX_STEPS_PER_ADVANCE):
        if not await _run_step(conn, app, instance_id, wait):
            return
    async with conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "select * from _workflow_instances where id = %s and status = 'running'"
            " for update skip locked",
            (instance_id,),
        )
        row = await cur.fetchone()
        if row is not None:
            entry = _entry(str(row["current_step"]), "failed", _now(), error="step limit reached")
            await _save(conn, instance_id, _failed(), _with_entry(row["history"], entry))


async def runnable(conn: AsyncConnection[Any], limit: int = CLAIM_BATCH) -> list[Any]:
    """Ids of running instances with a step to run (oldest first), not locked by anyone."""
    async with conn.transaction():
        cur = await conn.execute(
            "select id from _workflow_instances where status = 'running' and not waiting"
            " order by created_at limit %s for update skip locked",
            (limit,),
        )
        return [r[0] for r in await cur.fetchall()]


# ----------------------------------------------------------------------------------- timeouts


async def fire_timeouts(
    conn: AsyncConnection[Any], snapshot: AppSnapshot, app: AppContext | None = None
) -> list[Any]:
    """Time out every due waiting instance once; returns the ids that have steps to run."""
    resumed: list[Any] = []
    while True:
        async with conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "select * from _workflow_instances where status = 'running' and waiting"
                " and current_step_deadline <= now() order by current_step_deadline"
                " limit %s for update skip locked",
                (CLAIM_BATCH,),
            )
            rows = await cur.fetchall()
            for row in rows:
                if app is None:
                    timed_out = await _time_out(conn, snapshot, row)
                else:
                    with _step_span(app, row, "workflow.timeout", str(row["current_step"])):
                        timed_out = await _time_out(conn, snapshot, row)
                if timed_out:
                    resumed.append(row["id"])
        if len(rows) < CLAIM_BATCH:
            return resumed


async def _time_out(
    conn: AsyncConnection[Any], snapshot: AppSnapshot, row: Mapping[str, Any]
) -> bool:
    moment = _now()
    workflow = await _definition(conn, snapshot, row["workflow_id"])
    step = None if workflow is None else workflow.step(row["current_step"])
    if workflow is None or step is None or step.type != "approval":
        # Spec: skip. The deadline is cleared so the row is not claimed again on every tick.
        await _save(conn, row["id"], {"current_step_deadline": None}, None)
        return False
    history = _with_entry(row["history"], _entry(step.id, "timed_out", moment))
    if "on_timeout" not in step.gotos:
        await _save(conn, row["id"], _failed(), history)
        return False
    position = _position(workflow, step.goto("on_timeout"), row["context"], moment)
    await _save(conn, row["id"], position, history)
    return position["status"] == "running" and not position["waiting"]


# ----------------------------------------------------------------------------------- runtime


def _instance_id(raw_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw_id)
    except ValueError:
        raise NotFound(f"Workflow instance not found: {raw_id}") from None


def is_assignee(principal: Principal, step: Step, row: Mapping[str, Any]) -> bool:
    """Whether the step's assignee names the caller (a step without one names nobody)."""
    assignee = step.assignee
    if assignee is None:
        return False
    if assignee.type == "role":
        return assignee.role in principal.roles
    if assignee.type in ("user", "fixed"):
        return assignee.user == principal.user_id
    return principal.user_id in (row.get("assignees") or ())


def may_act(principal: Principal, step: Step, row: Mapping[str, Any]) -> bool:
    """Whether the caller may approve or reject the step (upstream-gaps S8; admins always)."""
    if principal.is_admin or step.assignee is None:
        return True
    return is_assignee(principal, step, row)


async def _current_step(
    conn: AsyncConnection[Any], snapshot: AppSnapshot, row: Mapping[str, Any]
) -> Step | None:
    workflow = await _definition(conn, snapshot, row["workflow_id"])
    return None if workflow is None else workflow.step(row["current_step"])


async def _may_see(
    conn: AsyncConnection[Any],
    app: AppContext,
    principal: Principal,
    row: Mapping[str, Any],
    step: Step | None,
) -> bool:
    """Whether the caller may see the instance (its context holds values of its record): admins,
    the assignees of the approval step it waits at, and users who may read its record (the
    record's read policy and row filter; a deleted record is read by nobody). Everybody else
    gets the 404 of a missing instance."""
    if principal.is_admin:
        return True
    waiting_for_caller = (
        step is not None
        and step.type == "approval"
        and row["status"] == "running"
        and row["waiting"]
        and is_assignee(principal, step, row)
    )
    if waiting_for_caller:
        return True
    entity = app.registry.entity(row["trigger_entity"] or "")
    if entity is None:
        return False
    pk = parse_pk(entity, row["trigger_record_id"] or "")
    if pk is None:
        return False
    return await records.may_read(conn, app, Caller(principal), entity, pk)


async def get_instance(app: AppContext, principal: Principal, raw_id: str) -> dict[str, Any]:
    """The instance, when the caller may see it (`_may_see`); 404 otherwise, as when missing."""
    row_id = _instance_id(raw_id)
    async with app.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("select * from _workflow_instances where id = %s", (row_id,))
        row = await cur.fetchone()
        visible = row is not None and await _may_see(
            conn, app, principal, row, await _current_step(conn, app.snapshot, row)
        )
    if row is None or not visible:
        raise NotFound(f"Workflow instance not found: {raw_id}")
    return instance_json(row)


async def pending(app: AppContext, principal: Principal) -> list[dict[str, Any]]:
    """Waiting instances the caller may act on and may see, newest first."""
    async with app.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "select * from _workflow_instances where status = 'running' and waiting"
            " order by created_at desc, id"
        )
        rows = await cur.fetchall()
        out: list[dict[str, Any]] = []
        for row in rows:
            step = await _current_step(conn, app.snapshot, row)
            if (
                step is not None
                and may_act(principal, step, row)
                and await _may_see(conn, app, principal, row, step)
            ):
                out.append(instance_json(row))
    return out


INSTANCE_STATUSES: Final = ("running", "completed", "failed")
INSTANCE_LIST_LIMIT: Final = 200


async def instances_of(
    app: AppContext, raw_workflow_id: str, status: str | None = None
) -> list[dict[str, Any]]:
    """The latest instances of one workflow (every status, or one), newest first: the admin's
    view of a workflow's runs. 404 when the workflow does not exist."""
    try:
        workflow_id = uuid.UUID(raw_workflow_id)
    except ValueError:
        raise NotFound(f"Workflow not found: {raw_workflow_id}") from None
    async with app.pool.connection() as conn:
        cur = await conn.execute("select 1 from _workflows where id = %s", [workflow_id])
        if await cur.fetchone() is None:
            raise NotFound(f"Workflow not found: {raw_workflow_id}")
        rows = conn.cursor(row_factory=dict_row)
        await rows.execute(
            "select * from _workflow_instances where workflow_id = %s"
            " and (%s::text is null or status = %s)"
            " order by created_at desc, id limit %s",
            [workflow_id, status, status, INSTANCE_LIST_LIMIT],
        )
        return [instance_json(row) for row in await rows.fetchall()]


async def decide_approval(
    app: AppContext,
    principal: Principal,
    raw_id: str,
    verdict: Verdict,
    body: Mapping[str, Any],
) -> dict[str, Any]:
    """Approve or reject the current step, then advance through every step that does not wait.

    The row is locked (blocking), so concurrent decisions are serialised and all but the first
    find the step no longer current: 422 INVALID_STATE. An optional body `step` names the step
    the caller means; if it is not the current one the answer is INVALID_STATE too.
    """
    row_id = _instance_id(raw_id)
    comment = body.get("comment")
    expected = body.get("step")
    snapshot = app.snapshot
    async with app.pool.connection() as conn:
        async with conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "select * from _workflow_instances where id = %s for update", (row_id,)
            )
            row = await cur.fetchone()
            # A hidden instance answers like a missing one, before anything about its state.
            if row is None or not await _may_see(
                conn, app, principal, row, await _current_step(conn, snapshot, row)
            ):
                raise NotFound(f"workflow instance not found: {raw_id}")
            if row["status"] != "running":
                raise InvalidState(f"workflow instance is not running (status: {row['status']})")
            workflow = await _definition(conn, snapshot, row["workflow_id"])
            if workflow is None:
                raise NotFound(f"workflow definition not found: {row['workflow_name']}")
            step = workflow.step(row["current_step"])
            if step is None:
                raise NotFound(f"current step not found: {row['current_step']}")
            if step.type != "approval" or not row["waiting"]:
                raise InvalidState("current step is not an approval step")
            if isinstance(expected, str) and expected and expected != step.id:
                raise InvalidState(f"step {expected} is not the current step (current: {step.id})")
            if not may_act(principal, step, row):
                raise Forbidden(f"You are not an assignee of step {step.id}")
            moment = _now()
            extra: dict[str, Any] = {"by": principal.user_id}
            if isinstance(comment, str) and comment:
                extra["comment"] = comment
            history = _with_entry(row["history"], _entry(step.id, verdict, moment, **extra))
            key = "on_approve" if verdict == "approved" else "on_reject"
            position = _position(workflow, step.goto(key), row["context"], moment)
            await _save(conn, row_id, position, history)
        if position["status"] == "running" and not position["waiting"]:
            await advance(conn, app, row_id, wait=True)
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("select * from _workflow_instances where id = %s", (row_id,))
        final = await cur.fetchone()
    assert final is not None
    return instance_json(final)


async def delete_instance(app: AppContext, principal: Principal, raw_id: str) -> None:
    """Cancel by deleting the row (spec): admins, or whoever may act on its current step. An
    instance the caller may not see is left alone with the answer of a missing one (the spec's
    `{"deleted": true}`), so the answer tells nothing about it."""
    try:
        row_id = uuid.UUID(raw_id)
    except ValueError:
        return
    async with app.pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("select * from _workflow_instances where id = %s for update", (row_id,))
        row = await cur.fetchone()
        if row is None:
            return
        if not principal.is_admin:
            step = await _current_step(conn, app.snapshot, row)
            if not await _may_see(conn, app, principal, row, step):
                return
            if step is None or step.type != "approval" or not may_act(principal, step, row):
                raise Forbidden("Only an admin or the current step's assignee may cancel it")
        await conn.execute("delete from _workflow_instances where id = %s", (row_id,))
