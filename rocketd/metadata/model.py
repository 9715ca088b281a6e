"""Typed metadata: Entity, Field, PrimaryKey, SlugConfig, Relation (frozen dataclasses).

These are the shapes the engine works with; raw metadata dicts never travel past
`rocketd.metadata.parse`. Derived lookups (fields by name, writable sets) are computed once when
an object is built. `to_json()` gives the stored/echoed definition: keys with their default value
are omitted, as upstream does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

# Field types of the contract (metadata.md). `integer` is an alias of `int`.
FIELD_TYPES: Final = frozenset(
    {
        "string",
        "text",
        "int",
        "integer",
        "bigint",
        "float",
        "decimal",
        "boolean",
        "uuid",
        "timestamp",
        "date",
        "json",
        "file",
    }
)
PK_TYPES: Final = frozenset({"uuid", "int", "integer", "bigint", "string"})
RELATION_TYPES: Final = frozenset({"one_to_one", "one_to_many", "many_to_many"})
ON_DELETE_POLICIES: Final = frozenset({"cascade", "set_null", "restrict", "detach"})
WRITE_MODES: Final = frozenset({"diff", "replace", "append"})
OWNERSHIPS: Final = frozenset({"source", "target", "none"})
FETCH_MODES: Final = frozenset({"lazy", "eager"})
AUTO_MODES: Final = frozenset({"create", "update"})
DELETED_AT: Final = "deleted_at"
# Declared indexes (`indexed` fields, the entity's `indexes`): limits an admin cannot exceed.
MAX_INDEX_COLUMNS: Final = 8
MAX_INDEXES: Final = 32
# PostgreSQL's limit on the columns of a table (MaxHeapAttributeNumber).
MAX_COLUMNS: Final = 1600


class _NoDefault:
    """Marker for "this field has no default" (None is a legitimate default: SQL NULL)."""

    _instance: _NoDefault | None = None

    def __new__(cls) -> _NoDefault:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_DEFAULT"

    def __bool__(self) -> bool:
        return False


NO_DEFAULT: Final = _NoDefault()


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool = False
    unique: bool = False
    default: Any = NO_DEFAULT
    nullable: bool = False
    enum: tuple[str, ...] = ()
    precision: int = 0
    auto: str | None = None  # "create" | "update"
    indexed: bool = False  # a declared single-column index (`indexes` holds composite ones)

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT

    @property
    def is_required(self) -> bool:
        """Required on create (and NOT NULL in DDL): `required` unless `nullable`."""
        return self.required and not self.nullable

    @property
    def base_type(self) -> str:
        """The type with aliases folded (`integer` -> `int`)."""
        return "int" if self.type == "integer" else self.type

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.required:
            out["required"] = True
        if self.unique:
            out["unique"] = True
        if self.has_default:
            out["default"] = self.default
        if self.nullable:
            out["nullable"] = True
        if self.enum:
            out["enum"] = list(self.enum)
        if self.precision:
            out["precision"] = self.precision
        if self.auto:
            out["auto"] = self.auto
        if self.indexed:
            out["indexed"] = True
        return out


@dataclass(frozen=True)
class PrimaryKey:
    field: str
    type: str = "uuid"
    generated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "type": self.type, "generated": self.generated}


@dataclass(frozen=True)
class IndexColumn:
    """One column of a declared index; `-price` in metadata is `IndexColumn("price", True)`."""

    field: str
    descending: bool = False

    def to_json(self) -> str:
        return f"-{self.field}" if self.descending else self.field


@dataclass(frozen=True)
class IndexSpec:
    """A declared index: `{"fields": ["category", "-price"], "unique": false}` (a field's
    `indexed: true` is the one-column ascending case)."""

    columns: tuple[IndexColumn, ...]
    unique: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"fields": [c.to_json() for c in self.columns], "unique": self.unique}


@dataclass(frozen=True)
class SlugConfig:
    field: str
    source: str | None = None
    regenerate_on_update: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field}
        if self.source:
            out["source"] = self.source
        if self.regenerate_on_update:
            out["regenerate_on_update"] = True
        return out


@dataclass(frozen=True)
class Entity:
    name: str
    table: str
    primary_key: PrimaryKey
    fields: tuple[Field, ...]
    soft_delete: bool = False
    slug: SlugConfig | None = None
    indexes: tuple[IndexSpec, ...] = ()
    list_total: bool = True  # lists count their matches unless asked `?total=false`
    # Derived, filled in __post_init__ (not part of equality or the constructor).
    field_map: dict[str, Field] = field(init=False, repr=False, compare=False)
    writable_on_create: tuple[str, ...] = field(init=False, repr=False, compare=False)
    writable_on_update: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {f.name: f for f in self.fields}
        pk = self.primary_key
        create = tuple(
            f.name for f in self.fields if not f.auto and not (f.name == pk.field and pk.generated)
        )
        update = tuple(
            f.name
            for f in self.fields
            if not f.auto and f.name != pk.field and f.name != DELETED_AT
        )
        object.__setattr__(self, "field_map", by_name)
        object.__setattr__(self, "writable_on_create", create)
        object.__setattr__(self, "writable_on_update", update)

    @property
    def pk(self) -> Field:
        return self.field_map[self.primary_key.field]

    @property
    def hidden_deleted_at(self) -> bool:
        """Soft-delete entity without a declared `deleted_at`: the engine manages the column and
        returns it in records (always null on live rows)."""
        return self.soft_delete and DELETED_AT not in self.field_map

    @property
    def declared_indexes(self) -> tuple[IndexSpec, ...]:
        """Every index the metadata asks for: the `indexed` fields' (in field order), then the
        entity's `indexes`."""
        single = tuple(IndexSpec((IndexColumn(f.name),)) for f in self.fields if f.indexed)
        return single + self.indexes

    @property
    def output_columns(self) -> tuple[str, ...]:
        """Record keys, in order: declared fields, then the hidden `deleted_at` if any."""
        names = tuple(f.name for f in self.fields)
        return (*names, DELETED_AT) if self.hidden_deleted_at else names

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "table": self.table,
            "primary_key": self.primary_key.to_json(),
            "soft_delete": self.soft_delete,
        }
        if self.slug is not None:
            out["slug"] = self.slug.to_json()
        out["fields"] = [f.to_json() for f in self.fields]
        if self.indexes:
            out["indexes"] = [i.to_json() for i in self.indexes]
        if not self.list_total:
            out["list_total"] = False
        return out


