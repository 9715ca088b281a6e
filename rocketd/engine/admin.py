"""The generic admin runner: one `MetadataKind` declaration gives a table its admin CRUD and its
export/import behaviour.

A kind declares its table (name, columns, how a row is addressed, which of the five operations it
has) and how to read a body (`parse`), check it against the app's metadata (`problems_in`), write
it and render it. The runner supplies what every admin change shares, so no kind writes it again:

- every change runs in one transaction under the app's metadata advisory lock (`lock_metadata`),
  so concurrent admin edits from this or another instance are serialised;
- it is validated against the entities and relations *as stored now* (read inside the lock), not
  against a possibly stale snapshot, and against the other rows of its table (`check_unique`);
- a PUT merges the body over the stored row, so keys it omits keep their stored values
  (upstream-gaps C28), unless the kind says its PUT replaces (`put_merges = False`);
- the change's notices (`MetadataChanged` by default, so every instance reloads its snapshot) are
  sent in the same transaction: other instances hear of it only if it commits;
- a path id that is not a UUID names no row (404, never a database error), and 404 messages quote
  at most 100 characters of it.

What a change answers is a `Saved`: the JSON of the row, the notices it sent (the HTTP layer
applies them to this instance before answering, so the admin reads its own write) and any `meta`
(migration notes, warnings). Kinds that need more (a password hashed outside the transaction,
tokens revoked with a user, a migration run with an entity) override the hooks named below; the
order of the steps stays the runner's.

Nothing here knows HTTP or a capability: routes come from `rocketd.http.crud`, and the list of
kinds from the caller.
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Generic, Literal, TypeVar

from psycopg import AsyncConnection, sql
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from rocketd.auth.principal import Principal
from rocketd.config import Settings
from rocketd.db.notify import MetadataChanged, Notice, send
from rocketd.errors import ApiError, ApiWarning, ErrorDetail, NotFound
from rocketd.metadata.parse import MetadataError
from rocketd.metadata.registry import Registry
from rocketd.timestamps import iso_utc

Row = dict[str, Any]
Operation = Literal["list", "get", "create", "update", "delete"]
ALL_OPERATIONS: Final[frozenset[Operation]] = frozenset(
    {"list", "get", "create", "update", "delete"}
)
# The keys a GET returns that a body may echo back unchanged (ignored: the URL names the row).
ROW_KEYS: Final = frozenset({"id", "created_at", "updated_at"})
SHOWN_ID_LIMIT: Final = 100  # characters of a bad path id quoted in a 404
_MAX_ID_LENGTH: Final = 64  # longer than any spelling of a UUID
_LOCK_KEY: Final = "rocketd:metadata"

T = TypeVar("T")


async def lock_metadata(conn: AsyncConnection[Any]) -> None:
    """Take the app's metadata lock for the rest of the caller's transaction."""
    await conn.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", (_LOCK_KEY,))


def row_uuid(raw: str) -> uuid.UUID | None:
    """The UUID a path id spells, or None when it cannot name a row."""
    if len(raw) > _MAX_ID_LENGTH:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def shown(raw: str) -> str:
    """`raw` as a message may quote it: at most `SHOWN_ID_LIMIT` characters."""
    return raw if len(raw) <= SHOWN_ID_LIMIT else raw[:SHOWN_ID_LIMIT] + "..."


def not_found(label: str, raw: str) -> NotFound:
    """`404 {label} not found: {raw}` (the id shortened when it is long)."""
    return NotFound(f"{label} not found: {shown(raw)}")


def problems_error(problems: Sequence[str | ErrorDetail]) -> MetadataError | None:
    """The 422 for `problems` (None when there are none)."""
    return MetadataError(problems) if problems else None


@dataclass(frozen=True)
class AdminCall:
    """Who asks for a change, and the process settings some kinds read (password policy, the
    webhook environment prefix). The principal is absent for changes made outside a request
    (the CLI's import)."""

    app_name: str
    settings: Settings
    principal: Principal | None = None


@dataclass
class Change:
    """One admin change in progress, inside its transaction: what the hooks of a kind receive.

    `stored` is the row being updated or deleted (locked); `prepared` is what the kind's
    `prepare` computed before the transaction began. Hooks may add `migration` notes and
    `warnings`; they end up in the answer's `meta`.
    """

    conn: AsyncConnection[Any]
    call: AdminCall
    body: Mapping[str, Any] | None = None
    key: Any = None
    stored: Row | None = None
    prepared: Any = None
    migration: list[str] = field(default_factory=list)
    warnings: list[ApiWarning] = field(default_factory=list)
    planned_registry: Registry | None = None

    async def registry(self) -> Registry:
        """The entities and relations as stored now (read once, inside the lock); an import sets
        `planned_registry` to the metadata as it will be after the document."""
        if self.planned_registry is None:
            self.planned_registry = await load_registry(self.conn)
        return self.planned_registry


async def load_registry(conn: AsyncConnection[Any]) -> Registry:
    """Build a Registry from the metadata rows (invalid rows are skipped and listed)."""
    cur = await conn.execute("select name, definition from _entities order by name")
    entity_rows = await cur.fetchall()
    cur = await conn.execute("select name, definition from _relations order by name")
    relation_rows = await cur.fetchall()
    return Registry.build(
        [(r[0], r[1]) for r in entity_rows], [(r[0], r[1]) for r in relation_rows]
    )


@dataclass(frozen=True)
class Saved:
    """What a change answers: `data` (the JSON shown to the caller), the notices it sent (for this
    instance to apply before answering), `meta` (e.g. `migration`) and `warnings` (rendered as
    `meta.warnings` by the HTTP layer); both are empty for most changes."""

    data: Any
    notices: tuple[Notice, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[ApiWarning, ...] = ()


@dataclass(frozen=True)
class Screened:
    """The outcome of looking at a raw import item before parsing it: a `problem` (the document
    is rejected), a `skip` (listed under `skipped`) or an `ignore` (listed under `ignored`)."""

    outcome: Literal["problem", "skip", "ignore"]
    text: str


class MetadataKind(Generic[T]):
    """One admin-managed metadata table. Subclass it, set the declaration attributes, implement
    `parse`, and override the hooks whose defaults do not fit; instantiate it once.

    `T` is the parsed item (a frozen dataclass such as `Rule`). The defaults suit a table with a
    UUID `id`, the kind's `columns`, and `created_at` / `updated_at`.
    """

    # --- declaration ------------------------------------------------------------------------
    name: ClassVar[str]  # the export document's key and the import report's: "state_machines"
    path: ClassVar[str]  # the URL segment under /_admin/: "state-machines"
    table: ClassVar[str]  # "_state_machines"
    label: ClassVar[str]  # a row, in messages: "State machine"
    columns: ClassVar[tuple[str, ...]]  # what a body sets, in the order `values` gives them
    list_order: ClassVar[tuple[str | sql.Composable, ...]]  # names are quoted as identifiers
    key_column: ClassVar[str] = "id"  # "id": UUID path ids; anything else: used verbatim
    select_columns: ClassVar[tuple[str, ...] | None] = None  # None: every column
    operations: ClassVar[frozenset[Operation]] = ALL_OPERATIONS
    put_merges: ClassVar[bool] = True  # PUT: body over the stored row (False: body replaces)
    read_only_keys: ClassVar[frozenset[str]] = ROW_KEYS  # dropped from a merged PUT body
    in_snapshot: ClassVar[bool] = True  # changes send MetadataChanged (every instance reloads)
    needs_registry: ClassVar[bool] = True  # `problems_in` reads the stored entities/relations
    exported: ClassVar[bool] = True  # part of the export/import document
    export_columns: ClassVar[tuple[str, ...] | None] = None  # None: `columns`
    export_order: ClassVar[tuple[str | sql.Composable, ...] | None] = None  # None: list_order
    import_key_columns: ClassVar[tuple[str, ...]] = ()  # natural key; () = no idempotency skip

    # --- parsing and validation (pure) ------------------------------------------------------

    def parse(self, body: object, call: AdminCall) -> T:
        """A create body (or a merged PUT body) as an item; raises the 400/422 for bad input."""
        raise NotImplementedError

    def check_body(self, body: Mapping[str, Any], raw_key: str, call: AdminCall) -> None:
        """Checks of a PUT body made before its row is looked up, for kinds whose bad bodies are
        refused (400/422) before an unknown id is (404). Default: none."""

    def merged_body(self, body: Mapping[str, Any], stored: Row) -> dict[str, Any]:
        """The body a PUT parses: over the stored `columns` (C28), or alone (`put_merges`)."""
        if not self.put_merges:
            return dict(body)
        merged = {column: stored[column] for column in self.columns}
        merged.update({k: v for k, v in body.items() if k not in self.read_only_keys})
        return merged

    def parse_update(self, body: Mapping[str, Any], stored: Row, call: AdminCall) -> T:
        return self.parse(self.merged_body(body, stored), call)

    def problems_in(
        self, registry: Registry, item: T, stored: Row | None
    ) -> Sequence[str | ErrorDetail]:
        """What is wrong with `item` among the app's entities and relations (`stored`: the row a
        PUT replaces). Default: nothing."""
        return ()

    def values(self, item: T) -> tuple[Any, ...]:
        """The item's values for `columns`."""
        raise NotImplementedError

    def conflict(self, item: T) -> ApiError | None:
        """The 409 for a unique constraint the write ran into (None: let it through)."""
        return None

    def path_key(self, raw: str) -> Any:
        """The key a path segment names, or None when it can name no row."""
        return row_uuid(raw) if self.key_column == "id" else raw

    def not_found(self, raw: str) -> NotFound:
        return not_found(self.label, raw)

    # --- rendering ---------------------------------------------------------------------------

    def row_json(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A stored row as the list and get routes show it."""
        return {
            "id": str(row["id"]),
            **{column: row[column] for column in self.columns},
            "created_at": iso_utc(row["created_at"]),
            "updated_at": iso_utc(row["updated_at"]),
        }

    def get_json(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The get route's answer (default: `row_json`)."""
        return self.row_json(row)

    def saved_json(self, item: T, row: Row) -> Any:
        """The answer of a create or update (default: the written row's `row_json`)."""
        return self.row_json(row)

    def deleted_json(self, key: Any) -> dict[str, Any]:
        return {self.key_column: str(key), "deleted": True}

    def notices(self, change: Change, operation: Operation) -> tuple[Notice, ...]:
        """What a committed change announces (sent in its transaction)."""
        return (MetadataChanged(change.call.app_name),) if self.in_snapshot else ()

    # --- database hooks ---------------------------------------------------------------------

    async def prepare(self, body: Mapping[str, Any], call: AdminCall) -> Any:
        """Work done before the transaction begins (e.g. a password hash: no lock is held while
        it runs); the result is `change.prepared`. Runs after the body has been validated."""
        return None

    async def validate(self, change: Change, item: T) -> None:
        """Inside the lock: `problems_in` against the stored metadata, then `check_unique`."""
        if self.needs_registry:
            registry = await change.registry()
            error = problems_error(self.problems_in(registry, item, change.stored))
            if error is not None:
                raise error
        await self.check_unique(change, item)

    async def check_unique(self, change: Change, item: T) -> None:
        """Refuse (409) an item that clashes with another row (`change.key`: the row a PUT
        replaces, None on create). Default: no check (constraints may still apply)."""

    async def insert(self, change: Change, item: T) -> Row:
        cur = change.conn.cursor(row_factory=dict_row)
        await cur.execute(
            sql.SQL("insert into {} ({}) values ({}) returning {}").format(
                sql.Identifier(self.table),
                sql.SQL(", ").join(sql.Identifier(c) for c in self.columns),
                sql.SQL(", ").join(sql.Placeholder() for _ in self.columns),
                self._selected(),
            ),
            self.values(item),
        )
        return _written(await cur.fetchone())

    async def update_row(self, change: Change, item: T) -> Row:
        cur = change.conn.cursor(row_factory=dict_row)
        await cur.execute(
            sql.SQL("update {} set {}, updated_at = now() where {} = %s returning {}").format(
                sql.Identifier(self.table),
                sql.SQL(", ").join(
                    sql.SQL("{} = %s").format(sql.Identifier(c)) for c in self.columns
                ),
                sql.Identifier(self.key_column),
                self._selected(),
            ),
            (*self.values(item), change.key),
        )
        return _written(await cur.fetchone())

    async def delete_row(self, change: Change) -> bool:
        """Delete the row named by `change.key`; False when there is none."""
        cur = await change.conn.execute(
            sql.SQL("delete from {} where {} = %s returning 1").format(
                sql.Identifier(self.table), sql.Identifier(self.key_column)
            ),
            (change.key,),
        )
        return await cur.fetchone() is not None

    async def fetch(
        self, conn: AsyncConnection[Any], key: Any, *, for_update: bool = False
    ) -> Row | None:
        cur = conn.cursor(row_factory=dict_row)
        statement = sql.SQL("select {} from {} where {} = %s").format(
            self._selected(), sql.Identifier(self.table), sql.Identifier(self.key_column)
        )
        if for_update:
            statement += sql.SQL(" for update")
        await cur.execute(statement, (key,))
        return await cur.fetchone()

    async def list_rows(self, conn: AsyncConnection[Any]) -> list[Row]:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            sql.SQL("select {} from {} order by {}").format(
                self._selected(), sql.Identifier(self.table), _order(self.list_order)
            )
        )
        return await cur.fetchall()

    def _selected(self) -> sql.Composable:
        if self.select_columns is None:
            return sql.SQL("*")
        return sql.SQL(", ").join(sql.Identifier(c) for c in self.select_columns)

    # --- the five operations (the runner) ---------------------------------------------------

    async def read_all(self, pool: AsyncConnectionPool[Any]) -> list[dict[str, Any]]:
        async with pool.connection() as conn:
            return [self.row_json(row) for row in await self.list_rows(conn)]

    async def read_one(self, pool: AsyncConnectionPool[Any], raw_key: str) -> dict[str, Any]:
        key = self.path_key(raw_key)
        if key is None:
            raise self.not_found(raw_key)
        async with pool.connection() as conn:
            row = await self.fetch(conn, key)
        if row is None:
            raise self.not_found(raw_key)
        return self.get_json(row)

    async def create(
        self, pool: AsyncConnectionPool[Any], call: AdminCall, body: Mapping[str, Any]
    ) -> Saved:
        item = self.parse(body, call)
        prepared = await self.prepare(body, call)
        async with pool.connection() as conn, conn.transaction():
            change = Change(conn, call, body=body, prepared=prepared)
            await lock_metadata(conn)
            await self.validate(change, item)
            try:
                row = await self.insert(change, item)
            except pg_errors.UniqueViolation:
                self._raise_conflict(item)
                raise
            notices = await self._announce(change, "create")
        return self._saved(change, self.saved_json(item, row), notices)

    async def update(
        self,
        pool: AsyncConnectionPool[Any],
        call: AdminCall,
        raw_key: str,
        body: Mapping[str, Any],
    ) -> Saved:
        key = self.path_key(raw_key)
        self.check_body(body, raw_key, call)
        if key is None:
            raise self.not_found(raw_key)
        prepared = await self.prepare(body, call)
        async with pool.connection() as conn, conn.transaction():
            change = Change(conn, call, body=body, key=key, prepared=prepared)
            await lock_metadata(conn)
            change.stored = await self.fetch(conn, key, for_update=True)
            if change.stored is None:
                raise self.not_found(raw_key)
            item = self.parse_update(body, change.stored, call)
            await self.validate(change, item)
            try:
                row = await self.update_row(change, item)
            except pg_errors.UniqueViolation:
                self._raise_conflict(item)
                raise
            notices = await self._announce(change, "update")
        return self._saved(change, self.saved_json(item, row), notices)

    async def delete(self, pool: AsyncConnectionPool[Any], call: AdminCall, raw_key: str) -> Saved:
        key = self.path_key(raw_key)
        if key is None:
            raise self.not_found(raw_key)
        async with pool.connection() as conn, conn.transaction():
            change = Change(conn, call, key=key)
            await lock_metadata(conn)
            if not await self.delete_row(change):
                raise self.not_found(raw_key)
            notices = await self._announce(change, "delete")
        return self._saved(change, self.deleted_json(key), notices)

    async def _announce(self, change: Change, operation: Operation) -> tuple[Notice, ...]:
        notices = self.notices(change, operation)
        for notice in notices:
            await send(change.conn, notice)
        return notices

    def _raise_conflict(self, item: T) -> None:
        error = self.conflict(item)
        if error is not None:
            raise error from None

    @staticmethod
    def _saved(change: Change, data: Any, notices: tuple[Notice, ...]) -> Saved:
        meta: dict[str, Any] = {}
        if change.migration:
            meta["migration"] = list(change.migration)
        return Saved(data, notices, meta, tuple(change.warnings))

    # --- export and import (schema_io iterates the kinds with these) ------------------------

    async def export_items(self, conn: AsyncConnection[Any]) -> list[Any]:
        """The kind's part of an export document, in a stable order."""
        columns = self.export_columns if self.export_columns is not None else self.columns
        order = self.export_order if self.export_order is not None else self.list_order
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            sql.SQL("select {} from {} order by {}").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                sql.Identifier(self.table),
                _order(order),
            )
        )
        return [self.export_json(row) for row in await cur.fetchall()]

    def export_json(self, row: Row) -> Any:
        return dict(row)

    def export_item(self, item: T) -> Any:
        """A parsed item as an export would show it once stored (a schema diff compares the
        document's items and the stored ones in this form). Default: its `values` as a row."""
        exported = self.export_columns if self.export_columns is not None else self.columns
        values = (v.obj if isinstance(v, Jsonb) else v for v in self.values(item))
        row = dict(zip(self.columns, values, strict=True))
        return self.export_json({c: row[c] for c in exported})

    async def existing_keys(self, conn: AsyncConnection[Any]) -> set[Hashable]:
        """The natural keys (`import_key_columns`) of the stored rows."""
        if not self.import_key_columns:
            return set()
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            sql.SQL("select {} from {}").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in self.import_key_columns),
                sql.Identifier(self.table),
            )
        )
        return {self.row_key(row) for row in await cur.fetchall()}

    def row_key(self, row: Mapping[str, Any]) -> Hashable:
        return tuple(row[c] for c in self.import_key_columns)

    def key_of(self, item: T) -> Hashable | None:
        """An item's natural key: an import skips an item whose key exists already (or came
        earlier in the document). None: the kind has no natural key."""
        return None

    def diff_key(self, item: T) -> Hashable | None:
        """What pairs a document's item with a stored one in a schema diff (default: the
        import's natural key, `key_of`); None: the item pairs with nothing."""
        return self.key_of(item)

    def raw_key(self, raw: object) -> Hashable | None:
        """The key of a raw document item when it can be checked before parsing (then an
        existing item is skipped without being parsed); None: check `key_of` after parsing."""
        return None

    def screen(self, where: str, raw: object) -> Screened | None:
        """A look at a raw item before anything else (e.g. "must be an object")."""
        return None

    def raw_label(self, raw: object) -> str | None:
        """How a problem with a raw item names it, after its path: `rules[2] (order/field)`."""
        return None

    def problem_label(self, raw: object, item: T) -> str | None:
        return self.raw_label(raw)

    def skip_label(self, raw: object, item: T | None) -> str:
        """How the report lists a skipped item."""
        return self.raw_label(raw) or "?"

    def import_problems_in(self, registry: Registry, item: T) -> Sequence[str | ErrorDetail]:
        """The checks of an imported item (default: the admin route's)."""
        return self.problems_in(registry, item, None)

    def extend(self, registry: Registry, item: T) -> Registry:
        """The metadata with an imported item added, for the items after it (entities and
        relations grow the registry; others leave it)."""
        return registry

    async def import_write(self, change: Change, item: T) -> None:
        """Write a validated imported item (default: `insert`)."""
        await self.insert(change, item)


def _order(columns: Iterable[str | sql.Composable]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c) if isinstance(c, str) else c for c in columns)


def _written(row: Row | None) -> Row:
    if row is None:  # INSERT/UPDATE ... RETURNING of a row that exists always yields it
        raise RuntimeError("the write returned no row")
    return row


def raw_text(raw: object, *keys: str) -> str:
    """`a/b` from the values of `keys` in a raw document item (`?` when it is not an object)."""
    if not isinstance(raw, Mapping):
        return "?"
    return "/".join(str(raw.get(k, "")) for k in keys)
