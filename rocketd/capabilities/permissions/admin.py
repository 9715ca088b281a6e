"""The permission-policy kind (`_permissions`).

Policies run on the generic admin runner (`engine.admin`): each change is written and announced
(the app database's metadata notification, delivered at commit) in one transaction under the
app's metadata lock; every instance reloads its AppSnapshot, whose `permissions` part is these
rows, and the route reloads this instance before answering, so the caller's next request already
obeys the change.

Rows (spec): `{"id", "entity", "action", "roles", "conditions", "created_at", "updated_at"}` plus
the additive `check` list (stored in the `checks` column). `conditions` and `check` are stored
as validated and normalised (`[]` rather than upstream's `null` when omitted). The entity is not
checked to exist, as the spec says; several policies per (entity, action) are allowed. A PUT
keeps every key it omits (C28), an absent list keeping the stored JSON exactly; a bad PUT body
is refused (400/422) before an unknown id is (404).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from rocketd.capabilities.permissions.model import (
    Condition,
    PolicyFields,
    parse_policy_body,
    stored_conditions,
)
from rocketd.engine.admin import AdminCall, Change, MetadataKind, Row, Screened, raw_text
from rocketd.errors import InvalidPayload
from rocketd.timestamps import iso_utc


def _conditions_json(raw: Any) -> list[Any]:
    """A stored conditions column as JSON: what was written, `[]` for upstream's null."""
    return raw if isinstance(raw, list) else []


def permission_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "entity": row["entity"],
        "action": row["action"],
        "roles": list(row["roles"] or []),
        "conditions": _conditions_json(row["conditions"]),
        "check": _conditions_json(row["checks"]),
        "created_at": iso_utc(row["created_at"]),
        "updated_at": iso_utc(row["updated_at"]),
    }


def _stored_fields(row: Mapping[str, Any]) -> PolicyFields:
    return PolicyFields(
        entity=str(row["entity"]),
        action=str(row["action"]),
        roles=tuple(row["roles"] or ()),
        conditions=stored_conditions(row["conditions"]),
        check=stored_conditions(row["checks"]),
    )


def _jsonb(conditions: tuple[Condition, ...]) -> Jsonb:
    return Jsonb([c.to_json() for c in conditions])


async def insert_permission(conn: AsyncConnection[Any], fields: PolicyFields) -> dict[str, Any]:
    """Insert a validated policy in the caller's transaction; the new row."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "insert into _permissions (entity, action, roles, conditions, checks)"
        " values (%s, %s, %s, %s, %s)"
        " returning id, entity, action, roles, conditions, checks, created_at, updated_at",
        (
            fields.entity,
            fields.action,
            list(fields.roles),
            _jsonb(fields.conditions),
            _jsonb(fields.check),
        ),
    )
    row = await cur.fetchone()
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned no row")
    return row


class PermissionKind(MetadataKind[PolicyFields]):
    name = "permissions"
    path = "permissions"
    table = "_permissions"
    label = "Permission"
    columns = ("entity", "action", "roles", "conditions", "checks")
    select_columns = ("id", "entity", "action", "roles", "conditions", "checks", "created_at",
                      "updated_at")  # fmt: skip
    list_order = ("entity", "action", "created_at", "id")
    export_columns = ("entity", "action", "roles", "conditions", "checks")
    # QUIRK (spec): an imported policy whose (entity, action) exists is skipped, even a second
    # policy of a pair that the document itself holds.
    import_key_columns = ("entity", "action")
    needs_registry = False  # the entity is not checked to exist (spec)

    def parse(self, body: object, call: AdminCall) -> PolicyFields:
        if not isinstance(body, Mapping):
            raise InvalidPayload("Invalid JSON body")
        return parse_policy_body(body)

    def check_body(self, body: Mapping[str, Any], raw_key: str, call: AdminCall) -> None:
        parse_policy_body(body, PolicyFields("x", "read"))  # what the body says, on its own

    def parse_update(self, body: Mapping[str, Any], stored: Row, call: AdminCall) -> PolicyFields:
        return parse_policy_body(body, _stored_fields(stored))

    def values(self, item: PolicyFields) -> tuple[Any, ...]:
        return (
            item.entity,
            item.action,
            list(item.roles),
            _jsonb(item.conditions),
            _jsonb(item.check),
        )

    def row_json(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return permission_json(row)

    async def insert(self, change: Change, item: PolicyFields) -> Row:
        return await insert_permission(change.conn, item)

    async def update_row(self, change: Change, item: PolicyFields) -> Row:
        stored, body = change.stored or {}, change.body or {}
        # Absent lists keep the stored JSON exactly (even what this release cannot read).
        conditions = (
            _jsonb(item.conditions) if "conditions" in body else Jsonb(stored["conditions"])
        )
        check = _jsonb(item.check) if "check" in body else Jsonb(stored["checks"])
        cur = change.conn.cursor(row_factory=dict_row)
        await cur.execute(
            "update _permissions set entity = %s, action = %s, roles = %s, conditions = %s,"
            " checks = %s, updated_at = now() where id = %s"
            " returning id, entity, action, roles, conditions, checks, created_at, updated_at",
            (item.entity, item.action, list(item.roles), conditions, check, change.key),
        )
        row = await cur.fetchone()
        if row is None:
            raise RuntimeError("UPDATE ... RETURNING of a locked row returned nothing")
        return row

    def export_json(self, row: Row) -> Any:
        item = {
            "entity": row["entity"],
            "action": row["action"],
            "roles": list(row["roles"] or []),
            "conditions": _conditions_json(row["conditions"]),
        }
        if isinstance(row["checks"], list) and row["checks"]:
            item["check"] = row["checks"]  # additive (upstream-gaps S5)
        return item

    def screen(self, where: str, raw: object) -> Screened | None:
        return None if isinstance(raw, Mapping) else Screened("problem", "must be an object")

    def raw_key(self, raw: object) -> Hashable | None:
        return (raw.get("entity"), raw.get("action")) if isinstance(raw, Mapping) else None

    def key_of(self, item: PolicyFields) -> Hashable:
        return (item.entity, item.action)

    def raw_label(self, raw: object) -> str:
        return raw_text(raw, "entity", "action")


PERMISSIONS: Final = PermissionKind()
KINDS: Final[tuple[MetadataKind[Any], ...]] = (PERMISSIONS,)
