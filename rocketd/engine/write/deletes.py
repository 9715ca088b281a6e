"""Deleting a record: the `on_delete` policies of its relations, recursively, then the row itself.

Everything runs in the caller's transaction, so a `restrict` found anywhere (even several cascade
levels down) rolls back the cascades already applied. Policies, for each relation whose *source*
is the deleted entity, in registry order (spec data-api.md "Delete", upstream-gaps C19/C20):

| on_delete | one-to-many / one-to-one | many-to-many |
|---|---|---|
| cascade | every live child is deleted as a record of its own: its relations' policies apply in turn (soft or hard per the child's entity) | the parent's join rows are deleted |
| set_null | `target_key = NULL` on every child row (soft-deleted ones too) | treated as detach |
| restrict | live children > 0 -> 409 | join rows > 0 -> 409 |
| detach | nothing | the parent's join rows are deleted |

Cycles (A cascades to B cascades to A, or a self-relation) are cut by remembering every
(entity, pk) already being deleted. The target side, decided here: when a row is hard-deleted, the
join rows of many-to-many relations that point *at* it are removed too (they could never be read
again and would only dangle); a soft-deleted row keeps them so restoring it restores its links.
One-to-many relations where the deleted entity is the target need nothing: the FK lives on the
deleted row itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg import errors as pg_errors

from rocketd.db.cursors import fetch_rows
from rocketd.engine.sql.compose import (
    build_count,
    build_delete,
    build_select,
    build_soft_delete,
    build_update,
    condition,
    entity_sql,
)
from rocketd.errors import Conflict, InternalError, NotFound
from rocketd.metadata.model import Entity, Relation
from rocketd.metadata.registry import Registry


async def delete_record(
    conn: AsyncConnection[Any], registry: Registry, entity: Entity, stored_row: Mapping[str, Any]
) -> None:
    """Delete `stored_row` of `entity` with every cascade; 404 NOT_FOUND when it is already gone.

    Raises 409 CONFLICT `Cannot delete: {n} related {target} records exist` for a restrict; the
    caller's transaction must then be rolled back (it is, when the error leaves `conn.transaction()`).
    """
    pk = stored_row[entity.primary_key.field]
    deleted = await _Deletion(conn, registry).delete(entity, pk)
    if not deleted:
        raise NotFound(f"{entity.name} with id {pk} not found")


def _restricted(count: int, target: str) -> Conflict:
    return Conflict(f"Cannot delete: {count} related {target} records exist")


class _Deletion:
    """One delete request: the connection, the registry snapshot and the rows already visited."""

    def __init__(self, conn: AsyncConnection[Any], registry: Registry) -> None:
        self.conn = conn
        self.registry = registry
        self.visited: set[tuple[str, str]] = set()

    def _target(self, relation: Relation) -> Entity:
        target = self.registry.entity(relation.target)
        if target is None:
            raise InternalError(
                f"Relation {relation.name} targets unknown entity {relation.target}"
            )
        return target

    async def delete(self, entity: Entity, pk: Any) -> bool:
        """Apply the policies, then delete the row; False when no live row was deleted."""
        self.visited.add((entity.name, str(pk)))
        for relation in self.registry.relations_from(entity.name):
            if relation.many_to_many:
                await self._outgoing_links(relation, pk)
            else:
                await self._children(relation, pk)
        if not entity.soft_delete:
            await self._incoming_links(entity, pk)
        return await self._delete_row(entity, pk)

    async def _count(self, query: sql.Composed, pk: Any) -> int:
        cur = await self.conn.execute(query, (pk,))
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _outgoing_links(self, relation: Relation, pk: Any) -> None:
        if not (relation.join_table and relation.source_join_key):
            raise InternalError(f"Relation {relation.name} has no join table configuration")
        parent = [condition(relation.source_join_key)]
        if relation.on_delete == "restrict":
            count = await self._count(build_count(relation.join_table, parent), pk)
            if count:
                raise _restricted(count, relation.target)
            return
        # cascade and detach remove the parent's links; set_null is meaningless here (C19).
        await self.conn.execute(build_delete(relation.join_table, parent), (pk,))

    async def _children(self, relation: Relation, pk: Any) -> None:
        policy = relation.on_delete
        if policy not in ("cascade", "set_null", "restrict"):
            return  # detach: the children keep their (now dangling) FK, as upstream
        if not relation.target_key:
            raise InternalError(f"Relation {relation.name} has no target_key")
        target = self._target(relation)
        fk = relation.target_key
        if policy == "set_null":
            try:
                await self.conn.execute(
                    build_update(target.table, (fk,), conditions=[condition(fk)]), (None, pk)
                )
            except pg_errors.NotNullViolation as exc:
                raise Conflict(
                    f"Cannot delete: related {target.name} records require {fk} "
                    f"(relation {relation.name} is set_null)"
                ) from exc
        elif policy == "restrict":
            await self._restrict(target, fk, pk)
        else:
            await self._cascade(target, fk, pk)

    async def _restrict(self, target: Entity, fk: str, pk: Any) -> None:
        count = await self._count(build_count(target, [condition(fk)]), pk)
        if count and any(name == target.name for name, _ in self.visited):
            # Rows that this same delete is already removing (an ancestor in a cycle) do not
            # block it: only the children that would survive count.
            count = sum(
                1
                for child in await self._child_keys(target, fk, pk)
                if (target.name, str(child)) not in self.visited
            )
        if count:
            raise _restricted(count, target.name)

    async def _child_keys(self, target: Entity, fk: str, pk: Any) -> list[Any]:
        pk_name = target.pk.name
        query = build_select(
            target, columns=(pk_name,), conditions=[condition(fk)], order=[(pk_name, False)]
        )
        cur = await self.conn.execute(query, (pk,))
        return [row[0] for row in await cur.fetchall()]

    def _is_leaf(self, target: Entity) -> bool:
        """True when deleting a `target` row needs nothing but the row itself."""
        if self.registry.relations_from(target.name):
            return False
        if target.soft_delete:
            return True
        return not any(r.many_to_many for r in self.registry.relations_to(target.name))

    async def _cascade(self, target: Entity, fk: str, pk: Any) -> None:
        if self._is_leaf(target):
            # One statement for all children when nothing hangs off them.
            if target.soft_delete:
                query = build_soft_delete(target.table, [condition(fk)])
            else:
                query = build_delete(target.table, [condition(fk)])
            await self.conn.execute(query, (pk,))
            return
        for child in await self._child_keys(target, fk, pk):
            if (target.name, str(child)) not in self.visited:
                await self.delete(target, child)

    async def _incoming_links(self, entity: Entity, pk: Any) -> None:
        for relation in self.registry.relations_to(entity.name):
            if relation.many_to_many and relation.join_table and relation.target_join_key:
                await self.conn.execute(
                    build_delete(relation.join_table, [condition(relation.target_join_key)]),
                    (pk,),
                )

    async def _delete_row(self, entity: Entity, pk: Any) -> bool:
        def build() -> sql.Composed:  # once per entity (the statement cache)
            where = [condition(entity.pk.name)]
            key = (entity.pk.name,)
            if entity.soft_delete:
                return build_soft_delete(entity.table, where, returning=key)
            return build_delete(entity.table, where, returning=key)

        query = entity_sql(entity).statements.render(("deletes.row",), self.conn, build)
        return bool(await fetch_rows(self.conn, query, (pk,)))
