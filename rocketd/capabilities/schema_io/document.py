"""Schema export and import (`export-import.md`): one JSON document with an app's metadata.

The document is made of the metadata kinds it is given (`MetadataKind`s, in document order:
entities, relations, then the capabilities' kinds) plus the app's settings sections; this module
names no kind. Export asks each kind for its items; import walks the kinds in order.

Import is stricter than upstream (upstream-gaps S19, C33): every item of the document is parsed
and validated exactly like its admin route, against the metadata as stored plus the items before
it in the document (entities, then relations, ...), *before* anything is written. Any problem
rejects the whole document (422, every problem listed, nothing applied). A valid document is
applied in one transaction under the metadata lock: the rows, the DDL of new tables, the sample
rows, the settings and the metadata NOTIFY commit together or not at all.

Idempotency is the spec's: an item whose natural key (`MetadataKind.key_of`) already exists (or
appeared earlier in the file) is skipped and not validated; UI configs are upserted; a settings
section already stored is skipped. The plan records that decision for every item
(`plan_import`): the schema diff (`diff.py`) reports it without applying anything. Sample data
is seed data, written after the metadata through the write pipeline in IMPORT mode (join-table
rows inserted as given, `ON CONFLICT DO NOTHING`), with only declared columns (other keys
dropped and listed); a row refused rejects the import.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from rocketd.db.notify import MetadataChanged, send
from rocketd.engine import records
from rocketd.engine.admin import (
    AdminCall,
    Change,
    MetadataKind,
    Saved,
    load_registry,
    lock_metadata,
)
from rocketd.engine.app_settings import Sections, section_named, stored_settings, write_section
from rocketd.engine.caller import SYSTEM_CALLER
from rocketd.engine.pipeline import AppContext, WriteMode
from rocketd.errors import (
    ApiError,
    ApiWarning,
    Conflict,
    ErrorDetail,
    InvalidPayload,
    ValidationFailed,
)
from rocketd.metadata.model import Entity, Relation
from rocketd.metadata.registry import Registry
from rocketd.timestamps import now_text

VERSION: Final = 1
# Levels of arrays and objects a document may nest: far more than any schema needs, and well
# below what the JSON encoder writes (254) and Python's recursion allows.
MAX_DEPTH: Final = 100
_INT_TYPES: Final = frozenset({"int", "integer", "bigint"})

Kinds = Sequence[MetadataKind[Any]]


class ImportRejected(ValidationFailed):
    """The document has problems: nothing was applied. `details` lists each one."""

    def __init__(self, problems: Sequence[ErrorDetail]) -> None:
        super().__init__(
            f"Import rejected: {len(problems)} problem(s); nothing was applied", list(problems)
        )


def exported_kinds(kinds: Kinds) -> list[MetadataKind[Any]]:
    """The kinds that are part of the document, in document order."""
    return [kind for kind in kinds if kind.exported]


# ------------------------------------------------------------------------------------ export


async def export_document(
    conn: AsyncConnection[Any], kinds: Kinds, sections: Sections = ()
) -> dict[str, Any]:
    """The app's metadata as a version-1 document (never sample data): one array per kind, and
    `settings`: the keys the app set in each declared section (defaults are not exported)."""
    doc: dict[str, Any] = {"version": VERSION, "exported_at": now_text()}
    for kind in exported_kinds(kinds):
        doc[kind.name] = await exported_items(conn, kind)
    stored = await stored_settings(conn)
    doc["settings"] = {s.name: stored[s.name] for s in sections if stored.get(s.name)}
    return doc


async def _table_exists(conn: AsyncConnection[Any], kind: MetadataKind[Any]) -> bool:
    """Whether the kind's table exists (a capability's table is absent on a database that was
    not upgraded yet)."""
    cur = await conn.execute("select to_regclass(%s) is not null", (kind.table,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def exported_items(conn: AsyncConnection[Any], kind: MetadataKind[Any]) -> list[Any]:
    """The kind's part of an export document ([] before its table exists)."""
    return await kind.export_items(conn) if await _table_exists(conn, kind) else []


async def export_app(
    pool: AsyncConnectionPool[Any], kinds: Kinds, sections: Sections = ()
) -> dict[str, Any]:
    async with pool.connection() as conn:
        return await export_document(conn, kinds, sections)


# ------------------------------------------------------------------------------------ import


IN_APP: Final = "already in the app"
EARLIER: Final = "earlier in the document"


