"""Permission policies (`_permissions` rows) as typed values, and reading them from admin bodies.

A policy grants one `action` on one `entity` to the users holding any of its `roles` (compared
case-insensitively). `conditions` restrict it: on read they become row filters, on update and
delete they must hold on the stored row. `check` (additive, upstream-gaps S5) must hold on the row
as it is after a create or update. A condition value may be the caller placeholder `"$user.id"`
(S6). What the engine does with a policy is `rocketd.engine.permissions`; this module only knows
the shapes.

Two readers, on purpose different:

- `parse_policy_body` reads an admin request strictly: every problem is reported (400 for a
  value of the wrong JSON type or an unknown key, 422 for a missing or invalid value), with the
  contract's messages (`entity is required`, `action must be read, create, update, or delete`).
- `policy_from_row` reads what is stored leniently and fails closed: a condition it cannot
  understand is kept as one that never holds, so a damaged row can only grant less.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from rocketd.errors import ErrorDetail, InvalidPayload, ValidationFailed

ACTIONS: Final = ("read", "create", "update", "delete")
OPERATORS: Final = ("eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte")
LIST_OPERATORS: Final = frozenset({"in", "not_in"})
USER_ID_PLACEHOLDER: Final = "$user.id"

MAX_ROLES: Final = 100
MAX_ROLE_LENGTH: Final = 100
MAX_CONDITIONS: Final = 50
MAX_LIST_ITEMS: Final = 1000
MAX_TEXT_VALUE: Final = 1000

_NAME_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,62}")
NAME_RULE: Final = "^[a-z][a-z0-9_]{0,62}$"
BODY_KEYS: Final = ("entity", "action", "roles", "conditions", "check")
# Keys of a policy row that a client may echo back in a PUT; they are ignored.
READ_ONLY_KEYS: Final = frozenset({"id", "created_at", "updated_at"})
CONDITION_KEYS: Final = ("field", "operator", "value")
INVALID_JSON_BODY: Final = "Invalid JSON body"


@dataclass(frozen=True)
class Condition:
    """`field operator value`; for `in` / `not_in` the value is a tuple of scalars."""

    field: str
    operator: str
    value: Any

    @property
    def uses_caller(self) -> bool:
        if isinstance(self.value, tuple):
            return USER_ID_PLACEHOLDER in self.value
        return bool(self.value == USER_ID_PLACEHOLDER)

    def to_json(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"field": self.field, "operator": self.operator, "value": value}


# A stored condition that could not be read: no field has an empty name, so it never holds.
NEVER: Final = Condition("", "never", None)


@dataclass(frozen=True)
class PolicyFields:
    """What an admin writes: everything of a policy but its id and timestamps."""

    entity: str
    action: str
    roles: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()
    check: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Policy:
    id: str
    entity: str
    action: str
    roles: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()
    check: tuple[Condition, ...] = ()
    role_keys: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "role_keys", frozenset(r.lower() for r in self.roles))

    def matches(self, role_keys: frozenset[str]) -> bool:
        """Whether a caller holding `role_keys` (lower-cased) is one this policy is for."""
        return not self.role_keys.isdisjoint(role_keys)


# --- stored rows (lenient, fail closed) ----------------------------------------------------------


def _stored_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool)


def _stored_condition(raw: Any) -> Condition:
    if not isinstance(raw, Mapping):
        return NEVER
    name, operator, value = raw.get("field"), raw.get("operator"), raw.get("value")
    if not isinstance(name, str) or not isinstance(operator, str):
        return NEVER
    if operator in LIST_OPERATORS:
        if not isinstance(value, list) or not all(_stored_scalar(v) for v in value):
            return NEVER
        return Condition(name, operator, tuple(value))
    if not _stored_scalar(value):
        return NEVER
    return Condition(name, operator, value)


def stored_conditions(raw: Any) -> tuple[Condition, ...]:
    """A stored `conditions` / `checks` value; null (what upstream stores) means none."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        return (NEVER,)
    return tuple(_stored_condition(item) for item in raw)