@dataclass(frozen=True)
class Relation:
    name: str
    type: str  # one_to_one | one_to_many | many_to_many
    source: str
    target: str
    source_key: str = "id"
    target_key: str | None = None
    join_table: str | None = None
    source_join_key: str | None = None
    target_join_key: str | None = None
    ownership: str = "source"
    on_delete: str = "detach"
    fetch: str = "lazy"
    write_mode: str = "diff"

    @property
    def many_to_many(self) -> bool:
        return self.type == "many_to_many"

    @property
    def one_to_one(self) -> bool:
        return self.type == "one_to_one"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "source": self.source,
            "target": self.target,
            "source_key": self.source_key,
        }
        for key in ("target_key", "join_table", "source_join_key", "target_join_key"):
            value = getattr(self, key)
            if value:
                out[key] = value
        out["ownership"] = self.ownership
        out["on_delete"] = self.on_delete
        if self.fetch != "lazy":
            out["fetch"] = self.fetch
        if self.write_mode != "diff":
            out["write_mode"] = self.write_mode
        return out


@dataclass(frozen=True)
class RelationRef:
    """A relation as seen from one entity: `forward` when that entity is the relation's source."""

    relation: Relation
    forward: bool

    @property
    def other(self) -> str:
        return self.relation.target if self.forward else self.relation.source
