"""Turning entity and relation JSON into the typed model, and checking it against other metadata.

`parse_entity` / `parse_relation` validate one definition on its own and report every problem at
once as a `MetadataError` (422 `VALIDATION_FAILED`, one detail per problem with the key path at
fault). `entity_problems_in` / `relation_problems_in` check a parsed definition against the rest of
an app's metadata (a `Registry`) and return the problems as sentences; the admin layer turns them
into a `MetadataError`. Nothing here touches the database or knows about HTTP.
"""

from __future__ import annotations

import difflib
import math
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Final

from rocketd.errors import ErrorDetail, ValidationFailed
from rocketd.metadata.field_types import ValueProblem, coerce_write_value, value_text
from rocketd.metadata.model import (
    AUTO_MODES,
    DELETED_AT,
    FETCH_MODES,
    FIELD_TYPES,
    MAX_COLUMNS,
    MAX_INDEX_COLUMNS,
    MAX_INDEXES,
    NO_DEFAULT,
    ON_DELETE_POLICIES,
    OWNERSHIPS,
    PK_TYPES,
    RELATION_TYPES,
    WRITE_MODES,
    Entity,
    Field,
    IndexColumn,
    IndexSpec,
    PrimaryKey,
    Relation,
    SlugConfig,
)

# Entity, table, field, relation, join-table and key-column names end up as SQL identifiers
# (always quoted, but still kept to one safe, portable spelling).
NAME_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]{0,62}")
NAME_RULE: Final = 'use 1 to 63 lowercase letters, digits or "_", starting with a letter'

ENTITY_KEYS: Final = frozenset(
    {"name", "table", "primary_key", "soft_delete", "slug", "fields", "indexes", "list_total"}
)
FIELD_KEYS: Final = frozenset(
    {
        "name",
        "type",
        "required",
        "unique",
        "default",
        "nullable",
        "enum",
        "precision",
        "auto",
        "indexed",
    }
)
INDEX_KEYS: Final = frozenset({"fields", "unique"})
# Types a btree index on the column would not help a list with (lists cannot filter them).
_UNINDEXABLE_TYPES: Final = frozenset({"json", "file"})
PRIMARY_KEY_KEYS: Final = frozenset({"field", "type", "generated"})
SLUG_KEYS: Final = frozenset({"field", "source", "regenerate_on_update"})
RELATION_KEYS: Final = frozenset(
    {
        "name",
        "type",
        "source",
        "target",
        "source_key",
        "target_key",
        "join_table",
        "source_join_key",
        "target_join_key",
        "ownership",
        "on_delete",
        "fetch",
        "write_mode",
    }
)
# Keys that real upstream input carries but the contract does not define: accepted and dropped.
# Every entity, field, primary key, slug and relation object of the upstream example schemas
# (content-management, employee-management, helpdesk-ticketing, skills-assessment) and the
# upstream admin UI's entity/relation types use contract keys only, so this is empty; add a key
# here (with where it comes from) rather than loosening the unknown-key check.
IGNORED_UPSTREAM_KEYS: Final[frozenset[str]] = frozenset()

# Segments of /api/{app}/... that are routes of their own; an entity with such a name would be
# unreachable. Every name starting with "_" is reserved as well.
RESERVED_ENTITY_NAMES: Final = frozenset(
    {"auth", "_admin", "_ui", "_workflows", "_files", "_events"}
)
SYSTEM_TABLE_PREFIXES: Final = ("_", "pg_")