def policy_from_row(
    policy_id: Any, entity: Any, action: Any, roles: Any, conditions: Any, check: Any
) -> Policy | None:
    """A `_permissions` row as a Policy; None when it cannot grant anything (bad action)."""
    if not isinstance(entity, str) or action not in ACTIONS:
        return None
    role_list = tuple(r for r in (roles or ()) if isinstance(r, str))
    return Policy(
        id=str(policy_id),
        entity=entity,
        action=str(action),
        roles=role_list,
        conditions=stored_conditions(conditions),
        check=stored_conditions(check),
    )


# --- admin bodies (strict) ----------------------------------------------------------------------


class Problems:
    """Type problems (400) and validation problems (422), reported together per kind."""

    def __init__(self) -> None:
        self.types: list[ErrorDetail] = []
        self.invalid: list[ErrorDetail] = []

    def wrong_type(self, where: str, expected: str) -> None:
        self.types.append(ErrorDetail(f"{where} must be {expected}", where, "type"))

    def add(self, where: str, message: str, rule: str) -> None:
        self.invalid.append(ErrorDetail(message, where, rule))

    def raise_if_any(self) -> None:
        if self.types:
            raise InvalidPayload(INVALID_JSON_BODY, self.types)
        if self.invalid:
            raise ValidationFailed("; ".join(d.message for d in self.invalid), self.invalid)


def reject_unknown(
    body: Mapping[str, Any], allowed: Sequence[str], ignored: frozenset[str] = frozenset()
) -> None:
    """400 naming every key that is neither allowed nor ignored."""
    unknown = sorted(k for k in body if k not in allowed and k not in ignored)
    if unknown:
        raise InvalidPayload(
            INVALID_JSON_BODY,
            [
                ErrorDetail(
                    f"unknown field '{_short(k)}'; allowed: {', '.join(allowed)}",
                    _short(k),
                    "unknown",
                )
                for k in unknown
            ],
        )


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def parse_roles(raw: Any, where: str, problems: Problems) -> tuple[str, ...]:
    """A JSON array of role names: strings, not blank, at most MAX_ROLES of MAX_ROLE_LENGTH."""
    if not isinstance(raw, list):
        problems.wrong_type(where, "an array of strings")
        return ()
    roles: list[str] = []
    for index, role in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(role, str):
            problems.wrong_type(at, "a string")
        elif not role.strip():
            problems.add(at, f"{at} must not be blank", "required")
        elif len(role) > MAX_ROLE_LENGTH or not role.isprintable():
            problems.add(
                at,
                f"{at} must be at most {MAX_ROLE_LENGTH} printable characters",
                "max_length",
            )
        elif role not in roles:
            roles.append(role)
    if len(raw) > MAX_ROLES:
        problems.add(where, f"{where} may hold at most {MAX_ROLES} roles", "max_items")
    return tuple(roles)


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "must be a finite number"
    if isinstance(value, str):
        if len(value) > MAX_TEXT_VALUE:
            return f"must be at most {MAX_TEXT_VALUE} characters"
        if "\x00" in value:
            return "must not contain NUL characters"
        return None
    return "must be a string, a number or a boolean"


