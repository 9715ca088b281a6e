"""Schema export and import (`export-import.md`): one JSON document with an app's metadata.

Import is stricter than upstream (upstream-gaps S19, C33): every item of the document is parsed
and validated exactly like its admin route, against the metadata as stored plus the items before
it in the document (entities, then relations, ...), *before* anything is written. Any problem
rejects the whole document (422, every problem listed, nothing applied). A valid document is
applied in one transaction under the metadata lock: the rows, the DDL of new tables, the sample
rows and the metadata NOTIFY commit together or not at all.

Idempotency is the spec's: an item whose key already exists (or appeared earlier in the file) is
skipped and not validated; UI configs are upserted. Sample data is seed data: inserted after the
metadata with only declared columns (other keys dropped and listed), `ON CONFLICT DO NOTHING`,
no rules, state machines, defaults or timestamps; a row the database refuses rejects the import.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from rocketd.engine import rules_admin, ui_configs
from rocketd.engine.metadata_admin import (
    insert_entity,
    insert_relation,
    load_registry,
    lock_metadata,
    notify_metadata,
)
from rocketd.engine.permissions_admin import insert_permission
from rocketd.errors import ApiError, ErrorDetail, InvalidPayload, ValidationFailed
from rocketd.json_encoding import encode
from rocketd.metadata.model import Entity, Relation
from rocketd.metadata.parse import (
    entity_problems_in,
    parse_entity,
    parse_relation,
    relation_problems_in,
)
from rocketd.metadata.permissions import PolicyFields, parse_policy_body
from rocketd.metadata.registry import Registry
from rocketd.metadata.rules import (
    Rule,
    StateMachine,
    new_rule_problems_in,
    parse_rule,
    parse_state_machine,
    state_machine_problems_in,
)
from rocketd.metadata.workflows import Workflow, parse_workflow, workflow_problems_in
from rocketd.webhooks.model import Webhook, parse_webhook

VERSION: Final = 1
KINDS: Final = (
    "entities",
    "relations",
    "rules",
    "state_machines",
    "workflows",
    "permissions",
    "webhooks",
    "ui_configs",
)
_INT_TYPES: Final = frozenset({"int", "integer", "bigint"})
_JSON_TYPES: Final = frozenset({"json", "file"})


class ImportRejected(ValidationFailed):
    """The document has problems: nothing was applied. `details` lists each one."""

    def __init__(self, problems: Sequence[ErrorDetail]) -> None:
        super().__init__(
            f"Import rejected: {len(problems)} problem(s); nothing was applied", list(problems)
        )


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _canonical(value: Any) -> bytes:
    return encode(value, option=orjson.OPT_SORT_KEYS)


# ------------------------------------------------------------------------------------ export


async def export_document(conn: AsyncConnection[Any]) -> dict[str, Any]:
    """The app's metadata as a version-1 document (never sample data)."""
    cur = conn.cursor(row_factory=dict_row)
    doc: dict[str, Any] = {"version": VERSION, "exported_at": _now()}
    await cur.execute("select definition from _entities order by name")
    doc["entities"] = [r["definition"] for r in await cur.fetchall()]
    await cur.execute("select definition from _relations order by name")
    doc["relations"] = [r["definition"] for r in await cur.fetchall()]
    await cur.execute(
        "select entity, hook, type, definition, priority, active from _rules"
        " order by entity, priority, created_at, hook, type, definition::text"
    )
    doc["rules"] = [dict(r) for r in await cur.fetchall()]
    await cur.execute(
        "select entity, field, definition, active from _state_machines"
        " order by entity, field, created_at, id"
    )
    doc["state_machines"] = [dict(r) for r in await cur.fetchall()]
    doc["workflows"] = await _optional_rows(
        conn,
        "_workflows",
        "select name, trigger, context, steps, active from _workflows order by name",
    )
    await cur.execute(
        "select entity, action, roles, conditions, checks from _permissions"
        " order by entity, action, created_at, id"
    )
    permissions: list[dict[str, Any]] = []
    for r in await cur.fetchall():
        item = {
            "entity": r["entity"],
            "action": r["action"],
            "roles": list(r["roles"] or []),
            "conditions": r["conditions"] if isinstance(r["conditions"], list) else [],
        }
        if isinstance(r["checks"], list) and r["checks"]:
            item["check"] = r["checks"]  # additive (upstream-gaps S5)
        permissions.append(item)
    doc["permissions"] = permissions
    doc["webhooks"] = await _optional_rows(
        conn,
        "_webhooks",
        "select entity, hook, url, method, headers, condition, async, retry, active"
        " from _webhooks order by entity, hook, created_at, url",
    )
    await cur.execute("select entity, scope, config from _ui_configs order by entity, scope")
    doc["ui_configs"] = [dict(r) for r in await cur.fetchall()]
    return doc