@dataclass(frozen=True)
class Decision:
    """What import does with one item of the document (`where`: its path): `create` writes it
    (UI configs: upserts it; settings: stores the section), `skip` leaves it out and the app as
    it is (`why` says why), `ignore` drops it. `key` is the natural key it was matched by, and
    `item` the parsed item, when the planner got that far."""

    where: str
    raw: Any
    action: Literal["create", "skip", "ignore"]
    why: str = ""
    key: Hashable | None = None
    item: Any = None


@dataclass
class ImportPlan:
    """What a document will do: the items to write per kind, in document order, and a decision
    for every item of every section (what the schema diff reports)."""

    items: dict[str, list[Any]] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    problems: list[ErrorDetail] = field(default_factory=list)
    decisions: dict[str, list[Decision]] = field(default_factory=dict)

    def decide(self, section: str, decision: Decision) -> None:
        self.decisions.setdefault(section, []).append(decision)

    def skip(self, kind: str, label: str, decision: Decision) -> None:
        self.skipped.setdefault(kind, []).append(label)
        self.decide(kind, decision)

    def ignore(self, section: str, text: str, decision: Decision) -> None:
        self.ignored.append(text)
        self.decide(section, decision)

    def problem(self, where: str, err: ApiError | ErrorDetail | str) -> None:
        """Record a problem; `where` is the item's path, optionally followed by " (label)"."""
        path = where.split(" (", 1)[0]
        if isinstance(err, str):
            self.problems.append(ErrorDetail(f"{where}: {err}", path))
            return
        details = (
            [err] if isinstance(err, ErrorDetail) else err.details or [ErrorDetail(err.message)]
        )
        for d in details:
            at = f"{path}.{d.field}" if d.field else path
            self.problems.append(ErrorDetail(f"{where}: {d.message}", at, d.rule or ""))


def _items(doc: Mapping[str, Any], kind: str, plan: ImportPlan) -> list[tuple[str, Any]]:
    raw = doc.get(kind)
    if raw is None:
        return []
    if not isinstance(raw, list):
        plan.problem(kind, "must be an array")
        return []
    return [(f"{kind}[{i}]", item) for i, item in enumerate(raw)]


def _parsed(plan: ImportPlan, where: str, parse: Callable[[Any], Any], item: Any) -> Any:
    try:
        return parse(item)
    except ApiError as err:
        plan.problem(where, err)
        return None


def _at(where: str, label: str | None) -> str:
    return where if label is None else f"{where} ({label})"


async def _plan_kind(
    conn: AsyncConnection[Any],
    kind: MetadataKind[Any],
    doc: Mapping[str, Any],
    call: AdminCall,
    plan: ImportPlan,
    registry: Registry,
) -> Registry:
    """Plan the document's items of one kind; the registry with the accepted ones added."""
    planned = plan.items.setdefault(kind.name, [])
    stored: set[Hashable] = set()
    if await _table_exists(conn, kind):
        stored = await kind.existing_keys(conn)
    keys = set(stored)
    for where, raw in _items(doc, kind.name, plan):
        screened = kind.screen(where, raw)
        if screened is not None:
            if screened.outcome == "problem":
                plan.problem(where, screened.text)
            elif screened.outcome == "skip":
                plan.skip(kind.name, screened.text, Decision(where, raw, "skip", screened.text))
            else:
                plan.ignore(kind.name, screened.text, Decision(where, raw, "ignore", screened.text))
            continue
        raw_key = kind.raw_key(raw)
        if raw_key is not None and raw_key in keys:
            why = IN_APP if raw_key in stored else EARLIER
            decision = Decision(where, raw, "skip", why, raw_key)
            plan.skip(kind.name, kind.skip_label(raw, None), decision)
            continue
        item = _parsed(plan, _at(where, kind.raw_label(raw)), lambda b: kind.parse(b, call), raw)
        if item is None:
            continue
        key = kind.key_of(item)
        if raw_key is None and key is not None and key in keys:
            why = IN_APP if key in stored else EARLIER
            decision = Decision(where, raw, "skip", why, key, item)
            plan.skip(kind.name, kind.skip_label(raw, item), decision)
            continue
        problems = kind.import_problems_in(registry, item)
        if problems:
            at = _at(where, kind.problem_label(raw, item))
            for problem in problems:
                plan.problem(at, problem)
            continue
        if key is not None:
            keys.add(key)
        registry = kind.extend(registry, item)
        planned.append(item)
        created = raw_key if raw_key is not None else key
        plan.decide(kind.name, Decision(where, raw, "create", key=created, item=item))
    return registry