def _parse_condition(raw: Any, where: str, problems: Problems) -> Condition | None:
    if not isinstance(raw, Mapping):
        problems.wrong_type(where, "an object with field, operator and value")
        return None
    unknown = sorted(k for k in raw if k not in CONDITION_KEYS)
    for key in unknown:
        at = f"{where}.{_short(key)}"
        problems.add(at, f"{at} is not a condition key (use field, operator, value)", "unknown")
    name, operator, value = raw.get("field"), raw.get("operator"), raw.get("value")
    ok = not unknown
    if name is None or name == "":
        problems.add(f"{where}.field", f"{where}.field is required", "required")
        ok = False
    elif not isinstance(name, str):
        problems.wrong_type(f"{where}.field", "a string")
        ok = False
    elif not _NAME_RE.fullmatch(name):
        problems.add(f"{where}.field", f"{where}.field must match {NAME_RULE}", "pattern")
        ok = False
    if operator is None or operator == "":
        problems.add(f"{where}.operator", f"{where}.operator is required", "required")
        return None
    if not isinstance(operator, str):
        problems.wrong_type(f"{where}.operator", "a string")
        return None
    if operator not in OPERATORS:
        problems.add(
            f"{where}.operator",
            f"{where}.operator must be one of: {', '.join(OPERATORS)}",
            "enum",
        )
        return None
    at = f"{where}.value"
    if operator in LIST_OPERATORS:
        if not isinstance(value, list):
            problems.add(at, f"{at} must be an array for {operator}", "type")
            return None
        if len(value) > MAX_LIST_ITEMS:
            problems.add(at, f"{at} may hold at most {MAX_LIST_ITEMS} items", "max_items")
            return None
        for index, item in enumerate(value):
            problem = _scalar_problem(item)
            if problem is not None:
                problems.add(f"{at}[{index}]", f"{at}[{index}] {problem}", "type")
                ok = False
        return Condition(str(name), operator, tuple(value)) if ok else None
    if value is None:
        problems.add(at, f"{at} is required", "required")
        return None
    problem = _scalar_problem(value)
    if problem is not None:
        problems.add(at, f"{at} {problem}", "type")
        return None
    return Condition(str(name), operator, value) if ok else None


def parse_conditions(raw: Any, where: str, problems: Problems) -> tuple[Condition, ...]:
    if not isinstance(raw, list):
        problems.wrong_type(where, "an array of conditions")
        return ()
    if len(raw) > MAX_CONDITIONS:
        problems.add(where, f"{where} may hold at most {MAX_CONDITIONS} conditions", "max_items")
        return ()
    parsed = [_parse_condition(item, f"{where}[{i}]", problems) for i, item in enumerate(raw)]
    return tuple(c for c in parsed if c is not None)


def parse_policy_body(body: Mapping[str, Any], stored: PolicyFields | None = None) -> PolicyFields:
    """An admin POST (`stored` None) or PUT body as PolicyFields.

    On PUT a key that is absent keeps its stored value (upstream-gaps C28); a key sent as null or
    "" counts as sent empty, so `entity`/`action` are then required. Raises InvalidPayload (400)
    or ValidationFailed (422) listing every problem of its kind.
    """
    reject_unknown(body, BODY_KEYS, READ_ONLY_KEYS)
    problems = Problems()

    def text(key: str, fallback: str | None) -> str:
        if key not in body and fallback is not None:
            return fallback
        value = body.get(key)
        if value is None or value == "":
            problems.add(key, f"{key} is required", "required")
            return ""
        if not isinstance(value, str):
            problems.wrong_type(key, "a string")
            return ""
        return value

    entity = text("entity", stored.entity if stored else None)
    if entity and not _NAME_RE.fullmatch(entity):
        problems.add("entity", f"entity must match {NAME_RULE}", "pattern")
    action = text("action", stored.action if stored else None)
    if action and action not in ACTIONS:
        problems.add("action", "action must be read, create, update, or delete", "enum")

    def listed(key: str, default: Any, parse: Any) -> Any:
        if key not in body:
            return default
        value = body[key]
        if value is None:
            return ()  # explicit null: none (upstream sends null for an empty list)
        return parse(value, key, problems)

    roles = listed("roles", stored.roles if stored else (), parse_roles)
    conditions = listed("conditions", stored.conditions if stored else (), parse_conditions)
    check = listed("check", stored.check if stored else (), parse_conditions)
    problems.raise_if_any()
    return PolicyFields(entity, action, roles, conditions, check)
