"""The read path: list query parsing, paged lists, single-record lookup, includes, encoding.

Parsing (`parse_list_query`, `parse_includes`) is pure and checks every name against metadata
before any SQL exists, so a hostile `filter[...]` key or include can only ever be an unknown
name. Execution (`list_records`, `fetch_record`, `get_record`, `attach_includes`) runs
statements built by `sql_compose` and cached per entity and query shape, so the same kind of
request always sends the same text and psycopg can prepare it.

Decisions beyond the spec:

- repeated query keys: the last value wins (`?sort=a&sort=b` sorts by b);
- `filter[f.in]=` (empty value) is an empty list: `in` matches nothing, `not_in` everything;
  at most `MAX_LIST_VALUES` items, else 400;
- unknown operators are 400 INVALID_PAYLOAD (C27); `ilike` is an additive operator; `like` and
  `ilike` only apply to string/text fields; json/file fields cannot be filtered (400);
- `contains`, `starts_with` and `ends_with` (advertised by existing Rocket client tools) are
  case-insensitive substring matches: the value is taken literally (`%`, `_` and backslash escaped)
  and run as `ILIKE`; string/text fields only;
- `page` is capped so that the offset never exceeds `MAX_OFFSET` (the effective page is echoed
  in `meta.page`, like `per_page`); invalid values are ignored, as the spec says;
- the order always ends with the primary key, so pages are stable (C26);
- includes: unknown names are 400 on both routes with `strict=True` (C25); `fetch: "eager"`
  relations (forward) are added by `parse_includes` under the relation name; each include is one
  statement with `= ANY(%s)`; at most `INCLUDE_LIMIT_PER_PARENT` rows per parent and include
  (lowest PKs first), P2.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import psycopg
from psycopg import sql
from psycopg.types.numeric import Int8

from rocketd.db.cursors import fetch_rows
from rocketd.engine.read import wire_sql
from rocketd.engine.sql import compose as sc
from rocketd.engine.sql.compose import IncludeWhere
from rocketd.errors import ErrorDetail, InvalidPayload, NotFound, UnknownField
from rocketd.metadata.field_types import (
    TEXT_TYPES,
    ValueProblem,
    coerce_filter_value,
    encoder_for,
    looks_like_pk,
    parse_pk,
)
from rocketd.metadata.model import Entity, Field, Relation, RelationRef

DEFAULT_PER_PAGE: Final = 25
MAX_PER_PAGE: Final = 100
MAX_OFFSET: Final = 1_000_000
MAX_LIST_VALUES: Final = 1000
INCLUDE_LIMIT_PER_PARENT: Final = 1000
FILTER_OPERATORS: Final = (
    "eq",
    "neq",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "like",
    "ilike",
    "contains",
    "starts_with",
    "ends_with",
)
# substring operators: (what goes before, what goes after) the escaped value in an ILIKE pattern
_SUBSTRING_OPERATORS: Final[Mapping[str, tuple[str, str]]] = {
    "contains": ("%", "%"),
    "starts_with": ("", "%"),
    "ends_with": ("%", ""),
}
_LIST_OPERATORS: Final = frozenset({"in", "not_in"})
_PATTERN_OPERATORS: Final = frozenset({"like", "ilike", *_SUBSTRING_OPERATORS})
_FILTER_PREFIX: Final = "filter["


class RegistryView(Protocol):
    """What the read path needs of `rocketd.metadata.registry.Registry`."""

    def entity(self, name: str) -> Entity | None: ...

    def resolve(self, entity: str, name: str) -> RelationRef | None: ...

    def relations_from(self, entity: str) -> Sequence[Relation]: ...


@dataclass(frozen=True)
class Filter:
    """`field op value`; for `in` / `not_in` the value is a tuple of coerced items."""

    field: Field
    op: str
    value: Any


@dataclass(frozen=True)
class SortKey:
    field: str
    descending: bool = False


@dataclass(frozen=True)
class IncludeSpec:
    """An include as requested: attached under `name`; rows of `target` (= `ref.other`)."""

    name: str
    ref: RelationRef
    target: Entity


@dataclass(frozen=True)
class ListQuery:
    filters: tuple[Filter, ...] = ()
    sort: tuple[SortKey, ...] = ()  # the effective order, primary key last
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE
    includes: tuple[IncludeSpec, ...] = ()
    count_total: bool = True  # `?total=`, else the entity's `list_total`
    after: str | None = None  # `?after=<cursor>`: keyset paging (read.cursor), page ignored

    @property
    def offset(self) -> int:
        return 0 if self.after is not None else (self.page - 1) * self.per_page

    @property
    def order(self) -> tuple[tuple[str, bool], ...]:
        return tuple((k.field, k.descending) for k in self.sort)


# --- parsing --------------------------------------------------------------------------------------


def parse_list_query(
    registry: RegistryView,
    entity: Entity,
    params: Mapping[str, str],
    *,
    max_per_page: int = MAX_PER_PAGE,
    default_per_page: int = DEFAULT_PER_PAGE,
) -> ListQuery:
    """The list route's query string (a dict or aiohttp's MultiDict) as a validated ListQuery.

    Raises UnknownField (filter/sort/include names) or InvalidPayload (operators, values)."""
    last = dict(params.items())  # a MultiDict yields every pair: the last one wins
    page, per_page = parse_paging(
        last.get("page"),
        last.get("per_page"),
        max_per_page=max_per_page,
        default_per_page=default_per_page,
    )
    after = last.get("after")
    return ListQuery(
        filters=parse_filters(entity, last),
        sort=parse_sort(entity, last.get("sort")),
        page=page,
        per_page=per_page,
        includes=parse_includes(registry, entity, last.get("include"), strict=True),
        # A cursor page counts only when asked: a COUNT(*) would cost what the cursor saves.
        count_total=parse_total(last.get("total"), entity.list_total and after is None),
        after=after,
    )


def parse_total(raw: str | None, default: bool) -> bool:
    """`?total=true|false` (absent: the entity's `list_total`)."""
    if raw is None:
        return default
    if raw in ("true", "false"):
        return raw == "true"
    message = f"Invalid total: {_short(raw)} (use total=true or total=false)"
    raise InvalidPayload(message, [ErrorDetail(message, field="total", rule="enum")])


PARSED_PER_ENTITY: Final = 256
_ParsedShapes = OrderedDict[Hashable, tuple[RegistryView, "ListQuery"]]


def _no_shapes(entity: Entity) -> _ParsedShapes:
    return OrderedDict()


# Per Entity object: parsed list queries by their raw parameters (the same list URL is asked for
# again and again); each entry remembers the registry it was resolved against.
_PARSED: Final[sc.IdentityCache[Entity, _ParsedShapes]] = sc.IdentityCache(_no_shapes)


def parse_list_query_cached(
    registry: RegistryView,
    entity: Entity,
    params: Mapping[str, str],
    *,
    max_per_page: int = MAX_PER_PAGE,
    default_per_page: int = DEFAULT_PER_PAGE,
) -> ListQuery:
    """`parse_list_query`, remembered per entity for the last PARSED_PER_ENTITY parameter sets
    (a ListQuery is immutable). Errors are not remembered: a bad query is parsed, and refused,
    every time."""
    key = (tuple(params.items()), max_per_page, default_per_page)
    shapes = _PARSED.get(entity)
    hit = shapes.get(key)
    if hit is not None and hit[0] is registry:
        shapes.move_to_end(key)
        return hit[1]
    spec = parse_list_query(
        registry, entity, params, max_per_page=max_per_page, default_per_page=default_per_page
    )
    shapes[key] = (registry, spec)
    if len(shapes) > PARSED_PER_ENTITY:
        shapes.popitem(last=False)
    return spec


def _positive_int(raw: str | None) -> int | None:
    if raw is None or not raw.isascii() or not raw.isdigit():
        return None
    if len(raw) > 15:
        return 10**15  # absurdly large but valid: callers cap it
    number = int(raw)
    return number if number >= 1 else None


def parse_paging(
    raw_page: str | None,
    raw_per_page: str | None,
    *,
    max_per_page: int = MAX_PER_PAGE,
    default_per_page: int = DEFAULT_PER_PAGE,
) -> tuple[int, int]:
    """(page, per_page): invalid or < 1 -> defaults; per_page <= max_per_page; page capped so
    the offset stays <= MAX_OFFSET."""
    max_per_page = max(1, max_per_page)
    per_page = min(_positive_int(raw_per_page) or default_per_page, max_per_page)
    per_page = max(1, per_page)
    page = min(_positive_int(raw_page) or 1, MAX_OFFSET // per_page + 1)
    return page, per_page


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _bad_value(field: Field, message_tail: str, rule: str = "type") -> InvalidPayload:
    message = f"Invalid filter value for {field.name}: {message_tail}"
    return InvalidPayload(message, [ErrorDetail(message, field=field.name, rule=rule)])


def _coerce(field: Field, raw: str) -> Any:
    try:
        return coerce_filter_value(field, raw)
    except ValueProblem as problem:
        raise _bad_value(field, f"{_short(raw)!r} {problem.expectation}", problem.rule) from None


def escape_like(text: str) -> str:
    """`text` as a literal inside a LIKE pattern (PostgreSQL's default escape character is the
    backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def parse_filter(entity: Entity, key_inside: str, raw: str) -> Filter:
    """One `filter[<key_inside>]=<raw>` parameter."""
    name, dot, op = key_inside.partition(".")
    field = entity.field_map.get(name)
    if field is None:
        raise UnknownField(f"Unknown filter field: {name}")
    if not dot:
        op = "eq"
    if op not in FILTER_OPERATORS:
        raise InvalidPayload(
            f"Unknown filter operator: {_short(op)} (use one of {', '.join(FILTER_OPERATORS)})"
        )
    if op in _PATTERN_OPERATORS and field.base_type not in TEXT_TYPES:
        raise _bad_value(field, f"{op} applies only to string and text fields")
    if op in _LIST_OPERATORS:
        items = raw.split(",") if raw.strip() else []
        if len(items) > MAX_LIST_VALUES:
            raise _bad_value(field, f"at most {MAX_LIST_VALUES} values", "range")
        return Filter(field, op, tuple(_coerce(field, item.strip()) for item in items))
    substring = _SUBSTRING_OPERATORS.get(op)
    if substring is not None:
        before, after = substring
        return Filter(field, "ilike", before + escape_like(str(_coerce(field, raw))) + after)
    return Filter(field, op, _coerce(field, raw))


def parse_filters(entity: Entity, params: Mapping[str, str]) -> tuple[Filter, ...]:
    """Every `filter[...]` key, in a canonical order (field, operator) so that the statement
    text of a query shape does not depend on parameter order."""
    filters: list[Filter] = []
    for key, raw in params.items():
        if not key.startswith(_FILTER_PREFIX):
            continue
        if not key.endswith("]"):
            raise InvalidPayload(f"Malformed filter parameter: {_short(key)} (use filter[field])")
        filters.append(parse_filter(entity, key[len(_FILTER_PREFIX) : -1], raw))
    filters.sort(key=lambda f: (f.field.name, f.op))
    return tuple(filters)


def parse_sort(entity: Entity, raw: str | None) -> tuple[SortKey, ...]:
    """`-created_at,title` -> keys, duplicates dropped, the primary key appended as tie-breaker."""
    keys: list[SortKey] = []
    seen: set[str] = set()
    for item in (raw or "").split(","):
        item = item.strip()
        if not item:
            continue
        descending = item.startswith("-")
        name = item[1:] if descending else item
        if name not in entity.field_map:
            raise UnknownField(f"Unknown sort field: {name}")
        if name not in seen:
            seen.add(name)
            keys.append(SortKey(name, descending))
    pk = entity.primary_key.field
    if pk not in seen:
        keys.append(SortKey(pk))
    return tuple(keys)


def _include_spec(
    registry: RegistryView, entity: Entity, name: str, ref: RelationRef
) -> IncludeSpec | None:
    """The include, or None when its relation cannot be loaded (entity or key columns missing)."""
    relation = ref.relation
    target = registry.entity(ref.other)
    if target is None:
        return None
    if relation.many_to_many:
        # Both directions go through the join table (reverse: with its keys swapped).
        complete = bool(
            relation.join_table and relation.source_join_key and relation.target_join_key
        )
    elif ref.forward:
        complete = bool(relation.target_key) and relation.target_key in target.field_map
    else:
        complete = (
            relation.source_key in target.field_map
            and bool(relation.target_key)
            and relation.target_key in entity.field_map
        )
    return IncludeSpec(name, ref, target) if complete else None


def parse_includes(
    registry: RegistryView, entity: Entity, raw: str | None, *, strict: bool = True
) -> tuple[IncludeSpec, ...]:
    """`include=a,b` resolved per metadata.md, plus the entity's eager relations.

    Unknown names raise UnknownField `Unknown include: {n}` when `strict` (both routes, C25),
    else they are skipped."""
    specs: list[IncludeSpec] = []
    seen: set[str] = set()
    for item in (raw or "").split(","):
        name = item.strip()
        if not name or name in seen:
            continue
        seen.add(name)
        ref = registry.resolve(entity.name, name)
        spec = None if ref is None else _include_spec(registry, entity, name, ref)
        if spec is None:
            if strict:
                raise UnknownField(f"Unknown include: {_short(name)}")
            continue
        specs.append(spec)
    for relation in registry.relations_from(entity.name):
        if relation.fetch == "eager" and relation.name not in seen:
            spec = _include_spec(registry, entity, relation.name, RelationRef(relation, True))
            if spec is not None:
                seen.add(relation.name)
                specs.append(spec)
    return tuple(specs)


# --- encoding ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Reader:
    """Per-entity read plan: SQL fragments plus the encoders of the record columns."""

    sql: sc.EntitySql
    names: tuple[str, ...]  # output columns = record keys
    encoders: tuple[tuple[str, Callable[[Any], Any]], ...]  # only columns that need one
    declared_names: tuple[str, ...]
    declared_encoders: tuple[tuple[str, Callable[[Any], Any]], ...]
    index: Mapping[str, int]  # output column -> position in a selected row


def _build_reader(entity: Entity) -> _Reader:
    types = {f.name: f.base_type for f in entity.fields}
    es = sc.entity_sql(entity)

    def encoders(names: Sequence[str]) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
        out = []
        for name in names:
            encode = encoder_for(types.get(name, "timestamp"))  # hidden deleted_at: timestamp
            if encode is not None:
                out.append((name, encode))
        return tuple(out)

    return _Reader(
        sql=es,
        names=es.output_columns,
        encoders=encoders(es.output_columns),
        declared_names=es.declared_columns,
        declared_encoders=encoders(es.declared_columns),
        index={name: i for i, name in enumerate(es.output_columns)},
    )


_READERS: Final = sc.IdentityCache(_build_reader)


def _reader(entity: Entity) -> _Reader:
    return _READERS.get(entity)


def _encode_rows(
    names: tuple[str, ...],
    encoders: tuple[tuple[str, Callable[[Any], Any]], ...],
    rows: Sequence[Sequence[Any]],
) -> list[dict[str, Any]]:
    records = []
    for row in rows:
        record = dict(zip(names, row, strict=False))  # extra trailing columns are not fields
        for name, encode in encoders:
            value = record[name]
            if value is not None:
                record[name] = encode(value)
        records.append(record)
    return records


def encode_record(entity: Entity, row: Mapping[str, Any]) -> dict[str, Any]:
    """A DB row (column -> value) as a record: the entity's record keys in order, encoded."""
    reader = _reader(entity)
    return _encode_rows(reader.names, reader.encoders, [[row.get(n) for n in reader.names]])[0]


# --- execution -----------------------------------------------------------------------------------

Connection = psycopg.AsyncConnection[Any]


def _filter_params(filters: Sequence[Filter]) -> tuple[list[Any], tuple[tuple[str, str], ...]]:
    """(parameters, shape) of the filters; the shape alone determines the SQL text."""
    params: list[Any] = []
    shape: list[tuple[str, str]] = []
    for f in filters:
        op = f.op
        if op in _LIST_OPERATORS:
            if not f.value:
                shape.append((f.field.name, f"{op}:empty"))
                continue
            params.append(list(f.value))
        else:
            params.append(f.value)
        shape.append((f.field.name, op))
    return params, tuple(shape)


def _filter_conditions(shape: Sequence[tuple[str, str]]) -> list[sql.Composable]:
    conditions: list[sql.Composable] = []
    for name, op in shape:
        if op == "in:empty":
            # ANY of nothing is false and ALL of nothing is true: say so without sending an
            # untyped empty array.
            conditions.append(sql.SQL("FALSE"))
        elif op != "not_in:empty":
            conditions.append(sc.condition(name, op))
    return conditions


def filter_shape(filters: Sequence[Filter]) -> tuple[list[Any], tuple[tuple[str, str], ...]]:
    """(parameters, shape) of a list's filters: the shape (field, operator) decides the SQL."""
    return _filter_params(filters)


def rows_statement(
    entity: Entity, shape: Sequence[tuple[str, str]], order: Sequence[tuple[str, bool]]
) -> sql.Composed:
    """The statement an uncounted page of this shape runs (without permission row filters):
    parameters are the filter values, the limit, the offset. What index guidance EXPLAINs."""
    return sc.build_list_rows(entity, conditions=_filter_conditions(shape), order=order)


def _wrap_extra(extra_where: sql.Composable) -> tuple[list[sql.Composable], bytes | None]:
    return [sql.SQL("(") + extra_where + sql.SQL(")")], extra_where.as_bytes(None)


# Permission row filters reuse one Composable per filter shape: wrap and key each once.
_EXTRAS: Final = sc.IdentityCache(_wrap_extra, max_size=1024)


def _extra(
    conn: Connection, extra_where: sql.Composable | None
) -> tuple[list[sql.Composable], bytes | None]:
    """`extra_where` as a condition list and its text (part of the statement cache key)."""
    if extra_where is None:
        return [], None
    return _EXTRAS.get(extra_where)


async def _fetch_all(
    conn: Connection, statement: bytes, params: Sequence[Any]
) -> list[tuple[Any, ...]]:
    return await fetch_rows(conn, statement, params)


async def _page_rows(
    conn: Connection,
    entity: Entity,
    query: ListQuery,
    extra_where: sql.Composable | None,
    extra_params: Sequence[Any],
    indexed: Collection[str],
    wire: tuple[Hashable, sql.Composable] | None = None,
    keyset: Sequence[Any] | None = None,
) -> tuple[list[tuple[Any, ...]], int | None]:
    """(the page's rows, the total); `wire` = (cache key, `record_json`) asks for each
    record's JSON bytes instead of its columns.

    Counted offset pages are one `build_list_page` statement. Otherwise (`count_total` off, or
    `keyset`: the decoded `after` cursor) the page is fetched with one extra row, which tells
    the caller whether there is a next page (`has_more`), and the total, when still wanted, is a
    separate count (the keyset condition must not narrow it); None when not counted."""
    es = sc.entity_sql(entity)
    params, shape = _filter_params(query.filters)
    extra_conditions, extra_key = _extra(conn, extra_where)
    order = query.order
    wire_key = None if wire is None else wire[0]
    if keyset is None and query.count_total:
        scan_once = order[0][0] not in indexed
        statement = es.statements.render(
            ("list", shape, order, extra_key, scan_once, wire_key),
            conn,
            lambda: sc.build_list_page(
                entity,
                conditions=[*_filter_conditions(shape), *extra_conditions],
                order=order,
                scan_once=scan_once,
                record_json=None if wire is None else wire[1],
            ),
        )
        where_params = [*params, *extra_params]
        if not scan_once:
            where_params += where_params
        rows = await _fetch_all(
            conn, statement, [*where_params, Int8(query.per_page), Int8(query.offset)]
        )
        empty = (
            rows[0][0] is None
            if wire is not None
            else rows[0][_reader(entity).index[entity.primary_key.field]] is None
        )
        return ([] if empty else rows), int(rows[0][-1])
    nulls = None if keyset is None else tuple(v is None for v in keyset)
    seek: list[sql.Composable] = []
    seek_params: list[Any] = []
    if keyset is not None and nulls is not None:
        condition, slots = sc.keyset_condition(order, nulls, entity.primary_key.field)
        seek, seek_params = [condition], [keyset[i] for i in slots]
    statement = es.statements.render(
        ("rows", shape, order, extra_key, nulls, wire_key),
        conn,
        lambda: sc.build_list_rows(
            entity,
            conditions=[*_filter_conditions(shape), *extra_conditions, *seek],
            order=order,
            record_json=None if wire is None else wire[1],
        ),
    )
    rows = await _fetch_all(
        conn,
        statement,
        [*params, *extra_params, *seek_params, Int8(query.per_page + 1), Int8(query.offset)],
    )
    total = None
    if query.count_total:
        count = es.statements.render(
            ("count", shape, extra_key),
            conn,
            lambda: sc.build_count(entity, [*_filter_conditions(shape), *extra_conditions]),
        )
        total = int((await _fetch_all(conn, count, [*params, *extra_params]))[0][0])
    return rows, total


async def list_records(
    conn: Connection,
    registry: RegistryView,
    entity: Entity,
    query: ListQuery,
    *,
    extra_where: sql.Composable | None = None,
    extra_params: Sequence[Any] = (),
    include_where: IncludeWhere | None = None,
    indexed: Collection[str] = (),
    keyset: Sequence[Any] | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """(records of the page with includes attached, total matching rows), in one statement.
    Uncounted and keyset pages (`_page_rows`) hold one extra record when there is a next page,
    and their total is None unless `count_total`.

    `indexed` names the entity's columns that lead a btree index (the snapshot's sort indexes).
    When the first sort key is one of them, the page can come from the index and the statement
    counts and pages separately; otherwise every match has to be visited to sort anyway, and
    one scan both counts and pages (`sql_compose.build_list_page`). `extra_where` (with `%s`
    placeholders taking `extra_params`) is ANDed: the hook for permission row filters.
    """
    reader = _reader(entity)
    rows, total = await _page_rows(
        conn, entity, query, extra_where, extra_params, indexed, keyset=keyset
    )
    records = _encode_rows(reader.names, reader.encoders, rows)
    if query.includes and records:
        await _attach(
            conn,
            registry,
            entity,
            _tuple_keys(reader, rows),
            records,
            query.includes,
            include_where,
        )
    return records, total


WirePlan = tuple[Hashable, sql.Composable]
ColumnTypes = tuple[tuple[str, str], ...]


def _no_plans(entity: Entity) -> dict[ColumnTypes, WirePlan | None]:
    return {}


# Per Entity object: the wire plan for each set of column types seen (None: not covered).
_WIRE_PLANS: Final[sc.IdentityCache[Entity, dict[ColumnTypes, WirePlan | None]]] = sc.IdentityCache(
    _no_plans
)


def _wire_plan(entity: Entity, columns: ColumnTypes) -> WirePlan | None:
    plans = _WIRE_PLANS.get(entity)
    if columns not in plans:
        if len(plans) >= 8:
            plans.clear()
        record_json = wire_sql.record_json(entity, dict(columns), "_p")
        plans[columns] = None if record_json is None else (columns, record_json)
    return plans[columns]


async def list_records_json(
    conn: Connection,
    entity: Entity,
    query: ListQuery,
    column_types: tuple[tuple[str, str], ...],
    *,
    extra_where: sql.Composable | None = None,
    extra_params: Sequence[Any] = (),
    indexed: Collection[str] = (),
    keyset: Sequence[Any] | None = None,
) -> tuple[list[bytes], int | None] | None:
    """Like `list_records` for a query without includes, with PostgreSQL writing each record's
    wire JSON (`wire_sql`): (the records as JSON bytes, total). None when a column's database
    type (`column_types`, from the snapshot) is not covered: use `list_records` then."""
    if query.includes:
        raise ValueError("list_records_json does not attach includes")
    wire = _wire_plan(entity, column_types)
    if wire is None:
        return None
    rows, total = await _page_rows(
        conn, entity, query, extra_where, extra_params, indexed, wire, keyset
    )
    return [row[0] for row in rows], total


async def fetch_record(
    conn: Connection,
    registry: RegistryView,
    entity: Entity,
    raw_id: str,
    *,
    for_update: bool = False,
    extra_where: sql.Composable | None = None,
    extra_params: Sequence[Any] = (),
) -> dict[str, Any] | None:
    """The live row addressed by a path id (slug-or-PK, spec "Slugs/Lookup") as column -> DB
    value, or None. Never a database error for an id of the wrong shape."""
    pk_value = parse_pk(entity, raw_id)
    slug = entity.slug
    slug_field = entity.field_map.get(slug.field) if slug is not None else None
    use_slug = (
        slug_field is not None
        and slug_field.base_type in TEXT_TYPES
        and not looks_like_pk(entity, raw_id)
        and "\x00" not in raw_id
    )
    pk_name = entity.primary_key.field
    if use_slug and slug_field is not None:
        if pk_value is not None and slug_field.name != pk_name:
            columns: tuple[str, ...] = (slug_field.name, pk_name)
            lead: list[Any] = [raw_id, pk_value]
            trail: list[Any] = [raw_id]
        else:
            columns, lead, trail = (slug_field.name,), [raw_id], []
    elif pk_value is not None:
        columns, lead, trail = (pk_name,), [pk_value], []
    else:
        return None
    return await _lookup(
        conn, entity, columns, [*lead, *extra_params, *trail], for_update, extra_where
    )


async def fetch_record_by_pk(
    conn: Connection,
    entity: Entity,
    pk_value: Any,
    *,
    for_update: bool = False,
    extra_where: sql.Composable | None = None,
    extra_params: Sequence[Any] = (),
) -> dict[str, Any] | None:
    """The live row with this primary-key value (already a DB parameter), or None."""
    return await _lookup(
        conn,
        entity,
        (entity.primary_key.field,),
        [pk_value, *extra_params],
        for_update,
        extra_where,
    )


async def _lookup(
    conn: Connection,
    entity: Entity,
    columns: tuple[str, ...],
    params: list[Any],
    for_update: bool,
    extra_where: sql.Composable | None,
) -> dict[str, Any] | None:
    reader = _reader(entity)
    extra_conditions, extra_key = _extra(conn, extra_where)
    statement = reader.sql.statements.render(
        ("lookup", columns, for_update, extra_key),
        conn,
        lambda: sc.build_lookup(
            entity, columns, conditions=extra_conditions, for_update=for_update
        ),
    )
    rows = await _fetch_all(conn, statement, params)
    return dict(zip(reader.names, rows[0], strict=True)) if rows else None


async def get_record(
    conn: Connection,
    registry: RegistryView,
    entity: Entity,
    raw_id: str,
    includes: Sequence[IncludeSpec] = (),
    *,
    extra_where: sql.Composable | None = None,
    extra_params: Sequence[Any] = (),
    include_where: IncludeWhere | None = None,
) -> dict[str, Any]:
    """The encoded record addressed by a path id, with includes; 404 NOT_FOUND otherwise."""
    row = await fetch_record(
        conn, registry, entity, raw_id, extra_where=extra_where, extra_params=extra_params
    )
    if row is None:
        raise NotFound(f"{entity.name} with id {raw_id} not found")
    return await _record_with_includes(conn, registry, entity, row, includes, include_where)


async def get_record_by_pk(
    conn: Connection,
    registry: RegistryView,
    entity: Entity,
    pk_value: Any,
    includes: Sequence[IncludeSpec] = (),
) -> dict[str, Any]:
    """Like `get_record` with a primary-key value (e.g. the re-read after a write): no slug
    lookup, so a slug that happens to equal another row's key cannot be picked."""
    row = await fetch_record_by_pk(conn, entity, pk_value)
    if row is None:
        raise NotFound(f"{entity.name} with id {pk_value} not found")
    return await _record_with_includes(conn, registry, entity, row, includes)


async def _record_with_includes(
    conn: Connection,
    registry: RegistryView,
    entity: Entity,
    row: Mapping[str, Any],
    includes: Sequence[IncludeSpec],
    include_where: IncludeWhere | None = None,
) -> dict[str, Any]:
    record = encode_record(entity, row)
    if includes:
        await attach_includes(conn, registry, entity, [row], [record], includes, include_where)
    return record


# --- includes ------------------------------------------------------------------------------------

KeysOf = Callable[[str], list[Any]]


def _tuple_keys(reader: _Reader, rows: Sequence[Sequence[Any]]) -> KeysOf:
    def keys_of(column: str) -> list[Any]:
        i = reader.index[column]
        return [row[i] for row in rows]

    return keys_of


async def attach_includes(
    conn: Connection,
    registry: RegistryView,
    entity: Entity,
    rows: Sequence[Mapping[str, Any]],
    records: list[dict[str, Any]],
    includes: Sequence[IncludeSpec],
    include_where: IncludeWhere | None = None,
) -> None:
    """Attach every include to `records` (encoded, in place); `rows` are the same records as
    DB rows (the keys are matched on DB values, before encoding). `include_where` adds a
    condition per included entity (permission row filters)."""
    if not includes or not records:
        return

    def keys_of(column: str) -> list[Any]:
        return [row.get(column) for row in rows]

    await _attach(conn, registry, entity, keys_of, records, includes, include_where)


def _include_key(spec: IncludeSpec) -> Hashable:
    return (spec.ref.relation, spec.ref.forward, id(spec.target))


async def _attach(
    conn: Connection,
    registry: RegistryView,
    entity: Entity,
    keys_of: KeysOf,
    records: list[dict[str, Any]],
    includes: Sequence[IncludeSpec],
    include_where: IncludeWhere | None = None,
) -> None:
    # Two names for the same relation (an alias and an eager include) share one statement.
    loaded: dict[Hashable, tuple[list[Any], dict[Any, list[dict[str, Any]]]]] = {}
    for spec in includes:
        key = _include_key(spec)
        if key not in loaded:
            loaded[key] = await _load_include(conn, entity, spec, keys_of, include_where)
        parent_keys, children = loaded[key]
        relation = spec.ref.relation
        many = relation.many_to_many or (spec.ref.forward and not relation.one_to_one)
        for record, parent_key in zip(records, parent_keys, strict=True):
            found = children.get(parent_key) if parent_key is not None else None
            if many:
                record[spec.name] = list(found) if found else []
            else:
                record[spec.name] = found[0] if found else None


async def _load_include(
    conn: Connection,
    entity: Entity,
    spec: IncludeSpec,
    keys_of: KeysOf,
    include_where: IncludeWhere | None = None,
) -> tuple[list[Any], dict[Any, list[dict[str, Any]]]]:
    """(the parent-side key of every record, children grouped by that key)."""
    relation = spec.ref.relation
    target = spec.target
    reader = _reader(target)
    es = reader.sql
    through = relation.many_to_many
    extra = include_where(target, "_t" if through else None) if include_where else None
    extra_where, extra_params = extra if extra is not None else (None, ())
    extra_conditions, extra_key = _extra(conn, extra_where)
    if spec.ref.forward or relation.many_to_many:
        # Forward includes match the parent's primary key (spec), not `source_key`; so do
        # reverse many-to-many ones, through the join table read from the other side.
        parent_keys = keys_of(entity.primary_key.field)
        per_parent = 1 if relation.one_to_one else INCLUDE_LIMIT_PER_PARENT
        if relation.many_to_many:
            join_table = relation.join_table or ""
            near, far = relation.source_join_key or "", relation.target_join_key or ""
            source_join_key, target_join_key = (near, far) if spec.ref.forward else (far, near)
            statement = es.statements.render(
                ("through", join_table, source_join_key, target_join_key, extra_key),
                conn,
                lambda: sc.build_select_through_join(
                    target,
                    join_table=join_table,
                    source_join_key=source_join_key,
                    target_join_key=target_join_key,
                    columns=reader.declared_names,
                    conditions=extra_conditions,
                ),
            )
        else:
            statement = _by_keys_statement(
                conn, target, relation.target_key or "", extra_conditions, extra_key
            )
    else:
        # Reverse: this entity is the target; its `target_key` points at the source's
        # `source_key`.
        parent_keys = keys_of(relation.target_key or "")
        per_parent = 1
        statement = _by_keys_statement(
            conn, target, relation.source_key, extra_conditions, extra_key
        )
    wanted = list(dict.fromkeys(k for k in parent_keys if k is not None))
    children: dict[Any, list[dict[str, Any]]] = {}
    if not wanted:
        return parent_keys, children
    rows = await _fetch_all(conn, statement, [wanted, *extra_params, Int8(per_parent)])
    records = _encode_rows(reader.declared_names, reader.declared_encoders, rows)
    for row, record in zip(rows, records, strict=True):
        children.setdefault(row[-1], []).append(record)
    return parent_keys, children


def _by_keys_statement(
    conn: Connection,
    target: Entity,
    key_column: str,
    conditions: Sequence[sql.Composable] = (),
    extra_key: bytes | None = None,
) -> bytes:
    reader = _reader(target)
    return reader.sql.statements.render(
        ("by_keys", key_column, extra_key),
        conn,
        lambda: sc.build_select_by_keys(
            target, key_column, columns=reader.declared_names, conditions=conditions
        ),
    )
