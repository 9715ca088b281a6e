"""Auto-migration of business tables: entity and relation metadata -> DDL (schema `public`).

`plan_entity_migration` and `plan_relation_migration` are pure: given the metadata and what the
catalogue says about the table (`rocketd.db.introspect`), they return a `MigrationPlan` of
composed statements, problems (unsafe changes, each naming its field) and notes (what was done
differently from what the metadata literally asks, and why). `migrate_entity` and
`migrate_relation` gather the facts, plan, refuse with 422 `VALIDATION_FAILED` when the plan has
problems, and otherwise run the statements on the caller's connection inside a savepoint, so a
failure leaves the caller's transaction (and the database) as it was. They never commit.

Rules (the reasoning is next to the code that applies each one):

* never drop a column or a table; a removed field keeps its column (made nullable when it was
  NOT NULL without a default, so inserts keep working);
* type changes: widenings only (`widening_allowed`); anything else is a problem;
* NOT NULL only when existing rows allow it; a required column added to a table with rows and no
  default is added nullable (noted), and required is still enforced by the API on create;
* `unique` on: a plain unique index (also on soft-delete entities, as upstream), refused when
  the column holds duplicates; `unique` off: our unique index is dropped;
* a new entity may adopt an existing table only when every declared column exists with the same
  (or a widenable) type or can be added, and the table's primary key is the declared one;
* changing `table` renames the old table (and our indexes) instead of creating an empty one.

Every identifier is a `sql.Identifier`, every value a `sql.Literal`; the only SQL text built
from metadata is a column type from the fixed vocabulary of `column_type`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.abc import AdaptContext

from rocketd.db.introspect import (
    SCHEMA,
    ColumnInfo,
    IndexInfo,
    introspect_indexes,
    introspect_table,
    relation_names_in_use,
)
from rocketd.engine.values import ValueProblem, coerce_write_value
from rocketd.errors import ErrorDetail, ValidationFailed
from rocketd.metadata.model import DELETED_AT, MAX_COLUMNS, Entity, Field, Relation

__all__ = [
    "WIDENINGS",
    "EntityLookup",
    "MigrationPlan",
    "column_type",
    "index_name",
    "migrate_entity",
    "migrate_relation",
    "plan_entity_migration",
    "plan_relation_migration",
    "widening_allowed",
]

NAME_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,62}")
MAX_IDENTIFIER_BYTES: Final = 63
DECIMAL_DIGITS: Final = 18
TIMESTAMPTZ: Final = "timestamp with time zone"

# Column types in format_type() spelling, so that wanted and introspected types compare as text.
_COLUMN_TYPES: Final = {
    "string": "text",
    "text": "text",
    "int": "integer",
    "bigint": "bigint",
    "float": "double precision",
    "boolean": "boolean",
    "uuid": "uuid",
    "timestamp": TIMESTAMPTZ,
    "date": "date",
    "json": "jsonb",
    "file": "jsonb",
}

# Decimal digits before the point each integer type can hold.
_INTEGER_DIGITS: Final = {"smallint": 5, "integer": 10, "bigint": 19}
_NUMERIC_RE: Final = re.compile(r"numeric\((\d+),(\d+)\)")

WIDENINGS: Final = (
    "smallint -> integer -> bigint; integer or bigint -> numeric (or a numeric(p,s) with room "
    "for every integer digit); smallint or integer -> double precision; numeric(p,s) -> numeric "
    "or a numeric(p,s) keeping at least as many digits before and after the point; real -> "
    "double precision; varchar -> text; date or timestamp -> timestamp with time zone"
)


class EntityLookup(Protocol):
    """What `migrate_relation` needs from a registry (`rocketd.metadata.registry.Registry`)."""

    def entity(self, name: str) -> Entity | None: ...


# ------------------------------------------------------------------------------------- types


def column_type(field: Field) -> str:
    """The PostgreSQL column type of a field, in format_type() spelling (metadata.md table).

    Unknown types are TEXT (contract). A decimal precision outside 0..18 is reported by the
    planner before this is used in DDL."""
    kind = field.base_type
    if kind == "decimal":
        scale = int(field.precision)
        return f"numeric({DECIMAL_DIGITS},{scale})" if scale else "numeric"
    return _COLUMN_TYPES.get(kind, "text")


def _numeric_bounds(type_name: str) -> tuple[int, int] | None:
    """(digits before the point, digits after) of a bounded numeric(p,s) type."""
    match = _NUMERIC_RE.fullmatch(type_name)
    if match is None:
        return None
    precision, scale = int(match.group(1)), int(match.group(2))
    return precision - scale, scale


def widening_allowed(current: str, target: str) -> bool:
    """Whether a column of type `current` can become `target` without losing or changing any
    value it may hold (both in format_type() spelling). Equal types are not a widening.

    bigint -> double precision is refused (53-bit mantissa), so is anything -> text other than
    varchar (the text form of json, numbers or timestamps is a different value), and numeric(p,s)
    -> numeric(p,s') when that would lose digits before the point: NUMERIC(18,2) ->
    NUMERIC(18,4) keeps 14 of the 16 integer digits, so changing a decimal's precision is a
    widening only towards plain NUMERIC (precision 0).
    """
    if current == target:
        return False
    if current in _INTEGER_DIGITS:
        digits = _INTEGER_DIGITS[current]
        if target in _INTEGER_DIGITS:
            return _INTEGER_DIGITS[target] > digits
        if target == "numeric":
            return True
        bounds = _numeric_bounds(target)
        if bounds is not None:
            return bounds[0] >= digits
        return target == "double precision" and current != "bigint"
    current_bounds = _numeric_bounds(current)
    if current_bounds is not None:
        if target == "numeric":
            return True
        target_bounds = _numeric_bounds(target)
        return target_bounds is not None and (
            target_bounds[0] >= current_bounds[0] and target_bounds[1] >= current_bounds[1]
        )
    if current == "real":
        return target == "double precision"
    if current.startswith("character varying"):
        return target == "text"
    if current in ("date", "timestamp without time zone"):
        return target == TIMESTAMPTZ
    return False


def _accepts(column: str, wanted: str) -> bool:
    """A column of type `column` can hold every value of type `wanted` as is."""
    return column == wanted or widening_allowed(wanted, column)


# ------------------------------------------------------------------------------ index names


def _index_name_candidates(table: str, column: str) -> tuple[str, str]:
    """Our two names for the index of `table` on `column`: `idx_{table}_{column}` (a truncated
    prefix plus a stable hash when that exceeds 63 bytes, which PostgreSQL would otherwise cut
    silently), and a hashed alternate used when the first is taken by another relation
    (`idx_a_b_c` is the index of both a.b_c and a_b.c)."""
    base = f"idx_{table}_{column}"
    digest = hashlib.sha256(base.encode()).hexdigest()
    keep = MAX_IDENTIFIER_BYTES - 9  # "_" + 8 hex digits
    primary = base if len(base.encode()) <= MAX_IDENTIFIER_BYTES else f"{base[:keep]}_{digest[:8]}"
    return primary, f"{base[:keep]}_{digest[8:16]}"


def index_name(table: str, column: str) -> str:
    """The name rocketd gives the index of `table` on `column` (`idx_{table}_{column}`, at most
    63 bytes)."""
    return _index_name_candidates(table, column)[0]


def _single_column_unique(index: IndexInfo, column: str) -> bool:
    return index.unique and index.plain_columns and index.columns == (column,)


def _leads_with(index: IndexInfo, column: str) -> bool:
    return index.columns[:1] == (column,) and not index.partial


# ------------------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class MigrationPlan:
    """What to run on one table. `subjects[i]` names the field (or "table", "primary_key", ...)
    that `statements[i]` serves, so an execution failure can name it too."""

    table: str
    statements: tuple[sql.Composed, ...] = ()
    subjects: tuple[str, ...] = ()
    problem_details: tuple[ErrorDetail, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(d.message for d in self.problem_details)

    def error(self) -> ValidationFailed | None:
        """The 422 to raise for this plan's problems (None when there are none)."""
        if not self.problem_details:
            return None
        message = f"cannot migrate table {self.table}: " + "; ".join(self.problems)
        return ValidationFailed(message, list(self.problem_details))

    def sql_text(self, context: AdaptContext | None = None) -> list[str]:
        """The statements as text (for logs and tests)."""
        return [s.as_string(context) for s in self.statements]


class _Builder:
    """The mutable side of a plan while it is being worked out."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.statements: list[sql.Composed] = []
        self.subjects: list[str] = []
        self.details: list[ErrorDetail] = []
        self.notes: list[str] = []

    def run(self, subject: str, template: str, *parts: sql.Composable) -> None:
        # Templates are constants of this module; parts are Identifiers, Literals and types.
        self.statements.append(sql.SQL(template).format(*parts))
        self.subjects.append(subject)

    def problem(self, subject: str, message: str, rule: str = "migration") -> None:
        self.details.append(ErrorDetail(message=message, field=subject, rule=rule))

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)

    @property
    def failed(self) -> bool:
        return bool(self.details)

    def freeze(self) -> MigrationPlan:
        return MigrationPlan(
            table=self.table,
            statements=tuple(self.statements),
            subjects=tuple(self.subjects),
            problem_details=tuple(self.details),
            notes=tuple(self.notes),
        )


class _Indexes:
    """The indexes of the table being migrated, kept current as the plan renames, drops and
    creates them, plus the relation names used elsewhere in the schema."""

    def __init__(self, table: str, existing: Sequence[IndexInfo], taken: Collection[str]) -> None:
        self.table = table
        self.by_name: dict[str, IndexInfo] = {i.name: i for i in existing}
        self.taken = set(taken)

    def has_unique(self, column: str) -> bool:
        """A plain unique index on exactly `column` exists (whatever its name)."""
        return any(_single_column_unique(i, column) for i in self.by_name.values())

    def has_leading(self, column: str) -> bool:
        """An index usable for lookups by `column` exists (whatever its name)."""
        return any(_leads_with(i, column) for i in self.by_name.values())

    def has_exactly(self, columns: tuple[str, ...]) -> bool:
        return any(i.columns == columns for i in self.by_name.values())

    def ours(self, column: str) -> list[IndexInfo]:
        """Indexes of this table carrying one of our names for `column` (never a constraint's)."""
        names = _index_name_candidates(self.table, column)
        return [i for n in names if (i := self.by_name.get(n)) is not None and not i.constraint]

    def free_name(self, column: str) -> str | None:
        for name in _index_name_candidates(self.table, column):
            if name not in self.taken and name not in self.by_name:
                return name
        return None


def _t(table: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, table)


def _type(type_name: str) -> sql.SQL:
    # Only ever called with column_type() output: a fixed vocabulary plus a validated scale.
    return sql.SQL(type_name)


def _create_index(
    plan: _Builder,
    indexes: _Indexes,
    column: str,
    *,
    unique: bool = False,
    live_rows_only: bool = False,
    name: str | None = None,
) -> None:
    chosen = name or indexes.free_name(column)
    if chosen is None:
        plan.problem(
            column,
            f"column {column}: both index names for it are used by other relations in the"
            " schema; rename or drop them",
        )
        return
    parts: tuple[sql.Composable, ...] = (sql.Identifier(chosen), _t(indexes.table))
    if live_rows_only:
        # The contract's soft-delete index: live rows are the ones every read selects.
        plan.run(
            column,
            "CREATE INDEX {} ON {} ({}) WHERE {} IS NULL",
            *parts,
            sql.Identifier(column),
            sql.Identifier(column),
        )
    elif unique:
        plan.run(column, "CREATE UNIQUE INDEX {} ON {} ({})", *parts, sql.Identifier(column))
    else:
        plan.run(column, "CREATE INDEX {} ON {} ({})", *parts, sql.Identifier(column))
    indexes.by_name[chosen] = IndexInfo(
        name=chosen, columns=(column,), unique=unique, partial=live_rows_only
    )


def _drop_index(plan: _Builder, indexes: _Indexes, index: IndexInfo, subject: str) -> None:
    plan.run(subject, "DROP INDEX {}", sql.Identifier(SCHEMA, index.name))
    indexes.by_name.pop(index.name, None)


# -------------------------------------------------------------------------- entity: checks


def _check_name(plan: _Builder, subject: str, what: str, name: str) -> bool:
    if isinstance(name, str) and NAME_RE.fullmatch(name):
        return True
    plan.problem(
        subject,
        f"{what} {name!r} is not a valid name: use lowercase letters, digits and underscores,"
        " starting with a letter, at most 63 characters",
        rule="name",
    )
    return False


def _ddl_default(field: Field, plan: _Builder) -> sql.Composable | None:
    """The DDL DEFAULT of a non-key field, or None when it gets none. The value is coerced exactly
    as the engine coerces a written value (so the DDL default and the engine's default agree)
    and travels as a literal cast to the column type, never as spliced text (upstream S3)."""
    if not field.has_default or field.auto or field.default is None:
        return None
    try:
        value = coerce_write_value(field, field.default)
    except ValueProblem as problem:
        plan.problem(field.name, f"field {field.name}: default {problem.expectation}", "type")
        return None
    return sql.SQL("CAST({} AS {})").format(sql.Literal(value), _type(column_type(field)))


def _default_key(field: Field) -> tuple[str, str, str] | None:
    """What decides a field's DDL default, for comparing an old definition with a new one."""
    if not field.has_default or field.auto or field.default is None:
        return None
    value = field.default
    text = json.dumps(value, sort_keys=True, default=str)
    return column_type(field), type(value).__name__, text


def _primary_key_kind(entity: Entity, plan: _Builder) -> str | None:
    """'identity', 'uuid' (gen_random_uuid()) or None (the client supplies the key)."""
    key = entity.primary_key
    if not key.generated:
        return None
    column = column_type(entity.pk)
    key_type = "int" if key.type == "integer" else key.type
    if key_type == "uuid" and column in ("uuid", "text"):
        return "uuid"
    if key_type in ("int", "bigint") and column in ("integer", "bigint"):
        # Upstream C23: generated int keys got no sequence at all; an identity column works and
        # still accepts explicit values (BY DEFAULT), e.g. from imports.
        return "identity"
    plan.problem(
        "primary_key",
        f"primary key {key.field}: a generated key must be a uuid key on a uuid field or an"
        f" int/bigint key on an int/bigint field (type {key.type!r}, field type {entity.pk.type})",
    )
    return None


@dataclass(frozen=True)
class _Checked:
    defaults: Mapping[str, sql.Composable | None]
    key_kind: str | None


def _check_entity(entity: Entity, plan: _Builder) -> _Checked:
    _check_name(plan, "table", "table name", entity.table)
    seen: set[str] = set()
    for field in entity.fields:
        if _check_name(plan, field.name, "field name", field.name) and field.name in seen:
            plan.problem(field.name, f"field {field.name}: declared twice")
        seen.add(field.name)
        if field.base_type == "decimal" and not (
            isinstance(field.precision, int) and 0 <= field.precision <= DECIMAL_DIGITS
        ):
            plan.problem(
                field.name, f"field {field.name}: precision must be between 0 and {DECIMAL_DIGITS}"
            )
    if entity.primary_key.field not in entity.field_map:
        plan.problem(
            "primary_key",
            f"primary key field {entity.primary_key.field} not found in fields",
        )
        return _Checked({}, None)
    if plan.failed:
        return _Checked({}, None)
    defaults = {
        f.name: _ddl_default(f, plan) for f in entity.fields if f.name != entity.primary_key.field
    }
    return _Checked(defaults, _primary_key_kind(entity, plan))


# -------------------------------------------------------------------------- entity: create


def _key_column(entity: Entity, kind: str | None) -> sql.Composed:
    field = entity.pk
    name, ctype = sql.Identifier(field.name), _type(column_type(field))
    if kind == "identity":
        return sql.SQL("{} {} GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY").format(name, ctype)
    if kind == "uuid":
        return sql.SQL("{} {} DEFAULT gen_random_uuid() PRIMARY KEY").format(name, ctype)
    return sql.SQL("{} {} PRIMARY KEY").format(name, ctype)


def _column(field: Field, default: sql.Composable | None, *, not_null: bool) -> sql.Composed:
    parts: list[sql.Composable] = [sql.Identifier(field.name), _type(column_type(field))]
    if default is not None:
        parts.append(sql.SQL("DEFAULT {}").format(default))
    if not_null:
        parts.append(sql.SQL("NOT NULL"))
    return sql.SQL(" ").join(parts)


def _plan_create(entity: Entity, checked: _Checked, plan: _Builder, indexes: _Indexes) -> None:
    key = entity.primary_key.field
    columns = [
        _key_column(entity, checked.key_kind)
        if f.name == key
        else _column(f, checked.defaults[f.name], not_null=f.is_required)
        for f in entity.fields
    ]
    if entity.hidden_deleted_at:
        columns.append(sql.SQL("{} {}").format(sql.Identifier(DELETED_AT), _type(TIMESTAMPTZ)))
    plan.run("table", "CREATE TABLE {} ({})", _t(entity.table), sql.SQL(", ").join(columns))
    for field in entity.fields:
        if field.unique and field.name != key:
            _create_index(plan, indexes, field.name, unique=True)
    if entity.soft_delete:
        _create_index(plan, indexes, DELETED_AT, live_rows_only=True)
    _note_unique_with_soft_delete(entity, plan)


def _note_unique_with_soft_delete(entity: Entity, plan: _Builder) -> None:
    if entity.soft_delete and any(f.unique for f in entity.fields):
        plan.note(
            "unique indexes also cover soft-deleted rows (plain, not partial, as upstream): a"
            " deleted record's value cannot be reused"
        )


# -------------------------------------------------------------------------- entity: update


@dataclass(frozen=True)
class _Facts:
    has_rows: bool
    nulls_in: Mapping[str, bool]
    duplicates_in: Mapping[str, bool]

    def nulls(self, column: str) -> bool:
        return self.has_rows and self.nulls_in.get(column, False)

    def duplicates(self, column: str) -> bool:
        return self.has_rows and self.duplicates_in.get(column, False)


def _plan_rename(
    old_table: str,
    new_table: str,
    columns: Mapping[str, ColumnInfo],
    plan: _Builder,
    indexes: _Indexes,
) -> None:
    plan.run("table", "ALTER TABLE {} RENAME TO {}", _t(old_table), sql.Identifier(new_table))
    plan.note(f"table {old_table} renamed to {new_table} (data kept)")
    renames: dict[str, str] = {}
    for column in columns:
        old_names = _index_name_candidates(old_table, column)
        new_names = _index_name_candidates(new_table, column)
        renames.update(zip(old_names, new_names, strict=True))
    for index in sorted(indexes.by_name.values(), key=lambda i: i.name):
        target = renames.get(index.name)
        if target is None or index.constraint:
            continue
        if target in indexes.taken or target in indexes.by_name:
            plan.note(f"index {index.name} keeps its name: {target} is used by another relation")
            continue
        plan.run(
            "table",
            "ALTER INDEX {} RENAME TO {}",
            sql.Identifier(SCHEMA, index.name),
            sql.Identifier(target),
        )
        del indexes.by_name[index.name]
        indexes.by_name[target] = IndexInfo(
            name=target,
            columns=index.columns,
            unique=index.unique,
            partial=index.partial,
            primary=index.primary,
        )


def _change_type(table: str, name: str, current: str, wanted: str, plan: _Builder) -> None:
    if current == wanted:
        return
    if not widening_allowed(current, wanted):
        plan.problem(
            name,
            f"field {name}: changing type from {current} to {wanted} is not supported; only"
            " widening changes are (such as int -> bigint, int -> decimal, a decimal's precision"
            " -> 0, date -> timestamp): add a new field for the new type instead",
            "type",
        )
        return
    ctype = _type(wanted)
    plan.run(
        name,
        "ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}::{}",
        _t(table),
        sql.Identifier(name),
        ctype,
        sql.Identifier(name),
        ctype,
    )
    if current in ("date", "timestamp without time zone"):
        plan.note(
            f"field {name}: widened from {current} to {wanted}; existing values were read in the"
            " session time zone"
        )
    else:
        plan.note(f"field {name}: widened from {current} to {wanted}")


def _add_column(
    table: str, field: Field, default: sql.Composable | None, facts: _Facts, plan: _Builder
) -> None:
    not_null = field.is_required and (default is not None or not facts.has_rows)
    plan.run(
        field.name,
        "ALTER TABLE {} ADD COLUMN {}",
        _t(table),
        _column(field, default, not_null=not_null),
    )
    if field.is_required and not not_null:
        plan.note(
            f"field {field.name}: added as a nullable column because table {table} has rows and"
            " the field has no default; the API still requires it on create (fill the existing"
            " rows and save the entity again to get NOT NULL)"
        )
    elif field.is_required and facts.has_rows:
        plan.note(f"field {field.name}: existing rows got the default value")


def _update_key(
    table: str, entity: Entity, info: ColumnInfo, kind: str | None, plan: _Builder
) -> None:
    name = entity.primary_key.field
    if not info.primary_key:
        plan.problem(
            "primary_key",
            f"primary key {name}: column {name} exists but is not the primary key of table"
            f" {table}; changing the primary key of an existing table is not supported",
        )
        return
    if kind == "identity" and not info.identity:
        if info.has_default:
            plan.problem(
                "primary_key",
                f"primary key {name}: column {name} has a default, so it cannot become an"
                " identity column",
            )
            return
        plan.run(
            name,
            "ALTER TABLE {} ALTER COLUMN {} ADD GENERATED BY DEFAULT AS IDENTITY",
            _t(table),
            sql.Identifier(name),
        )
        # Start after the keys already present, or the next insert collides with them.
        plan.run(
            name,
            "SELECT setval(pg_get_serial_sequence({}, {}), coalesce(max({}), 0) + 1, false)"
            " FROM {}",
            sql.Literal(_t(table).as_string()),
            sql.Literal(name),
            sql.Identifier(name),
            _t(table),
        )
    elif kind == "uuid" and not info.has_default and not info.identity:
        plan.run(
            name,
            "ALTER TABLE {} ALTER COLUMN {} SET DEFAULT gen_random_uuid()",
            _t(table),
            sql.Identifier(name),
        )
    elif kind is None and (info.identity or info.has_default):
        plan.note(
            f"primary key {name}: no longer generated; the column keeps its identity/default,"
            " which only applies when a key is not given"
        )


def _update_default(
    table: str,
    field: Field,
    old_field: Field | None,
    info: ColumnInfo,
    default: sql.Composable | None,
    plan: _Builder,
) -> None:
    if old_field is None:
        changed = default is not None  # adopted or re-added column: apply a declared default
    else:
        changed = _default_key(old_field) != _default_key(field)
    if not changed:
        return
    if info.identity:
        plan.note(f"field {field.name}: identity column, its default is left as it is")
        return
    target, column = _t(table), sql.Identifier(field.name)
    if default is not None:
        plan.run(
            field.name, "ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}", target, column, default
        )
    else:
        plan.run(field.name, "ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT", target, column)


def _update_not_null(
    table: str,
    field: Field,
    old_field: Field | None,
    info: ColumnInfo,
    facts: _Facts,
    plan: _Builder,
) -> None:
    target, column = _t(table), sql.Identifier(field.name)
    if field.is_required and not info.not_null:
        if not facts.nulls(field.name):
            plan.run(field.name, "ALTER TABLE {} ALTER COLUMN {} SET NOT NULL", target, column)
        elif old_field is not None and not old_field.is_required:
            plan.problem(
                field.name,
                f"field {field.name}: cannot make it required: existing rows of table {table}"
                f" have no value in column {field.name}; fill them first (or make the field"
                " nullable)",
                "required",
            )
        else:
            plan.note(
                f"field {field.name}: column kept nullable because existing rows have no value;"
                " the API still requires it on create"
            )
    elif not field.is_required and info.not_null:
        plan.run(field.name, "ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL", target, column)


def _update_hidden_deleted_at(
    table: str, columns: Mapping[str, ColumnInfo], plan: _Builder
) -> None:
    info = columns.get(DELETED_AT)
    if info is None:
        plan.run(
            "soft_delete",
            "ALTER TABLE {} ADD COLUMN {} {}",
            _t(table),
            sql.Identifier(DELETED_AT),
            _type(TIMESTAMPTZ),
        )
        return
    if info.data_type != TIMESTAMPTZ:
        if not widening_allowed(info.data_type, TIMESTAMPTZ):
            plan.problem(
                "soft_delete",
                f"soft_delete: column {DELETED_AT} of table {table} has type {info.data_type};"
                f" soft delete needs {TIMESTAMPTZ} (declare a {DELETED_AT} field of that type or"
                " rename the column)",
                "type",
            )
            return
        _change_type(table, DELETED_AT, info.data_type, TIMESTAMPTZ, plan)
    if info.not_null:
        plan.run(
            "soft_delete",
            "ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL",
            _t(table),
            sql.Identifier(DELETED_AT),
        )


def _update_undeclared(
    old: Entity | None, entity: Entity, columns: Mapping[str, ColumnInfo], plan: _Builder
) -> None:
    table = entity.table
    if old is not None:
        for field in old.fields:
            if field.name not in entity.field_map and field.name in columns:
                plan.note(
                    f"field {field.name}: removed from the entity; column {field.name} is kept"
                    " with its data"
                )
        if old.soft_delete and not entity.soft_delete:
            plan.note(
                f"soft_delete turned off: column {DELETED_AT} and its index are kept; records"
                " deleted earlier are visible again"
            )
    for name, info in columns.items():
        if name in entity.field_map or (name == DELETED_AT and entity.hidden_deleted_at):
            continue
        if info.not_null and not info.has_default and not info.identity and not info.primary_key:
            # The API never writes this column, so NOT NULL would make every create fail.
            plan.run(
                name,
                "ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL",
                _t(table),
                sql.Identifier(name),
            )
            plan.note(
                f"column {name} is not a field of entity {entity.name}: made nullable so that"
                " creates succeed (its data is kept)"
            )


def _update_indexes(
    entity: Entity,
    facts: _Facts,
    fk_columns: Collection[str],
    plan: _Builder,
    indexes: _Indexes,
) -> None:
    key = entity.primary_key.field
    created_unique = False
    for field in entity.fields:
        name = field.name
        if name == key:
            continue
        if field.unique:
            if indexes.has_unique(name):
                continue
            if facts.duplicates(name):
                plan.problem(
                    name,
                    f"field {name}: cannot make it unique: column {name} of table"
                    f" {entity.table} holds duplicate values; remove them first",
                    "unique",
                )
                continue
            reuse = indexes.ours(name)
            for index in reuse:  # e.g. the plain FK index of the same name
                _drop_index(plan, indexes, index, name)
            _create_index(plan, indexes, name, unique=True, name=reuse[0].name if reuse else None)
            created_unique = True
            continue
        dropped = [i for i in indexes.ours(name) if _single_column_unique(i, name)]
        for index in dropped:
            _drop_index(plan, indexes, index, name)
            plan.note(f"field {name}: no longer unique; index {index.name} dropped")
        if dropped and name in fk_columns and not indexes.has_leading(name):
            # The column is a relation's foreign key: it keeps a (plain) index.
            _create_index(plan, indexes, name, name=dropped[0].name)
    if entity.soft_delete and not indexes.has_exactly((DELETED_AT,)):
        _create_index(plan, indexes, DELETED_AT, live_rows_only=True)
    if created_unique:
        _note_unique_with_soft_delete(entity, plan)


def _plan_update(
    old: Entity | None,
    entity: Entity,
    columns: Mapping[str, ColumnInfo],
    checked: _Checked,
    facts: _Facts,
    fk_columns: Collection[str],
    plan: _Builder,
    indexes: _Indexes,
) -> None:
    table = entity.table
    key = entity.primary_key.field
    added = [f.name for f in entity.fields if f.name not in columns]
    if entity.hidden_deleted_at and DELETED_AT not in columns:
        added.append(DELETED_AT)
    if added and len(columns) + len(added) > MAX_COLUMNS:
        plan.problem(
            "fields",
            f"table {table} would have {len(columns) + len(added)} columns: it has"
            f" {len(columns)} (the columns of removed fields are kept) and the entity adds"
            f" {len(added)}; PostgreSQL allows at most {MAX_COLUMNS}",
        )
        return
    for field in entity.fields:
        info = columns.get(field.name)
        old_field = old.field_map.get(field.name) if old is not None else None
        if info is None:
            if field.name == key:
                plan.problem(
                    "primary_key",
                    f"primary key {key}: table {table} exists without a column {key}; adding a"
                    " primary key to an existing table is not supported",
                )
            else:
                _add_column(table, field, checked.defaults[field.name], facts, plan)
            continue
        _change_type(table, field.name, info.data_type, column_type(field), plan)
        if field.name == key:
            _update_key(table, entity, info, checked.key_kind, plan)
            continue
        _update_default(table, field, old_field, info, checked.defaults[field.name], plan)
        _update_not_null(table, field, old_field, info, facts, plan)
    if entity.hidden_deleted_at:
        _update_hidden_deleted_at(table, columns, plan)
    _update_undeclared(old, entity, columns, plan)
    _update_indexes(entity, facts, fk_columns, plan, indexes)


def plan_entity_migration(
    old: Entity | None,
    new: Entity,
    existing: Mapping[str, ColumnInfo] | None,
    *,
    table_has_rows: bool | None = None,
    nulls_in: Mapping[str, bool] | None = None,
    duplicates_in: Mapping[str, bool] | None = None,
    indexes: Sequence[IndexInfo] = (),
    old_table: Mapping[str, ColumnInfo] | None = None,
    taken_names: Collection[str] = (),
    fk_columns: Collection[str] = (),
) -> MigrationPlan:
    """Plan the DDL that brings table `new.table` in line with entity `new` (pure).

    `existing`: the columns of `new.table` (None: no such table). When `old` names another
    table, `old_table` holds that table's columns (None: it does not exist); the old table is
    then renamed, and `indexes`, `table_has_rows`, `nulls_in` and `duplicates_in` describe it.
    `table_has_rows` None means "unknown" and is treated as "has rows". `nulls_in` /
    `duplicates_in`: column -> whether it holds NULLs / duplicate non-NULL values (columns not
    listed hold none). `taken_names`: relation names used in the schema other than this table and
    its indexes. `fk_columns`: columns that are relations' foreign keys (they keep an index when
    their unique index goes).
    """
    plan = _Builder(new.table)
    checked = _check_entity(new, plan)
    if plan.failed:
        return plan.freeze()
    facts = _Facts(
        has_rows=True if table_has_rows is None else table_has_rows,
        nulls_in=nulls_in or {},
        duplicates_in=duplicates_in or {},
    )
    renaming = old is not None and old.table != new.table and old_table is not None
    if renaming:
        assert old is not None and old_table is not None
        if existing is not None or new.table in taken_names:
            plan.problem(
                "table",
                f"table: cannot rename table {old.table} to {new.table}: the name {new.table} is"
                " already used by another table, view, index or sequence",
            )
            return plan.freeze()
        columns: Mapping[str, ColumnInfo] | None = old_table
    else:
        columns = existing
    if columns is None:
        if new.table in taken_names:
            plan.problem(
                "table",
                f"table: the name {new.table} is already used by a view, index or sequence",
            )
            return plan.freeze()
        _plan_create(new, checked, plan, _Indexes(new.table, (), taken_names))
        return plan.freeze()
    index_state = _Indexes(old.table if renaming and old else new.table, indexes, taken_names)
    if renaming and old is not None:
        _plan_rename(old.table, new.table, columns, plan, index_state)
        index_state.table = new.table
    _plan_update(old, new, columns, checked, facts, fk_columns, plan, index_state)
    return plan.freeze()


# ------------------------------------------------------------------------------- relations


def _plan_join_table(
    relation: Relation,
    source: Entity,
    target: Entity,
    existing: Mapping[str, ColumnInfo] | None,
    plan: _Builder,
    indexes: _Indexes,
) -> None:
    table = relation.join_table or ""
    source_key = relation.source_join_key or ""
    target_key = relation.target_join_key or ""
    key_field = source.field_map.get(relation.source_key)
    if key_field is None:
        plan.problem(
            "source_key",
            f"relation {relation.name}: source_key {relation.source_key} is not a field of"
            f" {source.name}",
        )
        return
    columns = (
        ("source_join_key", source_key, column_type(key_field), f"{source.name}.{key_field.name}"),
        ("target_join_key", target_key, column_type(target.pk), f"{target.name}.{target.pk.name}"),
    )
    if existing is None:
        if table in indexes.taken:
            plan.problem(
                "join_table",
                f"join_table: the name {table} is already used by a view, index or sequence",
            )
            return
        plan.run(
            "join_table",
            "CREATE TABLE {} ({} {} NOT NULL, {} {} NOT NULL, PRIMARY KEY ({}, {}))",
            _t(table),
            sql.Identifier(source_key),
            _type(columns[0][2]),
            sql.Identifier(target_key),
            _type(columns[1][2]),
            sql.Identifier(source_key),
            sql.Identifier(target_key),
        )
    else:
        for subject, column, wanted, holds in columns:
            info = existing.get(column)
            if info is None:
                plan.problem(
                    subject, f"{subject}: join table {table} exists without a column {column}"
                )
            elif not _accepts(info.data_type, wanted):
                plan.problem(
                    subject,
                    f"{subject}: column {column} of join table {table} has type {info.data_type}"
                    f" but holds {holds} of type {wanted}",
                    "type",
                )
        if plan.failed:
            return
        if indexes.has_leading(target_key):
            return
    # The primary key serves lookups by source; this index serves lookups by target.
    _create_index(plan, indexes, target_key)


def _plan_foreign_key_index(
    relation: Relation,
    target: Entity,
    existing: Mapping[str, ColumnInfo] | None,
    plan: _Builder,
    indexes: _Indexes,
) -> None:
    column = relation.target_key or ""
    if existing is None:
        plan.problem(
            "target",
            f"relation {relation.name}: table {target.table} of entity {target.name} does not"
            " exist",
        )
    elif column not in existing:
        plan.problem(
            "target_key",
            f"target_key: table {target.table} of entity {target.name} has no column {column}",
        )
    elif not indexes.has_leading(column):
        _create_index(plan, indexes, column)


def plan_relation_migration(
    relation: Relation,
    source: Entity | None,
    target: Entity | None,
    existing: Mapping[str, ColumnInfo] | None,
    *,
    indexes: Sequence[IndexInfo] = (),
    taken_names: Collection[str] = (),
) -> MigrationPlan:
    """Plan a relation's DDL (pure). Many-to-many: the join table (`existing` = its columns,
    None when absent) and an index on its target key. One-to-many / one-to-one: an index on the
    target table's `target_key` column (`existing` = the target table's columns). Never a
    foreign-key constraint (contract)."""
    if relation.many_to_many:
        table = relation.join_table or ""
        keys = {
            "join_table": relation.join_table,
            "source_join_key": relation.source_join_key,
            "target_join_key": relation.target_join_key,
        }
    else:
        table = target.table if target is not None else ""
        keys = {"target_key": relation.target_key}
    plan = _Builder(table)
    for subject, value in keys.items():
        if not value:
            plan.problem(subject, f"relation {relation.name}: {subject} is required")
        else:
            _check_name(plan, subject, subject, value)
    if relation.many_to_many and relation.source_join_key == relation.target_join_key:
        plan.problem(
            "target_join_key",
            f"relation {relation.name}: source_join_key and target_join_key must differ",
        )
    for subject, name, entity in (
        ("source", relation.source, source),
        ("target", relation.target, target),
    ):
        if entity is None:
            plan.problem(subject, f"relation {relation.name}: {subject} entity not found: {name}")
    if plan.failed or source is None or target is None:
        return plan.freeze()
    index_state = _Indexes(table, indexes, taken_names)
    if relation.many_to_many:
        _plan_join_table(relation, source, target, existing, plan, index_state)
    else:
        _plan_foreign_key_index(relation, target, existing, plan, index_state)
    return plan.freeze()


# ------------------------------------------------------------------------------- execution


async def _has_rows(conn: AsyncConnection[Any], table: str) -> bool:
    cur = await conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(_t(table)))
    row = await cur.fetchone()
    return bool(row and row[0])


async def _columns_with_nulls(
    conn: AsyncConnection[Any], table: str, columns: Sequence[str]
) -> dict[str, bool]:
    if not columns:
        return {}
    checks = sql.SQL(", ").join(
        sql.SQL("coalesce(bool_or({} IS NULL), false)").format(sql.Identifier(c)) for c in columns
    )
    cur = await conn.execute(sql.SQL("SELECT {} FROM {}").format(checks, _t(table)))
    row = await cur.fetchone()
    assert row is not None  # an aggregate without GROUP BY always returns one row
    return {column: bool(value) for column, value in zip(columns, row, strict=True)}


async def _columns_with_duplicates(
    conn: AsyncConnection[Any], table: str, columns: Sequence[str]
) -> dict[str, bool]:
    found: dict[str, bool] = {}
    for column in columns:
        name = sql.Identifier(column)
        cur = await conn.execute(
            sql.SQL(
                "SELECT EXISTS (SELECT 1 FROM {} WHERE {} IS NOT NULL GROUP BY {}"
                " HAVING count(*) > 1)"
            ).format(_t(table), name, name)
        )
        row = await cur.fetchone()
        found[column] = bool(row and row[0])
    return found


async def _taken_names(
    conn: AsyncConnection[Any],
    table: str,
    columns: Collection[str],
    own_table: str | None,
    own_indexes: Sequence[IndexInfo],
    extra: Collection[str] = (),
) -> set[str]:
    wanted = {table, *extra}
    for column in columns:
        wanted.update(_index_name_candidates(table, column))
    used = await relation_names_in_use(conn, wanted)
    return used - {i.name for i in own_indexes} - ({own_table} if own_table else set())


async def execute_plan(conn: AsyncConnection[Any], plan: MigrationPlan) -> None:
    """Run the plan's statements in a savepoint of the caller's transaction (a transaction of
    its own when the connection is idle). Failures a client can cause (data that no longer fits,
    a name taken meanwhile, too many columns) become 422 naming the field; the savepoint is
    rolled back first."""
    if not plan.statements:
        return
    done = 0  # statements that succeeded; the next one is the one that failed
    try:
        async with conn.transaction():
            for statement in plan.statements:
                await conn.execute(statement)
                done += 1
    except (
        psycopg.IntegrityError,
        psycopg.DataError,
        psycopg.errors.DuplicateTable,
        psycopg.errors.DuplicateObject,
        # More than 1,600 columns counting the slots of columns dropped outside rocketd,
        # which the plan cannot see.
        psycopg.errors.TooManyColumns,
    ) as exc:
        subject = plan.subjects[done] if done < len(plan.subjects) else "table"
        reason = exc.diag.message_primary or str(exc)
        if exc.diag.message_detail:
            reason = f"{reason} ({exc.diag.message_detail})"
        message = f"cannot migrate table {plan.table}: {subject}: {reason}"
        raise ValidationFailed(
            message, [ErrorDetail(message=f"{subject}: {reason}", field=subject, rule="migration")]
        ) from exc


async def migrate_entity(
    conn: AsyncConnection[Any],
    old: Entity | None,
    new: Entity,
    *,
    fk_columns: Collection[str] = (),
) -> list[str]:
    """Bring entity `new`'s table in line with its definition (`old`: the definition it replaces,
    None for a new entity). Runs inside the caller's transaction and never commits. Raises
    `ValidationFailed` (422) naming the field(s) when the change is unsafe, leaving the database
    as it was. Returns notes describing what was done differently from the literal metadata.

    `fk_columns`: columns of this table that relations use as foreign keys (a dropped unique
    index on one is replaced by a plain index)."""
    existing = await introspect_table(conn, new.table)
    old_table = None
    if old is not None and old.table != new.table:
        old_table = await introspect_table(conn, old.table)
    renaming = old is not None and old_table is not None
    base_table = old.table if renaming and old is not None else new.table
    columns = old_table if renaming else existing
    indexes = await introspect_indexes(conn, base_table) if columns is not None else ()
    names = {f.name for f in new.fields} | {DELETED_AT} | set(columns or ())
    taken = await _taken_names(
        conn, new.table, names, base_table if columns is not None else None, indexes
    )
    has_rows = await _has_rows(conn, base_table) if columns is not None else False
    nulls: dict[str, bool] = {}
    duplicates: dict[str, bool] = {}
    if columns is not None and has_rows:
        key = new.primary_key.field
        maybe_null = [
            f.name
            for f in new.fields
            if f.name != key
            and f.is_required
            and (info := columns.get(f.name)) is not None
            and not info.not_null
        ]
        maybe_duplicated = [
            f.name
            for f in new.fields
            if f.name != key
            and f.unique
            and f.name in columns
            and not any(_single_column_unique(i, f.name) for i in indexes)
        ]
        nulls = await _columns_with_nulls(conn, base_table, maybe_null)
        duplicates = await _columns_with_duplicates(conn, base_table, maybe_duplicated)
    plan = plan_entity_migration(
        old,
        new,
        existing,
        table_has_rows=has_rows,
        nulls_in=nulls,
        duplicates_in=duplicates,
        indexes=indexes,
        old_table=old_table,
        taken_names=taken,
        fk_columns=fk_columns,
    )
    error = plan.error()
    if error is not None:
        raise error
    await execute_plan(conn, plan)
    return list(plan.notes)


async def migrate_relation(
    conn: AsyncConnection[Any], registry: EntityLookup, relation: Relation
) -> None:
    """Create what a relation needs: a many-to-many join table (checked when it exists) and the
    index on the foreign-key column. Runs inside the caller's transaction and never commits;
    422 naming the key at fault when the existing schema does not fit."""
    source = registry.entity(relation.source)
    target = registry.entity(relation.target)
    if relation.many_to_many:
        table = relation.join_table or ""
        column = relation.target_join_key or ""
    else:
        table = target.table if target is not None else ""
        column = relation.target_key or ""
    valid = bool(NAME_RE.fullmatch(table)) and bool(NAME_RE.fullmatch(column))
    existing = await introspect_table(conn, table) if valid else None
    indexes = await introspect_indexes(conn, table) if existing is not None else ()
    taken = (
        await _taken_names(conn, table, [column], table if existing else None, indexes)
        if valid
        else set()
    )
    plan = plan_relation_migration(
        relation, source, target, existing, indexes=indexes, taken_names=taken
    )
    error = plan.error()
    if error is not None:
        raise error
    await execute_plan(conn, plan)
