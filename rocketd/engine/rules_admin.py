"""Saving rules (`_rules`) and state machines (`_state_machines`): validate, write and notify.

Same pattern as `metadata_admin`: every change runs in one transaction under the app's metadata
advisory lock, is validated against the entities and relations as stored *now*, and commits with
`NOTIFY rocket_metadata`, so every instance reloads its snapshot (and its RuleBook). Expressions
and patterns are compiled when saved (C4); a PUT keeps the stored value of every key it omits
(C28). `load_rule_book` builds the snapshot's book from the stored rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from rocketd.engine.metadata_admin import _iso, _lock, _notify, load_registry
from rocketd.errors import Conflict, ErrorDetail, NotFound
from rocketd.metadata.parse import MetadataError
from rocketd.metadata.registry import Registry
from rocketd.metadata.rules import (
    ROW_KEYS,
    Rule,
    RuleBook,
    StateMachine,
    new_rule_problems_in,
    parse_rule,
    parse_state_machine,
    state_machine_problems_in,
)


async def load_rule_book(conn: AsyncConnection[Any], registry: Registry) -> RuleBook:
    """The RuleBook of the stored rows (invalid ones skipped and listed in `problems`)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("select * from _rules order by entity, priority, id")
    rule_rows = await cur.fetchall()
    await cur.execute("select * from _state_machines order by entity, field, id")
    machine_rows = await cur.fetchall()
    return RuleBook.build(registry, rule_rows, machine_rows)


_Item = TypeVar("_Item", Rule, StateMachine)
# Checks an item against the other rows of its table (inside the lock); the id is the row's own.
UniquenessCheck = Callable[[AsyncConnection[Any], _Item, uuid.UUID | None], Awaitable[None]]


@dataclass(frozen=True)
class _Table(Generic[_Item]):
    """One admin-managed table: its name, the word for a row, its columns and their parsing."""

    name: str
    label: str
    columns: tuple[str, ...]  # what a body sets, in the order rows show them
    order: tuple[str, ...]
    parse: Callable[[object], _Item]
    problems: Callable[[Registry, _Item], list[ErrorDetail]]
    values: Callable[[_Item], tuple[Any, ...]]  # the item's values for `columns`

    def row_json(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": str(row["id"]),
            **{column: row[column] for column in self.columns},
            "created_at": _iso(row["created_at"]),
            "updated_at": _iso(row["updated_at"]),
        }

    def not_found(self, raw_id: str) -> NotFound:
        return NotFound(f"{self.label} not found: {raw_id}")

    def row_id(self, raw_id: str) -> uuid.UUID:
        """The UUID of a path id; anything else names no row (404, never a database error)."""
        try:
            return uuid.UUID(raw_id)
        except ValueError:
            raise self.not_found(raw_id) from None

    def select(self, *, by_id: bool = False, for_update: bool = False) -> sql.Composed:
        statement = sql.SQL("select * from {}").format(sql.Identifier(self.name))
        if by_id:
            statement += sql.SQL(" where id = %s")
        else:
            statement += sql.SQL(" order by ") + sql.SQL(", ").join(
                sql.Identifier(c) for c in self.order
            )
        return statement + sql.SQL(" for update") if for_update else statement

    def insert(self) -> sql.Composed:
        return sql.SQL("insert into {} ({}) values ({}) returning id").format(
            sql.Identifier(self.name),
            sql.SQL(", ").join(sql.Identifier(c) for c in self.columns),
            sql.SQL(", ").join(sql.Placeholder() for _ in self.columns),
        )

    def update(self) -> sql.Composed:
        return sql.SQL("update {} set {}, updated_at = now() where id = %s").format(
            sql.Identifier(self.name),
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in self.columns),
        )

    def delete(self) -> sql.Composed:
        return sql.SQL("delete from {} where id = %s returning id").format(
            sql.Identifier(self.name)
        )


def _check(problems: list[ErrorDetail]) -> None:
    if problems:
        raise MetadataError(problems)


async def _list(pool: AsyncConnectionPool[Any], table: _Table[_Item]) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(table.select())
        return [table.row_json(r) for r in await cur.fetchall()]


async def _fetch(
    conn: AsyncConnection[Any], table: _Table[_Item], row_id: uuid.UUID, *, for_update: bool
) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(table.select(by_id=True, for_update=for_update), (row_id,))
    return await cur.fetchone()


async def _get(pool: AsyncConnectionPool[Any], table: _Table[_Item], raw_id: str) -> dict[str, Any]:
    row_id = table.row_id(raw_id)
    async with pool.connection() as conn:
        row = await _fetch(conn, table, row_id, for_update=False)
    if row is None:
        raise table.not_found(raw_id)
    return row


async def _create(
    pool: AsyncConnectionPool[Any],
    app_name: str,
    table: _Table[_Item],
    body: object,
    unique: UniquenessCheck[_Item] | None = None,
) -> _Item:
    item: _Item = table.parse(body)
    async with pool.connection() as conn, conn.transaction():
        await _lock(conn)
        _check(table.problems(await load_registry(conn), item))
        if unique is not None:
            await unique(conn, item, None)
        new_id = await insert_item(conn, table, item)
        await _notify(conn, app_name)
    return replace(item, id=new_id)