async def _table_exists(conn: AsyncConnection[Any], table: str) -> bool:
    cur = await conn.execute("select to_regclass(%s) is not null", (table,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def _optional_rows(conn: AsyncConnection[Any], table: str, query: str) -> list[Any]:
    """Rows of a table another capability owns (absent on a database not yet upgraded)."""
    if not await _table_exists(conn, table):
        return []
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(query)
    return [dict(r) for r in await cur.fetchall()]


async def export_app(pool: AsyncConnectionPool[Any]) -> dict[str, Any]:
    async with pool.connection() as conn:
        return await export_document(conn)


# ------------------------------------------------------------------------------------ import


@dataclass
class _Plan:
    """What a validated document will do."""

    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    state_machines: list[StateMachine] = field(default_factory=list)
    workflows: list[Workflow] = field(default_factory=list)
    permissions: list[PolicyFields] = field(default_factory=list)
    webhooks: list[Webhook] = field(default_factory=list)
    ui_configs: list[ui_configs.UiConfig] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    problems: list[ErrorDetail] = field(default_factory=list)

    def skip(self, kind: str, label: str) -> None:
        self.skipped.setdefault(kind, []).append(label)

    def problem(self, where: str, err: ApiError | str) -> None:
        """Record a problem; `where` is the item's path, optionally followed by " (label)"."""
        path = where.split(" (", 1)[0]
        if isinstance(err, str):
            self.problems.append(ErrorDetail(f"{where}: {err}", path))
            return
        details = err.details or [ErrorDetail(err.message)]
        for d in details:
            at = f"{path}.{d.field}" if d.field else path
            self.problems.append(ErrorDetail(f"{where}: {d.message}", at, d.rule or ""))


def _items(doc: Mapping[str, Any], kind: str, plan: _Plan) -> list[tuple[str, Any]]:
    raw = doc.get(kind)
    if raw is None:
        return []
    if not isinstance(raw, list):
        plan.problem(kind, "must be an array")
        return []
    return [(f"{kind}[{i}]", item) for i, item in enumerate(raw)]


def _parsed(plan: _Plan, where: str, parse: Callable[[Any], Any], item: Any) -> Any:
    try:
        return parse(item)
    except ApiError as err:
        plan.problem(where, err)
        return None


async def _rows(conn: AsyncConnection[Any], query: str) -> list[tuple[Any, ...]]:
    cur = await conn.execute(query)
    return [tuple(r) for r in await cur.fetchall()]


async def _existing(conn: AsyncConnection[Any], query: str) -> set[tuple[Any, ...]]:
    return set(await _rows(conn, query))


def _label(item: object, *keys: str) -> str:
    if not isinstance(item, Mapping):
        return "?"
    return "/".join(str(item.get(k, "")) for k in keys)


async def _plan(
    conn: AsyncConnection[Any], doc: Mapping[str, Any], env_prefix: str
) -> tuple[_Plan, Registry]:
    plan = _Plan()
    registry = await load_registry(conn)

    names = {n for (n,) in await _existing(conn, "select name from _entities")}
    for where, item in _items(doc, "entities", plan):
        if not isinstance(item, Mapping):
            plan.problem(where, "must be an object")
            continue
        name, table = item.get("name"), item.get("table")
        if not name or not table:
            plan.skip("entities", f"{where} (no name or table)")
            continue
        if name in names:
            plan.skip("entities", str(name))
            continue
        entity = _parsed(plan, f"{where} ({name})", parse_entity, item)
        if entity is None:
            continue
        problems = entity_problems_in(registry, entity)
        for p in problems:
            plan.problem(f"{where} ({entity.name})", p)
        if not problems:
            names.add(entity.name)
            registry = registry.with_entity(entity)
            plan.entities.append(entity)

    relation_names = {n for (n,) in await _existing(conn, "select name from _relations")}
    for where, item in _items(doc, "relations", plan):
        if not isinstance(item, Mapping):
            plan.problem(where, "must be an object")
            continue
        name = item.get("name")
        if not name:
            plan.skip("relations", f"{where} (no name)")
            continue
        if name in relation_names:
            plan.skip("relations", str(name))
            continue
        relation = _parsed(plan, f"{where} ({name})", parse_relation, item)
        if relation is None:
            continue
        problems = relation_problems_in(registry, relation)
        for p in problems:
            plan.problem(f"{where} ({relation.name})", p)
        if not problems:
            relation_names.add(relation.name)
            registry = registry.with_relation(relation)
            plan.relations.append(relation)

    rule_keys = {
        (e, h, t, _canonical(d))
        for e, h, t, d in await _rows(conn, "select entity, hook, type, definition from _rules")
    }
    for where, item in _items(doc, "rules", plan):
        rule = _parsed(plan, f"{where} ({_label(item, 'entity', 'type')})", parse_rule, item)
        if rule is None:
            continue
        key = (rule.entity, rule.hook, rule.type, _canonical(dict(rule.raw_definition)))
        if key in rule_keys:
            plan.skip("rules", f"{rule.entity}/{rule.hook}/{rule.type}")
            continue
        rule_details = new_rule_problems_in(registry, rule)
        if rule_details:
            for d in rule_details:
                plan.problem(
                    f"{where} ({rule.entity}/{rule.type})", ValidationFailed(d.message, [d])
                )
            continue
        rule_keys.add(key)
        plan.rules.append(rule)

    machine_keys = await _existing(conn, "select entity, field from _state_machines")
    for where, item in _items(doc, "state_machines", plan):
        machine = _parsed(
            plan, f"{where} ({_label(item, 'entity', 'field')})", parse_state_machine, item
        )
        if machine is None:
            continue
        if (machine.entity, machine.field) in machine_keys:
            plan.skip("state_machines", f"{machine.entity}.{machine.field}")
            continue
        machine_details = state_machine_problems_in(registry, machine)
        if machine_details:
            for d in machine_details:
                plan.problem(
                    f"{where} ({machine.entity}.{machine.field})", ValidationFailed(d.message, [d])
                )
            continue
        machine_keys.add((machine.entity, machine.field))
        plan.state_machines.append(machine)

    workflow_names: set[tuple[Any, ...]] = set()
    if await _table_exists(conn, "_workflows"):
        workflow_names = await _existing(conn, "select name from _workflows")
    for where, item in _items(doc, "workflows", plan):
        name = _label(item, "name")
        if (name,) in workflow_names:
            plan.skip("workflows", name)
            continue
        workflow = _parsed(plan, f"{where} ({name})", parse_workflow, item)
        if workflow is None:
            continue
        workflow_details = workflow_problems_in(registry, workflow)
        if workflow_details:
            for d in workflow_details:
                plan.problem(f"{where} ({name})", ValidationFailed(d.message, [d]))
            continue
        workflow_names.add((workflow.name,))
        plan.workflows.append(workflow)

    policy_keys = await _existing(conn, "select entity, action from _permissions")
    for where, item in _items(doc, "permissions", plan):
        label = _label(item, "entity", "action")
        if not isinstance(item, Mapping):
            plan.problem(where, "must be an object")
            continue
        if (item.get("entity"), item.get("action")) in policy_keys:
            plan.skip("permissions", label)  # QUIRK (spec): a second policy of a pair too
            continue
        policy = _parsed(plan, f"{where} ({label})", parse_policy_body, item)
        if policy is None:
            continue
        policy_keys.add((policy.entity, policy.action))
        plan.permissions.append(policy)

    hook_keys: set[tuple[Any, ...]] = set()
    if await _table_exists(conn, "_webhooks"):
        hook_keys = await _existing(conn, "select entity, hook, url from _webhooks")
    for where, item in _items(doc, "webhooks", plan):
        label = _label(item, "entity", "hook", "url")
        if (
            isinstance(item, Mapping)
            and (
                item.get("entity"),
                item.get("hook", "after_write"),
                item.get("url"),
            )
            in hook_keys
        ):
            plan.skip("webhooks", label)
            continue
        hook = _parsed(
            plan, f"{where} ({label})", lambda body: parse_webhook(body, env_prefix), item
        )
        if hook is None:
            continue
        if registry.entity(hook.entity) is None:
            plan.problem(f"{where} ({label})", f"entity not found: {hook.entity}")
            continue
        hook_keys.add((hook.entity, hook.hook, hook.url))
        plan.webhooks.append(hook)

    for where, item in _items(doc, "ui_configs", plan):
        if not isinstance(item, Mapping) or not item.get("entity"):
            plan.ignored.append(f"{where}: no entity")
            continue
        config = _parsed(plan, where, ui_configs.parse_ui_config, item)
        if config is None:
            continue
        if not config.entity.startswith("_") and registry.entity(config.entity) is None:
            plan.problem(f"{where} ({config.entity})", f"entity not found: {config.entity}")
            continue
        plan.ui_configs.append(config)
    return plan, registry


async def _apply(conn: AsyncConnection[Any], plan: _Plan, registry: Registry) -> dict[str, int]:
    for entity in plan.entities:
        await insert_entity(conn, entity)
    for relation in plan.relations:
        await insert_relation(conn, registry, relation)
    for rule in plan.rules:
        await rules_admin.insert_item(conn, rules_admin.RULES, rule)
    for machine in plan.state_machines:
        await rules_admin.insert_item(conn, rules_admin.STATE_MACHINES, machine)
    for workflow in plan.workflows:
        await conn.execute(
            "insert into _workflows (name, trigger, context, steps, active)"
            " values (%s, %s, %s, %s, %s)",
            (
                workflow.name,
                Jsonb(dict(workflow.raw_trigger)),
                Jsonb(dict(workflow.context)),
                Jsonb(list(workflow.raw_steps)),
                workflow.active,
            ),
        )
    for policy in plan.permissions:
        await insert_permission(conn, policy)
    for hook in plan.webhooks:
        await conn.execute(
            "insert into _webhooks (entity, hook, url, method, headers, condition, async, retry,"
            " active) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                hook.entity,
                hook.hook,
                hook.url,
                hook.method,
                Jsonb(dict(hook.headers)),
                hook.condition,
                hook.is_async,
                Jsonb(hook.retry.to_json()),
                hook.active,
            ),
        )
    for config in plan.ui_configs:
        await ui_configs.upsert(conn, config)
    return {kind: len(getattr(plan, kind)) for kind in KINDS}


def _sample_value(kind: str, value: Any) -> Any:
    if kind in _JSON_TYPES:
        return None if value is None else Jsonb(value)
    if kind in _INT_TYPES and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (dict, list)):
        return Jsonb(value)
    return value


