"""What a write changed: the before/after diff of one record, computed once per write.

Webhook payloads carry it as `changes` today; audit rows and activity entries will read the same
object (`WriteContext.changes()`), so every consumer agrees on what changed. Values are compared
by their canonical text (`metadata.field_types.value_text`): `2` and `2.0` are the same value, as
they are to enum checks, permission conditions and state machines.

Conventions (the webhook contract): a create lists every field with `old: null`; an update lists
the fields whose value differs from the stored row; a delete lists nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rocketd.engine.record_state import json_value
from rocketd.metadata.field_types import value_text


@dataclass(frozen=True)
class FieldChange:
    old: Any
    new: Any


@dataclass(frozen=True)
class Changes:
    """One write's record (JSON form), the stored row before it (JSON form; None on create), and
    the fields that changed, in the record's field order."""

    action: str
    record: Mapping[str, Any]
    old: Mapping[str, Any] | None = None
    fields: Mapping[str, FieldChange] = field(default_factory=dict)

    def to_json(self) -> dict[str, dict[str, Any]]:
        return {name: {"old": c.old, "new": c.new} for name, c in self.fields.items()}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.fields)


def compute_changes(
    action: str, record: Mapping[str, Any], old: Mapping[str, Any] | None
) -> Changes:
    """The diff of a write: `record` as written (wire or DB form), `old` the stored row."""
    after = json_value(dict(record))
    if action == "create":
        return Changes(action, after, None, {k: FieldChange(None, v) for k, v in after.items()})
    before = None if old is None else json_value(dict(old))
    if action != "update" or before is None:
        return Changes(action, after, before)
    changed = {
        key: FieldChange(before.get(key), value)
        for key, value in after.items()
        if value_text(value) != value_text(before.get(key))
    }
    return Changes(action, after, before, changed)