async def insert_item(conn: AsyncConnection[Any], table: _Table[_Item], item: _Item) -> str:
    """Insert a validated rule or state machine in the caller's transaction; its new id."""
    cur = await conn.execute(table.insert(), table.values(item))
    row = await cur.fetchone()
    assert row is not None  # INSERT ... RETURNING always yields the row
    return str(row[0])


async def _update(
    pool: AsyncConnectionPool[Any],
    app_name: str,
    table: _Table[_Item],
    raw_id: str,
    body: Mapping[str, Any],
    unique: UniquenessCheck[_Item] | None = None,
) -> _Item:
    """A PUT: the body over the stored row, so omitted keys keep their stored value (C28)."""
    row_id = table.row_id(raw_id)
    async with pool.connection() as conn, conn.transaction():
        await _lock(conn)
        stored = await _fetch(conn, table, row_id, for_update=True)
        if stored is None:
            raise table.not_found(raw_id)
        merged = {column: stored[column] for column in table.columns}
        merged.update({k: v for k, v in body.items() if k not in ROW_KEYS})
        item: _Item = table.parse(merged)
        _check(table.problems(await load_registry(conn), item))
        if unique is not None:
            await unique(conn, item, row_id)
        await conn.execute(table.update(), (*table.values(item), row_id))
        await _notify(conn, app_name)
    return replace(item, id=str(row_id))


async def _delete(
    pool: AsyncConnectionPool[Any], app_name: str, table: _Table[_Item], raw_id: str
) -> None:
    row_id = table.row_id(raw_id)
    async with pool.connection() as conn, conn.transaction():
        await _lock(conn)
        cur = await conn.execute(table.delete(), (row_id,))
        if await cur.fetchone() is None:
            raise table.not_found(raw_id)
        await _notify(conn, app_name)


# ------------------------------------------------------------------------------------- rules

RULES: _Table[Rule] = _Table(
    name="_rules",
    label="Rule",
    columns=("entity", "hook", "type", "definition", "priority", "active"),
    order=("entity", "priority", "created_at", "id"),
    parse=parse_rule,
    problems=new_rule_problems_in,
    values=lambda r: (
        r.entity,
        r.hook,
        r.type,
        Jsonb(dict(r.raw_definition)),
        r.priority,
        r.active,
    ),
)


async def list_rules(pool: AsyncConnectionPool[Any]) -> list[dict[str, Any]]:
    return await _list(pool, RULES)


async def get_rule(pool: AsyncConnectionPool[Any], raw_id: str) -> dict[str, Any]:
    return RULES.row_json(await _get(pool, RULES, raw_id))


async def create_rule(pool: AsyncConnectionPool[Any], app_name: str, body: object) -> Rule:
    return await _create(pool, app_name, RULES, body)


async def update_rule(
    pool: AsyncConnectionPool[Any], app_name: str, raw_id: str, body: Mapping[str, Any]
) -> Rule:
    return await _update(pool, app_name, RULES, raw_id, body)


async def delete_rule(pool: AsyncConnectionPool[Any], app_name: str, raw_id: str) -> None:
    await _delete(pool, app_name, RULES, raw_id)


# ---------------------------------------------------------------------------- state machines

STATE_MACHINES: _Table[StateMachine] = _Table(
    name="_state_machines",
    label="State machine",
    columns=("entity", "field", "definition", "active"),
    order=("entity", "field", "created_at", "id"),
    parse=parse_state_machine,
    problems=state_machine_problems_in,
    values=lambda m: (m.entity, m.field, Jsonb(dict(m.raw_definition)), m.active),
)


async def _one_machine_per_field(
    conn: AsyncConnection[Any], machine: StateMachine, row_id: uuid.UUID | None
) -> None:
    cur = await conn.execute(
        "select id from _state_machines where entity = %s and field = %s"
        " and id is distinct from %s",
        (machine.entity, machine.field, row_id),
    )
    other = await cur.fetchone()
    if other is not None:
        raise Conflict(
            f"A state machine for {machine.entity}.{machine.field} already exists: {other[0]}"
        )


async def list_state_machines(pool: AsyncConnectionPool[Any]) -> list[dict[str, Any]]:
    return await _list(pool, STATE_MACHINES)


async def get_state_machine(pool: AsyncConnectionPool[Any], raw_id: str) -> dict[str, Any]:
    """The row plus `graph` (states and edges, additive), null when the row no longer parses."""
    row = await _get(pool, STATE_MACHINES, raw_id)
    out = STATE_MACHINES.row_json(row)
    try:
        machine = parse_state_machine({k: row[k] for k in STATE_MACHINES.columns})
    except MetadataError:
        out["graph"] = None
    else:
        out["graph"] = machine.graph()
    return out


async def create_state_machine(
    pool: AsyncConnectionPool[Any], app_name: str, body: object
) -> StateMachine:
    return await _create(pool, app_name, STATE_MACHINES, body, _one_machine_per_field)


async def update_state_machine(
    pool: AsyncConnectionPool[Any], app_name: str, raw_id: str, body: Mapping[str, Any]
) -> StateMachine:
    return await _update(pool, app_name, STATE_MACHINES, raw_id, body, _one_machine_per_field)


async def delete_state_machine(pool: AsyncConnectionPool[Any], app_name: str, raw_id: str) -> None:
    await _delete(pool, app_name, STATE_MACHINES, raw_id)