async def _insert_rows(
    conn: AsyncConnection[Any],
    table: str,
    rows: list[Any],
    columns: Mapping[str, str],
    where: str,
    plan: _Plan,
) -> int:
    """Insert seed rows keeping only `columns` (name -> field type); dropped keys are listed."""
    done = 0
    dropped: set[str] = set()
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            plan.problem(f"{where}[{index}]", "must be an object")
            continue
        keep = {k: v for k, v in row.items() if k in columns}
        dropped.update(k for k in row if k not in columns)
        if not keep:
            continue
        statement = sql.SQL("insert into {} ({}) values ({}) on conflict do nothing").format(
            sql.Identifier(table),
            sql.SQL(", ").join(sql.Identifier(k) for k in keep),
            sql.SQL(", ").join(sql.Placeholder() for _ in keep),
        )
        try:
            async with conn.transaction():
                await conn.execute(
                    statement, [_sample_value(columns[k], v) for k, v in keep.items()]
                )
        except psycopg.Error as exc:
            reason = exc.diag.message_primary or type(exc).__name__
            plan.problem(f"{where}[{index}]", f"the database refused the row: {reason}")
            continue
        done += 1
    if dropped:
        plan.ignored.append(f"{where}: unknown keys ignored: {', '.join(sorted(dropped))}")
    return done