_PK_FIELD_TYPES: Final[Mapping[str, frozenset[str]]] = {
    "uuid": frozenset({"uuid"}),
    "int": frozenset({"int", "integer", "bigint"}),
    "integer": frozenset({"int", "integer", "bigint"}),
    "bigint": frozenset({"int", "integer", "bigint"}),
    "string": frozenset({"string", "text"}),
}
# The primary_key.type implied by the PK field's type when `type` is left out.
_PK_TYPE_FOR_FIELD: Final[Mapping[str, str]] = {
    "uuid": "uuid",
    "int": "int",
    "integer": "integer",
    "bigint": "bigint",
    "string": "string",
    "text": "string",
}
_GENERATED_PK_TYPES: Final = frozenset({"uuid", "int", "integer", "bigint"})
_INT_RANGES: Final[Mapping[str, tuple[int, int]]] = {
    "int": (-(2**31), 2**31 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}
_MAX_PRECISION: Final = 18
_NUMBER_TYPES: Final = frozenset({*_INT_RANGES, "float", "decimal"})
_INT_TEXT: Final = re.compile(r"[+-]?\d+")
_NUMBER_TEXT: Final = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def is_valid_name(value: object) -> bool:
    """True when `value` is a string usable as an entity/table/field/relation/column name."""
    return isinstance(value, str) and NAME_PATTERN.fullmatch(value) is not None


def _allowed(values: Iterable[str]) -> str:
    return ", ".join(sorted(values))


class MetadataError(ValidationFailed):
    """Invalid metadata: 422 `VALIDATION_FAILED`, every problem in one answer.

    `message` is the problems joined with "; "; `details` has one entry per problem, with the key
    path at fault (e.g. `fields[2].type`) as `field` when it is known.
    """

    def __init__(self, problems: Sequence[str | ErrorDetail]) -> None:
        details = [p if isinstance(p, ErrorDetail) else ErrorDetail(p) for p in problems]
        super().__init__("; ".join(d.message for d in details), details)


class _Problems:
    """Collects problems while a definition is read, so all of them can be reported together."""

    def __init__(self) -> None:
        self.details: list[ErrorDetail] = []

    def add(self, path: str, message: str) -> None:
        self.details.append(ErrorDetail(message, field=path))

    def raise_if_any(self) -> None:
        if self.details:
            raise MetadataError(self.details)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_keys(
    data: Mapping[str, Any], allowed: frozenset[str], path: str, where: str, problems: _Problems
) -> None:
    for key in data:
        if key in allowed or key in IGNORED_UPSTREAM_KEYS:
            continue
        hint = difflib.get_close_matches(str(key), sorted(allowed), n=1)
        suggestion = f'did you mean "{hint[0]}"? ' if hint else ""
        allowed_text = _allowed(allowed)
        problems.add(
            _join(path, str(key)),
            f'unknown key "{key}" in {where} ({suggestion}allowed keys: {allowed_text})',
        )


def _blank(value: object) -> bool:
    """Absent, null and "" all mean "not set" (the admin UI sends "" for fields left empty)."""
    return value is None or value == ""


def _optional_text(data: Mapping[str, Any], key: str, path: str, problems: _Problems) -> str | None:
    """A string value, or None when blank (a non-string is reported)."""
    value = data.get(key)
    if _blank(value):
        return None
    if not isinstance(value, str):
        problems.add(_join(path, key), f"{_join(path, key)} must be a string")
        return None
    return value


def _flag(data: Mapping[str, Any], key: str, path: str, problems: _Problems) -> bool:
    """A boolean value; absent or null means false."""
    value = data.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        problems.add(_join(path, key), f"{_join(path, key)} must be true or false")
        return False
    return value


def _check_name(value: str, path: str, what: str, problems: _Problems) -> None:
    if not is_valid_name(value):
        problems.add(path, f'{what} "{value}" is invalid: {NAME_RULE}')


def _required_name(
    data: Mapping[str, Any], key: str, path: str, problems: _Problems, *, what: str, missing: str
) -> str:
    value = _optional_text(data, key, path, problems)
    if value is None:
        if _blank(data.get(key)):
            problems.add(_join(path, key), missing)
        return ""
    _check_name(value, _join(path, key), what, problems)
    return value


# ------------------------------------------------------------------------------------ entity


def parse_entity(data: object) -> Entity:
    """Validate an entity definition and build the `Entity`; raise `MetadataError` listing every
    problem found."""
    if not isinstance(data, dict):
        raise MetadataError(["entity definition must be a JSON object"])
    problems = _Problems()
    _check_keys(data, ENTITY_KEYS, "", "entity", problems)
    name = _required_name(
        data, "name", "", problems, what="entity name", missing="entity name is required"
    )
    table = _required_name(
        data, "table", "", problems, what="table name", missing="table name is required"
    )
    soft_delete = _flag(data, "soft_delete", "", problems)
    fields = _parse_fields(data.get("fields"), problems)
    by_name = {f.name: f for f in fields if f.name}
    _check_column_count(len(fields), soft_delete and DELETED_AT not in by_name, problems)
    primary_key = _parse_primary_key(data.get("primary_key"), by_name, problems)
    slug = _parse_slug(data.get("slug"), by_name, problems)
    indexes = _parse_indexes(data.get("indexes"), by_name, primary_key.field, problems)
    _check_indexed_fields(fields, primary_key.field, indexes, problems)
    list_total = True if data.get("list_total") is None else _flag(data, "list_total", "", problems)
    problems.raise_if_any()
    return Entity(
        name=name,
        table=table,
        primary_key=primary_key,
        fields=tuple(fields),
        soft_delete=soft_delete,
        slug=slug,
        indexes=tuple(indexes),
        list_total=list_total,
    )


def _check_column_count(fields: int, hidden_deleted_at: bool, problems: _Problems) -> None:
    """The table gets a column per field, plus `deleted_at` for soft delete when no field
    declares it; PostgreSQL refuses a table with more than `MAX_COLUMNS`."""
    columns = fields + (1 if hidden_deleted_at else 0)
    if columns > MAX_COLUMNS:
        extra = " plus the deleted_at column of soft delete" if hidden_deleted_at else ""
        problems.add(
            "fields",
            f"too many fields: the table would have {columns} columns ({fields} fields{extra});"
            f" PostgreSQL allows at most {MAX_COLUMNS}",
        )


def _parse_indexes(
    raw: object, fields: Mapping[str, Field], pk: str, problems: _Problems
) -> list[IndexSpec]:
    """The entity's `indexes`: a list of `{"fields": [...], "unique": bool}`; a field name with a
    leading "-" is a descending column."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.add("indexes", 'indexes must be a list of objects like {"fields": ["a", "-b"]}')
        return []
    if len(raw) > MAX_INDEXES:
        problems.add("indexes", f"too many indexes: {len(raw)} (at most {MAX_INDEXES})")
        return []
    specs: list[IndexSpec] = []
    seen: dict[tuple[str, ...], int] = {}
    for position, item in enumerate(raw):
        path = f"indexes[{position}]"
        if not isinstance(item, dict):
            problems.add(path, f'{path} must be an object like {{"fields": ["a", "-b"]}}')
            continue
        _check_keys(item, INDEX_KEYS, path, "index", problems)
        unique = _flag(item, "unique", path, problems)
        columns = _parse_index_columns(item.get("fields"), _join(path, "fields"), fields, problems)
        if not columns:
            continue
        spec = IndexSpec(columns, unique)
        signature = tuple(c.to_json() for c in columns)
        if signature in seen:
            problems.add(
                _join(path, "fields"),
                f"{path} repeats indexes[{seen[signature]}] (same fields in the same order)",
            )
            continue
        if signature == (pk,):
            problems.add(
                _join(path, "fields"), f'{path}: the primary key "{pk}" is indexed already'
            )
            continue
        seen[signature] = position
        specs.append(spec)
    return specs


def _parse_index_columns(
    raw: object, path: str, fields: Mapping[str, Field], problems: _Problems
) -> tuple[IndexColumn, ...]:
    if not isinstance(raw, list) or not raw:
        problems.add(path, f'{path} must be a non-empty list of field names ("-name": descending)')
        return ()
    if len(raw) > MAX_INDEX_COLUMNS:
        problems.add(path, f"{path}: too many fields ({len(raw)}, at most {MAX_INDEX_COLUMNS})")
        return ()
    columns: list[IndexColumn] = []
    used: set[str] = set()
    for position, item in enumerate(raw):
        item_path = f"{path}[{position}]"
        if not isinstance(item, str):
            problems.add(item_path, f"{item_path} must be a field name")
            return ()
        descending = item.startswith("-")
        name = item[1:] if descending else item
        if not is_valid_name(name):
            shown = item if len(item) <= 70 else item[:70] + "..."
            problems.add(item_path, f'{item_path}: "{shown}" is not a field name ({NAME_RULE})')
            return ()
        field = fields.get(name)
        if field is None:
            problems.add(item_path, f'{item_path}: field "{name}" not found in fields')
            return ()
        if field.type in _UNINDEXABLE_TYPES:
            problems.add(
                item_path, f'{item_path}: field "{name}" is of type {field.type} (not indexable)'
            )
            return ()
        if name in used:
            problems.add(item_path, f'{item_path}: field "{name}" is listed twice')
            return ()
        used.add(name)
        columns.append(IndexColumn(name, descending))
    return tuple(columns)


def _check_indexed_fields(
    fields: Sequence[Field], pk: str, indexes: Sequence[IndexSpec], problems: _Problems
) -> None:
    """`indexed: true` must add an index nothing else already gives."""
    declared = {tuple(c.to_json() for c in spec.columns) for spec in indexes}
    for position, field in enumerate(fields):
        if not field.indexed:
            continue
        path = f"fields[{position}].indexed"
        if field.name == pk:
            problems.add(path, f'field "{field.name}": the primary key is indexed already')
        elif field.unique:
            problems.add(path, f'field "{field.name}": a unique field is indexed already')
        elif field.type in _UNINDEXABLE_TYPES:
            problems.add(path, f'field "{field.name}" is of type {field.type} (not indexable)')
        elif (field.name,) in declared:
            problems.add(path, f'field "{field.name}": indexes declares the same index')


def _parse_fields(raw: object, problems: _Problems) -> list[Field]:
    if raw is None or raw == []:
        problems.add("fields", "entity must have at least one field")
        return []
    if not isinstance(raw, list):
        problems.add("fields", "fields must be a list of field objects")
        return []
    fields: list[Field] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        path = f"fields[{index}]"
        if not isinstance(item, dict):
            problems.add(path, f"{path} must be an object with at least name and type")
            continue
        field = _parse_field(item, path, problems)
        if field.name:
            if field.name in seen:
                problems.add(_join(path, "name"), f'duplicate field name "{field.name}"')
                continue
            seen.add(field.name)
        fields.append(field)
    return fields


def _parse_field(data: Mapping[str, Any], path: str, problems: _Problems) -> Field:
    raw_name = data.get("name")
    label = f'field "{raw_name}"' if isinstance(raw_name, str) and raw_name else path
    _check_keys(data, FIELD_KEYS, path, label, problems)
    name = _required_name(
        data, "name", path, problems, what="field name", missing=f"{path}: field name is required"
    )
    field_type = _optional_text(data, "type", path, problems) or ""
    if not field_type:
        if _blank(data.get("type")):
            problems.add(
                _join(path, "type"),
                f"{label}: type is required (one of {_allowed(FIELD_TYPES)})",
            )
    elif field_type not in FIELD_TYPES:
        problems.add(
            _join(path, "type"),
            f'{label}: unknown type "{field_type}" (allowed: {_allowed(FIELD_TYPES)})',
        )
        field_type = ""
    required = _flag(data, "required", path, problems)
    unique = _flag(data, "unique", path, problems)
    indexed = _flag(data, "indexed", path, problems)
    nullable = _flag(data, "nullable", path, problems)
    enum = _parse_enum(data.get("enum"), _join(path, "enum"), label, problems)
    precision = _parse_precision(data.get("precision"), field_type, path, label, problems)
    auto = _parse_auto(data, field_type, path, label, problems)
    default: Any = NO_DEFAULT
    if "default" in data:
        default = _parse_default(
            data["default"], field_type, enum, precision, path, label, problems
        )
    if name == DELETED_AT:
        if field_type and field_type != "timestamp":
            problems.add(
                _join(path, "type"),
                f'field "{DELETED_AT}" must be of type timestamp (soft delete writes it)',
            )
        if required and not nullable:
            problems.add(
                _join(path, "required"),
                f'field "{DELETED_AT}" cannot be required: it is null on every live record',
            )
    return Field(
        name=name,
        type=field_type,
        required=required,
        unique=unique,
        default=default,
        nullable=nullable,
        enum=enum,
        precision=precision,
        auto=auto,
        indexed=indexed,
    )


def _parse_enum(raw: object, path: str, label: str, problems: _Problems) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        problems.add(path, f"{label}: enum must be a list of strings")
        return ()
    duplicates = sorted(v for v, count in Counter(raw).items() if count > 1)
    if duplicates:
        listed = ", ".join(f'"{v}"' for v in duplicates)
        problems.add(path, f"{label}: enum lists {listed} more than once")
    return tuple(raw)


def _parse_precision(
    raw: object, field_type: str, path: str, label: str, problems: _Problems
) -> int:
    if raw is None:
        return 0
    key_path = _join(path, "precision")
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= _MAX_PRECISION:
        problems.add(key_path, f"{label}: precision must be a whole number from 0 to 18")
        return 0
    if raw and field_type and field_type != "decimal":
        problems.add(key_path, f"{label}: precision applies to decimal fields only")
        return 0
    return raw


def _parse_auto(
    data: Mapping[str, Any], field_type: str, path: str, label: str, problems: _Problems
) -> str | None:
    auto = _optional_text(data, "auto", path, problems)
    if auto is None:
        return None
    key_path = _join(path, "auto")
    if auto not in AUTO_MODES:
        problems.add(key_path, f'{label}: auto must be "create" or "update", not "{auto}"')
        return None
    if field_type and field_type != "timestamp":
        problems.add(key_path, f"{label}: auto applies to timestamp fields only")
        return None
    return auto


def _parse_default(
    raw: Any,
    field_type: str,
    enum: tuple[str, ...],
    precision: int,
    path: str,
    label: str,
    problems: _Problems,
) -> Any:
    """Type-check a default; returns it normalised (see `_coerce_default`). A number must fit
    the column: the range of an int, a finite float, a decimal's digits."""
    if raw is None:
        return None  # SQL NULL is a legitimate default for any type
    if not field_type:
        return raw  # the type itself is already reported
    value, problem = _coerce_default(raw, field_type)
    key_path = _join(path, "default")
    if not problem and field_type in _NUMBER_TYPES:
        try:
            coerce_write_value(Field("default", field_type, precision=precision), value)
        except ValueProblem as out_of_range:
            problem = out_of_range.expectation
    if problem:
        problems.add(key_path, f"{label}: default {problem}")
        return raw
    if enum and value_text(value) not in enum:
        problems.add(key_path, f'{label}: default "{value_text(value)}" is not one of its enum')
    return value


def _coerce_default(raw: Any, field_type: str) -> tuple[Any, str]:
    """Return (value, "") or (raw, problem).

    Besides the JSON type matching the field, a string spelling of a number or boolean is
    accepted for number and boolean fields and stored as the number/boolean (a decimal keeps its
    exact text): the upstream admin UI edits every default in a text box and sends a string.
    """
    if field_type in ("json", "file"):
        return raw, ""
    if field_type in ("string", "text"):
        return (raw, "") if isinstance(raw, str) else (raw, "must be a string")
    if field_type in _INT_RANGES:
        value: Any = raw
        if isinstance(raw, str) and _INT_TEXT.fullmatch(raw.strip()):
            value = int(raw.strip())
        elif isinstance(raw, float) and raw.is_integer():
            value = int(raw)
        if isinstance(value, bool) or not isinstance(value, int):
            return raw, "must be a whole number"
        low, high = _INT_RANGES[field_type]
        if not low <= value <= high:
            return raw, f"{value} is out of range for {field_type}"
        return value, ""
    if field_type in ("float", "decimal"):
        if isinstance(raw, str):
            text = raw.strip()
            if not _NUMBER_TEXT.fullmatch(text):
                return raw, "must be a number"
            if field_type == "decimal":
                return text, ""  # decimals travel as strings (README "Value encoding"): exact
            number: Any = int(text) if _INT_TEXT.fullmatch(text) else float(text)
        else:
            number = raw
        if isinstance(number, bool) or not isinstance(number, int | float):
            return raw, "must be a number"
        if isinstance(number, float) and not math.isfinite(number):
            return raw, "must be a finite number"
        return number, ""
    if field_type == "boolean":
        if isinstance(raw, bool):
            return raw, ""
        if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            return raw.strip().lower() == "true", ""
        return raw, "must be true or false"
    if not isinstance(raw, str):
        return raw, f"must be a string holding a {field_type}"
    if field_type == "uuid":
        try:
            uuid.UUID(raw)
        except ValueError:
            return raw, f'"{raw}" is not a valid UUID'
        return raw, ""
    if field_type == "timestamp":
        try:
            datetime.fromisoformat(raw)
        except ValueError:
            return raw, (
                f'"{raw}" is not an ISO 8601 timestamp'
                ' (for "the current time" use auto: "create" instead)'
            )
        return raw, ""
    if field_type == "date":
        try:
            date.fromisoformat(raw)
        except ValueError:
            return raw, f'"{raw}" is not an ISO 8601 date (YYYY-MM-DD)'
        return raw, ""
    return raw, ""  # pragma: no cover - every FIELD_TYPES member is handled above


def _sub_object(
    raw: object, key: str, allowed: frozenset[str], problems: _Problems
) -> dict[str, Any] | None:
    """A nested object (primary_key, slug) with its keys checked; None (reported) otherwise."""
    if not isinstance(raw, dict):
        problems.add(key, f"{key} must be an object (keys: {_allowed(allowed)})")
        return None
    _check_keys(raw, allowed, key, key, problems)
    return raw


def _parse_primary_key(raw: object, fields: Mapping[str, Field], problems: _Problems) -> PrimaryKey:
    fallback = PrimaryKey(field="")
    if raw is None:
        problems.add("primary_key.field", "primary key field is required")
        return fallback
    raw = _sub_object(raw, "primary_key", PRIMARY_KEY_KEYS, problems)
    if raw is None:
        return fallback
    field_name = _optional_text(raw, "field", "primary_key", problems)
    pk_type = _optional_text(raw, "type", "primary_key", problems)
    generated = _flag(raw, "generated", "primary_key", problems)
    if field_name is None:
        if _blank(raw.get("field")):
            problems.add("primary_key.field", "primary key field is required")
        return fallback
    field = fields.get(field_name)
    if field is None:
        problems.add("primary_key.field", f"primary key field {field_name} not found in fields")
        return fallback
    if pk_type is not None and pk_type not in PK_TYPES:
        problems.add(
            "primary_key.type",
            f'primary key type "{pk_type}" is invalid (allowed: {_allowed(PK_TYPES)})',
        )
        return fallback
    if not field.type:
        return fallback  # the field's own type problem is already reported
    if pk_type is None:
        pk_type = _PK_TYPE_FOR_FIELD.get(field.type)
        if pk_type is None:
            problems.add(
                "primary_key.field",
                f'primary key field "{field_name}" has type {field.type}; a primary key must be'
                " uuid, int, integer, bigint, string or text",
            )
            return fallback
    elif field.type not in _PK_FIELD_TYPES[pk_type]:
        expected = " or ".join(sorted(_PK_FIELD_TYPES[pk_type]))
        problems.add(
            "primary_key.type",
            f'primary key type "{pk_type}" needs field "{field_name}" to be of type {expected},'
            f" not {field.type}",
        )
    if generated and pk_type not in _GENERATED_PK_TYPES:
        problems.add(
            "primary_key.generated",
            f'a primary key of type "{pk_type}" cannot be generated'
            " (only uuid, int, integer and bigint keys can)",
        )
    return PrimaryKey(field=field_name, type=pk_type, generated=generated)


def _parse_slug(raw: object, fields: Mapping[str, Field], problems: _Problems) -> SlugConfig | None:
    if raw is None:
        return None
    raw = _sub_object(raw, "slug", SLUG_KEYS, problems)
    if raw is None:
        return None
    field_name = _optional_text(raw, "field", "slug", problems)
    source = _optional_text(raw, "source", "slug", problems)
    regenerate = _flag(raw, "regenerate_on_update", "slug", problems)
    if field_name is None:
        problems.add("slug.field", "slug field is required")
        return None
    field = fields.get(field_name)
    if field is None:
        problems.add("slug.field", f'slug field "{field_name}" not found in fields')
    else:
        if field.type and field.type not in ("string", "text"):
            problems.add("slug.field", f'slug field "{field_name}" must be of type string or text')
        if not field.unique:
            problems.add("slug.field", f'slug field "{field_name}" must have unique: true')
    if source is not None and source not in fields:
        problems.add("slug.source", f'slug source field "{source}" not found in fields')
    return SlugConfig(field=field_name, source=source, regenerate_on_update=regenerate)


# ---------------------------------------------------------------------------------- relation


def parse_relation(data: object) -> Relation:
    """Validate a relation definition and build the `Relation`; raise `MetadataError` listing
    every problem found. Whether its entities and key fields exist is `relation_problems_in`'s
    business."""
    if not isinstance(data, dict):
        raise MetadataError(["relation definition must be a JSON object"])
    problems = _Problems()
    _check_keys(data, RELATION_KEYS, "", "relation", problems)
    name = _required_name(
        data, "name", "", problems, what="relation name", missing="relation name is required"
    )
    rel_type = data.get("type")
    if _blank(rel_type):
        problems.add("type", f"relation type is required (one of {_allowed(RELATION_TYPES)})")
        rel_type = ""
    elif not isinstance(rel_type, str) or rel_type not in RELATION_TYPES:
        problems.add("type", f"invalid relation type: {rel_type}")
        rel_type = ""
    source = _optional_text(data, "source", "", problems)
    target = _optional_text(data, "target", "", problems)
    if source is None or target is None:
        missing_path = "source" if source is None else "target"
        problems.add(missing_path, "source and target are required")
    for key, value in (("source", source), ("target", target)):
        if value is not None:
            _check_name(value, key, f"{key} entity name", problems)

    columns: dict[str, str | None] = {}
    for key in ("source_key", "target_key", "join_table", "source_join_key", "target_join_key"):
        columns[key] = _optional_text(data, key, "", problems)
        value = columns[key]
        if value is not None:
            what = "join table name" if key == "join_table" else f"{key} column name"
            _check_name(value, key, what, problems)
    source_key = columns["source_key"] or "id"

    if rel_type == "many_to_many":
        if columns["join_table"] is None:
            problems.add("join_table", "join_table is required for many_to_many relations")
        for key in ("source_join_key", "target_join_key"):
            if columns[key] is None:
                problems.add(key, f"{key} is required for many_to_many relations")
        if columns["source_join_key"] and columns["source_join_key"] == columns["target_join_key"]:
            problems.add(
                "target_join_key",
                "source_join_key and target_join_key must be different columns",
            )
    elif rel_type:
        if columns["target_key"] is None:
            problems.add("target_key", f"target_key is required for {rel_type} relations")
        elif source is not None and source == target and columns["target_key"] == source_key:
            problems.add(
                "target_key",
                "a relation from an entity to itself needs a target_key other than its source_key",
            )

    choices: dict[str, str] = {}
    for key, allowed, fallback in (
        ("ownership", OWNERSHIPS, "source"),
        ("on_delete", ON_DELETE_POLICIES, "detach"),
        ("fetch", FETCH_MODES, "lazy"),
        ("write_mode", WRITE_MODES, "diff"),
    ):
        value = _optional_text(data, key, "", problems)
        if value is not None and value not in allowed:
            problems.add(key, f'invalid {key} "{value}" (allowed: {_allowed(allowed)})')
        choices[key] = value if value in allowed else fallback

    problems.raise_if_any()
    return Relation(
        name=name,
        type=rel_type,
        source=source or "",
        target=target or "",
        source_key=source_key,
        target_key=columns["target_key"],
        join_table=columns["join_table"],
        source_join_key=columns["source_join_key"],
        target_join_key=columns["target_join_key"],
        ownership=choices["ownership"],
        on_delete=choices["on_delete"],
        fetch=choices["fetch"],
        write_mode=choices["write_mode"],
    )


# The parsing toolkit other definition parsers share (rules, state machines, workflows; see
# metadata/definitions.py): the same problem collector and the same messages everywhere.
Problems = _Problems
join_path = _join
check_keys = _check_keys
is_blank = _blank
