"""The record of one write as the pipeline's stages see it, and the value forms they share.

`RecordState` keeps a record in two forms in step: DB form (what psycopg sends and returns;
encodable with `query.encode_record`) and the expression environment's native form (numbers as
int/float/Decimal, timestamps as aware datetimes, dates as dates, UUIDs as strings, JSON as
dicts/lists). Rules, state machines, workflows and webhooks all read records through it;
`json_value` turns any of these values into plain JSON (payloads, contexts).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from psycopg.types.json import Jsonb

from rocketd.auth.principal import Principal
from rocketd.engine.write.plan import WritePlan
from rocketd.metadata.field_types import (
    parse_timestamp,
)
from rocketd.metadata.model import Entity

# ---------------------------------------------------------------------------- value forms


def native_value(value: Any) -> Any:
    """A DB-form value as the expression environment sees it."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Jsonb):
        return value.obj
    return value


def db_value(value: Any) -> Any:
    """A psycopg parameter as the value psycopg would read back (JSON unwrapped)."""
    return value.obj if isinstance(value, Jsonb) else value


def json_value(value: Any) -> Any:
    """Any environment value as plain JSON (decimals as strings, times in RFC 3339, ...)."""
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Jsonb):
        return json_value(native_value(value))
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def decode_record(entity: Entity, record: Mapping[str, Any]) -> dict[str, Any]:
    """An encoded record (the API's JSON) back in DB form: decimals, timestamps and dates typed."""
    out = dict(record)
    for f in entity.fields:
        value = out.get(f.name)
        if not isinstance(value, str):
            continue
        kind = f.base_type
        if kind == "decimal":
            try:
                out[f.name] = Decimal(value)
            except InvalidOperation:
                pass
        elif kind == "timestamp":
            out[f.name] = parse_timestamp(value) or value
        elif kind == "date":
            try:
                out[f.name] = date.fromisoformat(value)
            except ValueError:
                pass
    return out


def user_variable(principal: Principal) -> dict[str, Any]:
    return {"id": principal.user_id, "roles": list(principal.roles)}


@dataclass
class RecordState:
    """The record of one write as rules see it. `payload` is what the write sets (on create with
    the defaults), `record` the whole record (old merged with the payload on update, C7)."""

    entity: Entity
    action: str  # create | update | delete
    db: dict[str, Any]
    record: dict[str, Any]
    payload: dict[str, Any]
    old: dict[str, Any]
    user: dict[str, Any]
    now: datetime
    assigned: dict[str, Any] = field(default_factory=dict)  # DB params set by rules/actions

    @classmethod
    def for_write(
        cls,
        entity: Entity,
        action: str,
        values: Mapping[str, Any],
        old: Mapping[str, Any] | None,
        principal: Principal,
    ) -> RecordState:
        """A create or update: `values` are the plan's, `old` the locked stored row."""
        db = {**(old or {}), **{k: db_value(v) for k, v in values.items()}}
        return cls._of(entity, action, db, values, old, principal)

    @classmethod
    def for_record(
        cls,
        entity: Entity,
        action: str,
        row: Mapping[str, Any],
        old: Mapping[str, Any] | None,
        principal: Principal,
    ) -> RecordState:
        """A stored row (before_delete) or the re-read record (after_write), in DB form."""
        return cls._of(entity, action, dict(row), row, old, principal)

    @classmethod
    def _of(
        cls,
        entity: Entity,
        action: str,
        db: dict[str, Any],
        payload: Mapping[str, Any],
        old: Mapping[str, Any] | None,
        principal: Principal,
    ) -> RecordState:
        def native(row: Mapping[str, Any] | None) -> dict[str, Any]:
            return {k: native_value(v) for k, v in (row or {}).items()}

        return cls(
            entity=entity,
            action=action,
            db=db,
            record=native(db),
            payload=native(payload),
            old=native(old),
            user=user_variable(principal),
            now=datetime.now(UTC),
        )

    def assign(self, name: str, param: Any) -> None:
        """Set a field (a coerced DB parameter) for the write and for what runs after."""
        self.assigned[name] = param
        self.db[name] = db_value(param)
        self.record[name] = native_value(param)
        self.payload[name] = native_value(param)

    def variables(self, related: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {
            "record": self.record,
            "old": self.old,
            "action": self.action,
            "user": self.user,
            "now": self.now,
            "related": dict(related or {}),
        }

    def apply_to(self, plan: WritePlan) -> WritePlan:
        """`plan` with every assigned value; a slug set explicitly is no longer generated."""
        if not self.assigned:
            return plan
        slug = plan.slug
        if slug is not None and self.assigned.get(slug.field) not in (None, ""):
            slug = None
        return replace(plan, values=MappingProxyType({**plan.values, **self.assigned}), slug=slug)