async def _sample_data(
    conn: AsyncConnection[Any], doc: Mapping[str, Any], registry: Registry, plan: _Plan
) -> int:
    sample = doc.get("sample_data")
    if sample is None:
        return 0
    if not isinstance(sample, Mapping):
        plan.problem("sample_data", "must be an object")
        return 0
    records = 0
    used: set[str] = set()
    order = [e.get("name") for e in doc.get("entities") or [] if isinstance(e, Mapping)]
    for name in order:
        if not isinstance(name, str) or name in used or name not in sample:
            continue
        entity = registry.entity(name)
        if entity is None:
            continue
        used.add(name)
        rows = sample[name]
        if not isinstance(rows, list):
            plan.problem(f"sample_data.{name}", "must be an array")
            continue
        columns = {f.name: f.base_type for f in entity.fields}
        records += await _insert_rows(
            conn, entity.table, rows, columns, f"sample_data.{name}", plan
        )
    joins: dict[str, Relation] = {}
    for item in doc.get("relations") or []:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            relation = registry.relation(item["name"])
            if relation is not None and relation.many_to_many and relation.join_table:
                joins.setdefault(relation.join_table, relation)
    for key, rows in sample.items():
        if key in used:
            continue
        relation = joins.get(key)
        if relation is None:
            plan.ignored.append(f"sample_data.{key}: not an entity or join table of this document")
            continue
        if not isinstance(rows, list):
            plan.problem(f"sample_data.{key}", "must be an array")
            continue
        columns = {
            k: "join" for k in (relation.source_join_key, relation.target_join_key) if k is not None
        }
        records += await _insert_rows(conn, key, rows, columns, f"sample_data.{key}", plan)
    return records