async def plan_import(
    conn: AsyncConnection[Any],
    doc: Mapping[str, Any],
    call: AdminCall,
    kinds: Kinds,
    sections: Sections,
) -> tuple[ImportPlan, Registry]:
    """What importing `doc` would do, only reading the app: every item parsed and validated,
    a decision for each; and the metadata as it will be after the document. Problems are
    listed in the plan (the caller rejects the document)."""
    plan = ImportPlan()
    registry = await load_registry(conn)
    for kind in exported_kinds(kinds):
        registry = await _plan_kind(conn, kind, doc, call, plan, registry)
    await _plan_settings(conn, doc, sections, plan)
    return plan, registry


async def _plan_settings(
    conn: AsyncConnection[Any], doc: Mapping[str, Any], sections: Sections, plan: ImportPlan
) -> None:
    """The document's `settings`: each section validated like the settings route's PUT; a
    section the app has set already is skipped; one this server does not declare is ignored
    (a document from a server with more capabilities still imports)."""
    raw = doc.get("settings")
    if raw is None:
        return
    if not isinstance(raw, Mapping):
        plan.problem("settings", "must be an object")
        return
    stored = await stored_settings(conn)
    for name, value in raw.items():
        where = f"settings.{name}"
        key = (name,)
        section = section_named(sections, name)
        if section is None:
            why = "not a settings section of this server"
            plan.ignore("settings", f"{where}: {why}", Decision(where, value, "ignore", why, key))
            continue
        if stored.get(name):
            plan.skip("settings", str(name), Decision(where, value, "skip", IN_APP, key))
            continue
        problems = section.problems(value)
        for problem in problems:
            plan.problem(where, problem)
        if not problems:
            overrides = section.overrides(None, value)
            plan.settings[name] = overrides
            plan.decide("settings", Decision(where, value, "create", key=key, item=overrides))


async def _apply(change: Change, plan: ImportPlan, kinds: Kinds) -> dict[str, int]:
    for kind in kinds:
        for item in plan.items[kind.name]:
            await kind.import_write(change, item)
    return {kind.name: len(plan.items[kind.name]) for kind in kinds}


def _join_value(value: Any) -> Any:
    return Jsonb(value) if isinstance(value, (dict, list)) else value


NOT_A_TARGET: Final = "not an entity or join table of this document"