def check_document(doc: object) -> Mapping[str, Any]:
    """The checks made before any work: an object, version 1."""
    if not isinstance(doc, Mapping):
        raise InvalidPayload(
            "Invalid JSON body", [ErrorDetail("the document must be a JSON object")]
        )
    version = doc.get("version")
    if version != VERSION or isinstance(version, bool):
        raise ValidationFailed(
            f"Unsupported schema version: {version}",
            [ErrorDetail(f"Unsupported schema version: {version}", "version", "enum")],
        )
    return doc


async def import_document(
    pool: AsyncConnectionPool[Any], app_name: str, doc: object, env_prefix: str
) -> dict[str, Any]:
    """Validate everything, then apply it in one transaction; the report. `ImportRejected`
    (422, nothing applied) when any item is invalid or any sample row is refused."""
    document = check_document(doc)
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                await lock_metadata(conn)
                plan, registry = await _plan(conn, document, env_prefix)
                if plan.problems:
                    raise ImportRejected(plan.problems)
                summary: dict[str, int] = await _apply(conn, plan, registry)
                summary["records"] = await _sample_data(conn, document, registry, plan)
                if plan.problems:
                    raise ImportRejected(plan.problems)
                await notify_metadata(conn, app_name)
        except psycopg.Error as exc:  # DDL refused (e.g. a table exists with another shape)
            reason = exc.diag.message_primary or type(exc).__name__
            raise ImportRejected([ErrorDetail(f"the database refused a change: {reason}")]) from exc
    report: dict[str, Any] = {"message": "Import completed", "summary": summary}
    report["skipped"] = plan.skipped
    if plan.ignored:
        report["ignored"] = plan.ignored
    return report


def new_id() -> str:
    return str(uuid.uuid4())