@dataclass(frozen=True)
class SampleTarget:
    """One `sample_data` entry and where import writes it: the rows of an entity the app will
    have, or of the join table of one of the document's many-to-many relations; neither: the
    entry is ignored."""

    key: str
    rows: Any
    entity: Entity | None = None
    relation: Relation | None = None

    @property
    def where(self) -> str:
        return f"sample_data.{self.key}"

    @property
    def columns(self) -> frozenset[str]:
        """The keys of a row that import writes (the others are dropped and listed)."""
        if self.entity is not None:
            return frozenset(self.entity.field_map)
        if self.relation is not None:
            joins = (self.relation.source_join_key, self.relation.target_join_key)
            return frozenset(k for k in joins if k is not None)
        return frozenset()

    def checked_rows(self, plan: ImportPlan) -> list[tuple[int, Mapping[str, Any]]]:
        """The rows, with their indexes; an entry that is not an array of objects is a problem."""
        if not isinstance(self.rows, list):
            plan.problem(self.where, "must be an array")
            return []
        rows = []
        for index, row in enumerate(self.rows):
            if isinstance(row, Mapping):
                rows.append((index, row))
            else:
                plan.problem(f"{self.where}[{index}]", "must be an object")
        return rows

    def kept(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """What import writes of a row (a row with none of the columns is not written)."""
        columns = self.columns
        return {k: v for k, v in row.items() if k in columns}

    def dropped(self, rows: Sequence[tuple[int, Mapping[str, Any]]]) -> list[str]:
        columns = self.columns
        return sorted({str(k) for _, row in rows for k in row if k not in columns})


def sample_targets(
    doc: Mapping[str, Any], registry: Registry, plan: ImportPlan
) -> list[SampleTarget]:
    """The document's `sample_data` entries in the order import writes them: the entities of the
    document's `entities` array (in that order) that `registry` (the metadata after the
    document) has, then the others in document order (join tables, or ignored ones)."""
    sample = doc.get("sample_data")
    if sample is None:
        return []
    if not isinstance(sample, Mapping):
        plan.problem("sample_data", "must be an object")
        return []
    targets: list[SampleTarget] = []
    used: set[str] = set()
    order = [e.get("name") for e in doc.get("entities") or [] if isinstance(e, Mapping)]
    for name in order:
        if not isinstance(name, str) or name in used or name not in sample:
            continue
        entity = registry.entity(name)
        if entity is None:
            continue
        used.add(name)
        targets.append(SampleTarget(name, sample[name], entity=entity))
    joins: dict[str, Relation] = {}
    for item in doc.get("relations") or []:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            relation = registry.relation(item["name"])
            if relation is not None and relation.many_to_many and relation.join_table:
                joins.setdefault(relation.join_table, relation)
    for key, rows in sample.items():
        if key not in used:
            targets.append(SampleTarget(str(key), rows, relation=joins.get(key)))
    return targets


async def _insert_rows(
    conn: AsyncConnection[Any],
    target: SampleTarget,
    rows: Sequence[tuple[int, Mapping[str, Any]]],
    plan: ImportPlan,
) -> int:
    """Insert join-table rows with only the relation's two join columns, as given."""
    done = 0
    for index, row in rows:
        keep = target.kept(row)
        if not keep:
            continue
        statement = sql.SQL("insert into {} ({}) values ({}) on conflict do nothing").format(
            sql.Identifier(target.key),
            sql.SQL(", ").join(sql.Identifier(k) for k in keep),
            sql.SQL(", ").join(sql.Placeholder() for _ in keep),
        )
        try:
            async with conn.transaction():
                await conn.execute(statement, [_join_value(v) for v in keep.values()])
        except psycopg.Error as exc:
            reason = exc.diag.message_primary or type(exc).__name__
            plan.problem(f"{target.where}[{index}]", f"the database refused the row: {reason}")
            continue
        done += 1
    return done


# The AppContext sample rows are written with: the app as the import's own transaction sees it,
# so the entities, rules and state machines the document just created are part of it.
SampleContext = Callable[[AsyncConnection[Any]], Awaitable[AppContext]]


def _integral(field_type: str, value: Any) -> Any:
    """`4.0` for an integer field is 4: schema files written by other tools spell integers as
    floats (the upstream examples do), and imports have always taken them."""
    if field_type in _INT_TYPES and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


async def _insert_records(
    conn: AsyncConnection[Any],
    app: AppContext,
    entity: Entity,
    target: SampleTarget,
    rows: Sequence[tuple[int, Mapping[str, Any]]],
    plan: ImportPlan,
    after_commit: records.AfterCommit,
) -> int:
    """Seed rows of one entity through the write pipeline in IMPORT mode: field validation,
    defaults, slugs, `auto` timestamps and initial states apply; ids and timestamps given are
    kept; a row that conflicts with one already there is skipped (a re-import adds nothing)."""
    done = 0
    for index, row in rows:
        keep = {k: _integral(entity.field_map[k].base_type, v) for k, v in target.kept(row).items()}
        if not keep:
            continue
        try:
            async with conn.transaction():  # a savepoint: a refused row leaves nothing behind
                await records.create_in(
                    conn,
                    app,
                    SYSTEM_CALLER,
                    entity,
                    keep,
                    mode=WriteMode.IMPORT,
                    after_commit=after_commit,
                )
        except Conflict:
            pass  # already there: skipped, as `ON CONFLICT DO NOTHING` would
        except ApiError as exc:
            plan.problem(f"{target.where}[{index}]", exc)
            continue
        done += 1
    return done


async def _sample_data(
    conn: AsyncConnection[Any],
    doc: Mapping[str, Any],
    registry: Registry,
    plan: ImportPlan,
    sample_context: SampleContext,
    after_commit: records.AfterCommit,
) -> int:
    targets = sample_targets(doc, registry, plan)
    if not targets:
        return 0
    app = await sample_context(conn)
    records_done = 0
    for target in targets:
        entity = None if target.entity is None else app.registry.entity(target.entity.name)
        if entity is None and target.relation is None:
            plan.ignored.append(f"{target.where}: {NOT_A_TARGET}")
            continue
        rows = target.checked_rows(plan)
        if entity is not None:
            records_done += await _insert_records(
                conn, app, entity, target, rows, plan, after_commit
            )
        else:
            records_done += await _insert_rows(conn, target, rows, plan)
        dropped = target.dropped(rows)
        if dropped:
            plan.ignored.append(f"{target.where}: unknown keys ignored: {', '.join(dropped)}")
    return records_done


def _unfit(doc: Mapping[str, Any]) -> ApiError | None:
    """What no item's own check catches: arrays and objects nested more than `MAX_DEPTH` levels
    (400), a NUL character in a key or a string, which PostgreSQL cannot store (422: import would
    fail at the database). Walked without recursion: the value is the client's."""
    stack: list[tuple[object, int, str]] = [(doc, 1, "")]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return _has_nul(path)
            continue
        children: list[tuple[object, str]] = []
        if isinstance(value, Mapping):
            for key, child in value.items():
                at = f"{path}.{key}" if path else str(key)
                if "\x00" in str(key):
                    return _has_nul(at)
                children.append((child, at))
        elif isinstance(value, list):
            children = [(item, f"{path}[{index}]") for index, item in enumerate(value)]
        else:
            continue
        if depth > MAX_DEPTH:
            detail = f"the document nests arrays and objects more than {MAX_DEPTH} levels deep"
            return InvalidPayload("Invalid JSON body", [ErrorDetail(detail)])
        stack.extend((child, depth + 1, at) for child, at in children)
    return None


def _has_nul(path: str) -> ValidationFailed:
    message = f"{path}: must not contain NUL characters (PostgreSQL cannot store them)"
    return ValidationFailed(message, [ErrorDetail(message, path, "type")])


def check_document(doc: object) -> Mapping[str, Any]:
    """The checks made before any work: an object, version 1, nothing `_unfit`."""
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
    problem = _unfit(doc)
    if problem is not None:
        raise problem
    return doc


async def import_document(
    pool: AsyncConnectionPool[Any],
    call: AdminCall,
    doc: object,
    kinds: Kinds,
    sections: Sections,
    sample_context: SampleContext,
) -> Saved:
    """Validate everything, then apply it in one transaction. The answer's `data` is the report;
    its `meta` has `migration` (what the migrator did differently from the literal entities) and
    `warnings` (items skipped or ignored) when there are any. `ImportRejected` (422, nothing
    applied) when any item is invalid or any sample row is refused."""
    document = check_document(doc)
    kinds = exported_kinds(kinds)
    notice = MetadataChanged(call.app_name)
    after_commit: records.AfterCommit = []
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                await lock_metadata(conn)
                plan, registry = await plan_import(conn, document, call, kinds, sections)
                if plan.problems:
                    raise ImportRejected(plan.problems)
                change = Change(conn, call, planned_registry=registry)
                summary: dict[str, int] = await _apply(change, plan, kinds)
                if "settings" in document:
                    for name, overrides in plan.settings.items():
                        section = section_named(sections, name)
                        if section is not None:
                            await write_section(conn, section, overrides)
                    summary["settings"] = len(plan.settings)
                summary["records"] = await _sample_data(
                    conn, document, registry, plan, sample_context, after_commit
                )
                if plan.problems:
                    raise ImportRejected(plan.problems)
                await send(conn, notice)
        except psycopg.Error as exc:  # DDL refused (e.g. a table exists with another shape)
            reason = exc.diag.message_primary or type(exc).__name__
            raise ImportRejected([ErrorDetail(f"the database refused a change: {reason}")]) from exc
    for work in after_commit:  # committed: the sample rows' after-commit stages (none today)
        await work()
    report: dict[str, Any] = {"message": "Import completed", "summary": summary}
    report["skipped"] = plan.skipped
    if plan.ignored:
        report["ignored"] = plan.ignored
    meta: dict[str, Any] = {}
    if change.migration:
        meta["migration"] = list(change.migration)
    return Saved(report, (notice,), meta, _warnings(plan))


def _warnings(plan: ImportPlan) -> tuple[ApiWarning, ...]:
    """What a client should show the admin after an import that succeeded."""
    out = [
        ApiWarning(
            "IMPORT_SKIPPED",
            f"{kind}: {len(labels)} item(s) already existed and were left as they are",
        )
        for kind, labels in plan.skipped.items()
    ]
    out += [ApiWarning("IMPORT_IGNORED", text) for text in plan.ignored]
    return tuple(out)
