"""Permission enforcement for the data API: who may do what to which rows.

The model (spec auth-permissions.md, with upstream-gaps S4, S5, S6):

- whitelist: no policy for (entity, action) -> 403 `No permission for {action} on {entity}`;
  policies exist but none is for the caller's roles -> 403 `Permission denied for ...`;
- role `admin` bypasses everything (platform admins are app admins);
- the policies whose roles match the caller are ORed: one of them is enough;
- read: each matching policy's `conditions` (ANDed) is a row filter; the filters of the
  matching policies are ORed; a matching policy without conditions means no filter. The filter is
  one parameterised SQL condition added to list, count, get-by-id and include statements, and
  to the lookup of many-to-many link targets (a hidden row cannot be linked or unlinked);
- update / delete: a policy counts only when all its `conditions` hold on the *stored* row, read
  in the write transaction with `FOR UPDATE` (create ignores conditions, as the spec says);
- create / update: of the policies that count, at least one must have its `check` list hold on
  the *resulting* row, else 403 `Permission denied for {action} on {entity}` and the transaction
  is rolled back;
- `"$user.id"` as a condition value (or list item) is the caller's user id.

Two evaluators, as the spec has two: row filters compare in SQL with the field's type (exactly
like `filter[...]` of the data API); write conditions and checks compare in Python per the
spec's operator table (string forms for eq/neq/in/not_in, numbers for gt/gte/lt/lte, non-numeric
text counting as 0). Both fail closed: a condition on a field the entity does not have, with an
operator they do not know, or on a NULL value never holds; a filter value that cannot be a value
of the field's type matches nothing.

Everything here is derived from the immutable AppSnapshot; the small caches (grants per role set,
filter plans per entity, rendered SQL per filter shape) live on those immutable objects and go
away with them on the next reload.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any, Final, Literal

from psycopg import AsyncConnection, sql

from rocketd.auth.principal import Principal
from rocketd.capabilities.permissions.model import (
    LIST_OPERATORS,
    USER_ID_PLACEHOLDER,
    Condition,
    Policy,
    policy_from_row,
)
from rocketd.engine.read import query
from rocketd.engine.sql import compose as sc
from rocketd.errors import Forbidden
from rocketd.metadata.field_types import (
    JSON_TYPES,
    ValueProblem,
    coerce_filter_value,
    value_text,
)
from rocketd.metadata.model import Entity, Field
from rocketd.tracing import record_span, recording_span

Action = Literal["read", "create", "update", "delete"]
# The policies a write may rely on, None when it needs none (admin, or an unconditional grant).
Scope = tuple[Policy, ...] | None
RowFilter = tuple[sql.Composable, list[Any]]
IncludeWhere = Callable[[Entity, str | None], RowFilter | None]

_MAX_CACHED: Final = 4096
_CHECK: Final = ("auth", "permissions", "permission.check")
_DENIED: Final = ("auth", "permissions", "permission.denied")
_CHILD_ACTIONS: Final[dict[str, Action]] = {
    "insert": "create",
    "update": "update",
    "delete": "delete",
}


def no_permission(action: str, entity: str) -> Forbidden:
    return Forbidden(f"No permission for {action} on {entity}")


def denied(action: str, entity: str) -> Forbidden:
    return Forbidden(f"Permission denied for {action} on {entity}")


# --- the policies of one app ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Grant:
    """What the caller may rely on for one (entity, action): the matching policies, or bypass."""

    entity: str
    action: str
    policies: tuple[Policy, ...] = ()
    bypass: bool = False
    _plans: dict[tuple[int, str | None], tuple[Entity, _FilterPlan]] = field(
        default_factory=dict, repr=False
    )

    @property
    def unfiltered(self) -> bool:
        """Reads need no row filter (and writes no stored-row condition)."""
        return self.bypass or any(not p.conditions for p in self.policies)

    @property
    def unchecked(self) -> bool:
        """Some policy that needs nothing of the stored row needs nothing of the result either."""
        return self.bypass or any(not p.conditions and not p.check for p in self.policies)

    def plan(self, entity: Entity, qualifier: str | None) -> _FilterPlan:
        key = (id(entity), qualifier)
        hit = self._plans.get(key)
        if hit is not None and hit[0] is entity:
            return hit[1]
        built = _FilterPlan.build(entity, self.policies, qualifier)
        if len(self._plans) >= _MAX_CACHED:
            self._plans.clear()
        self._plans[key] = (entity, built)
        return built


BYPASS: Final = Grant("*", "*", bypass=True)


@dataclass(frozen=True, eq=False)
class PermissionSet:
    """The `_permissions` rows of one app, by (entity, action)."""

    policies: tuple[Policy, ...] = ()
    by_key: Mapping[tuple[str, str], tuple[Policy, ...]] = field(default_factory=dict)
    _grants: dict[tuple[str, str, frozenset[str]], Grant] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, policies: Iterable[Policy]) -> PermissionSet:
        ordered = tuple(policies)
        by_key: dict[tuple[str, str], list[Policy]] = {}
        for policy in ordered:
            by_key.setdefault((policy.entity, policy.action), []).append(policy)
        return cls(ordered, {k: tuple(v) for k, v in by_key.items()})

    def for_action(self, entity: str, action: str) -> tuple[Policy, ...]:
        return self.by_key.get((entity, action), ())

    def grant(self, role_keys: frozenset[str], entity: str, action: str) -> Grant:
        """The caller's grant (roles lower-cased), or 403 as the spec says."""
        key = (entity, action, role_keys)
        cached = self._grants.get(key)
        if cached is not None:
            return cached
        policies = self.for_action(entity, action)
        if not policies:
            raise no_permission(action, entity)
        matching = tuple(p for p in policies if p.matches(role_keys))
        if not matching:
            raise denied(action, entity)
        grant = Grant(entity, action, matching)
        if len(self._grants) >= _MAX_CACHED:
            self._grants.clear()
        self._grants[key] = grant
        return grant


EMPTY_PERMISSIONS: Final = PermissionSet()


async def load_permissions(conn: AsyncConnection[Any]) -> PermissionSet:
    """Every `_permissions` row, oldest first (rows that cannot grant anything are left out)."""
    cur = await conn.execute(
        "select id, entity, action, roles, conditions, checks from _permissions"
        " order by created_at, id"
    )
    policies = [policy_from_row(*row) for row in await cur.fetchall()]
    return PermissionSet.build(p for p in policies if p is not None)


# --- row filters (SQL, typed like filter[...]) ---------------------------------------------------


@dataclass(frozen=True)
class _Term:
    """One condition compiled against an entity: `field op %s`, FALSE, or IS NOT NULL."""

    field: str
    op: str  # an sql_compose operator, or "false"
    param: Any = None
    target: Field | None = None  # set when the value holds the caller placeholder
    raw: Any = None

    def resolve(self, user_id: str) -> tuple[str, Any]:
        if self.target is None:
            return self.op, self.param
        return _resolve(self.target, self.op, self.raw, user_id)


def _resolve(target: Field, op: str, raw: Any, user_id: str | None) -> tuple[str, Any]:
    """(operator, parameter) of `target op raw`, with the caller placeholder replaced.

    A value that cannot be a value of the field's type matches nothing: the term becomes FALSE
    (`neq` / `not_in`: such values are simply unequal, so only NULL is excluded)."""

    def coerce(value: Any) -> tuple[bool, Any]:
        if value == USER_ID_PLACEHOLDER and user_id is not None:
            value = user_id
        try:
            return True, coerce_filter_value(target, value_text(value))
        except ValueProblem:
            return False, None

    if op in LIST_OPERATORS:
        items = [v for ok, v in (coerce(item) for item in raw) if ok]
        if items:
            return op, items
        return ("false", None) if op == "in" else ("not_null", None)
    ok, param = coerce(raw)
    if ok:
        return op, param
    return ("not_null", None) if op == "neq" else ("false", None)


def _compile(entity: Entity, condition: Condition) -> _Term:
    target = entity.field_map.get(condition.field)
    if target is None or target.base_type in JSON_TYPES or condition.operator not in _SQL_OPERATORS:
        return _Term(condition.field, "false")
    if condition.uses_caller:
        return _Term(condition.field, condition.operator, target=target, raw=condition.value)
    op, param = _resolve(target, condition.operator, condition.value, None)
    return _Term(condition.field, op, param)


_SQL_OPERATORS: Final = frozenset({"eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte"})
_Shape = tuple[tuple[tuple[str, str], ...], ...]
_TEXTS: dict[tuple[_Shape, str | None], sql.SQL] = {}


def _render(shape: _Shape, qualifier: str | None) -> sql.SQL:
    key = (shape, qualifier)
    text = _TEXTS.get(key)
    if text is None:
        clauses: list[sql.Composable] = []
        for clause in shape:
            terms: list[sql.Composable] = []
            for name, op in clause:
                if op == "false":
                    terms.append(sql.SQL("FALSE"))
                else:
                    terms.append(sc.condition(name, op, qualifier=qualifier))
            clauses.append(sql.SQL("(") + sql.SQL(" AND ").join(terms) + sql.SQL(")"))
        # Rendered once per shape: the text is what psycopg prepares, so it must be stable.
        text = sql.SQL(sql.SQL(" OR ").join(clauses).as_string(None))
        if len(_TEXTS) >= _MAX_CACHED:
            _TEXTS.clear()
        _TEXTS[key] = text
    return text


@dataclass(frozen=True)
class _FilterPlan:
    """OR of the matching policies' ANDed conditions, compiled for one entity."""

    clauses: tuple[tuple[_Term, ...], ...]
    qualifier: str | None
    static: RowFilter | None  # when no term depends on the caller
    _per_user: dict[str, RowFilter] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(
        cls, entity: Entity, policies: Sequence[Policy], qualifier: str | None
    ) -> _FilterPlan:
        clauses = tuple(tuple(_compile(entity, c) for c in p.conditions) for p in policies)
        plan = cls(clauses, qualifier, None)
        if all(t.target is None for clause in clauses for t in clause):
            object.__setattr__(plan, "static", plan._render(""))
        return plan

    def render(self, user_id: str) -> RowFilter:
        if self.static is not None:
            return self.static
        cached = self._per_user.get(user_id)
        if cached is None:
            cached = self._render(user_id)
            if len(self._per_user) >= _MAX_CACHED:
                self._per_user.clear()
            self._per_user[user_id] = cached
        # A copy of the parameters: callers may extend the list.
        return cached[0], list(cached[1])

    def _render(self, user_id: str) -> RowFilter:
        shape: list[tuple[tuple[str, str], ...]] = []
        params: list[Any] = []
        for clause in self.clauses:
            terms: list[tuple[str, str]] = []
            for term in clause:
                op, param = term.resolve(user_id)
                terms.append((term.field, op))
                if op not in ("false", "not_null"):
                    params.append(param)
            shape.append(tuple(terms))
        return _render(tuple(shape), self.qualifier), params


# --- conditions on records (Python, the spec's operator table) -----------------------------------


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return 0.0
    if isinstance(value, int | float):
        number = float(value)
    else:
        try:
            number = float(value_text(value).strip())
        except (ValueError, OverflowError):
            return 0.0
    return number if math.isfinite(number) else 0.0


def holds(condition: Condition, record: Mapping[str, Any], user_id: str) -> bool:
    """Whether `condition` holds on `record` (an encoded record, JSON values)."""
    if condition.field not in record:
        return False
    actual = record[condition.field]
    if actual is None:
        return False

    def value_of(item: Any) -> Any:
        return user_id if item == USER_ID_PLACEHOLDER else item

    op = condition.operator
    if op in LIST_OPERATORS:
        if not isinstance(condition.value, tuple):
            return False
        found = value_text(actual) in {value_text(value_of(v)) for v in condition.value}
        return found if op == "in" else not found
    expected = value_of(condition.value)
    if op == "eq":
        return value_text(actual) == value_text(expected)
    if op == "neq":
        return value_text(actual) != value_text(expected)
    left, right = _number(actual), _number(expected)
    if op == "gt":
        return left > right
    if op == "gte":
        return left >= right
    if op == "lt":
        return left < right
    if op == "lte":
        return left <= right
    return False


def all_hold(conditions: Iterable[Condition], record: Mapping[str, Any], user_id: str) -> bool:
    return all(holds(c, record, user_id) for c in conditions)


# --- one caller ----------------------------------------------------------------------------------


class Access:
    """One caller's permissions in one app snapshot: the entry point of `records`."""

    def __init__(self, permissions: PermissionSet, principal: Principal) -> None:
        self.permissions = permissions
        self.user_id = principal.user_id
        self.bypass = principal.is_admin
        self._role_keys = frozenset(r.lower() for r in principal.roles)

    def grant(self, entity: str, action: Action) -> Grant:
        """The caller's grant for (entity, action); 403 when there is none. Every permission
        check passes here: a `permission.check` span (`permission.denied` on a 403) when traced."""
        parent = recording_span()
        if parent is None:
            return self._grant(entity, action)
        started = perf_counter_ns()  # a leaf span: the check starts nothing under it
        try:
            grant = self._grant(entity, action)
        except Forbidden as exc:
            metadata = {"action": action, "result": "denied"}
            record_span(parent, *_DENIED, started, entity=entity, metadata=metadata, error=exc)
            raise
        except BaseException as exc:
            metadata = {"action": action}
            record_span(parent, *_CHECK, started, entity=entity, metadata=metadata, error=exc)
            raise
        metadata = {"action": action, "result": "admin_bypass" if self.bypass else "allowed"}
        record_span(parent, *_CHECK, started, entity=entity, metadata=metadata)
        return grant

    def _grant(self, entity: str, action: Action) -> Grant:
        if self.bypass:
            return BYPASS
        return self.permissions.grant(self._role_keys, entity, action)

    # reads

    def read_filter(
        self, grant: Grant, entity: Entity, qualifier: str | None = None
    ) -> RowFilter | None:
        if grant.unfiltered:
            return None
        return grant.plan(entity, qualifier).render(self.user_id)

    def readable_includes(
        self, includes: Sequence[query.IncludeSpec], raw: str | None
    ) -> tuple[query.IncludeSpec, ...]:
        """Includes of entities the caller may read. A requested one the caller may not read
        is that 403; an eager one (not requested) is left out."""
        if self.bypass or not includes:
            return tuple(includes)
        requested = {item.strip() for item in (raw or "").split(",")}
        kept: list[query.IncludeSpec] = []
        for spec in includes:
            try:
                self.grant(spec.target.name, "read")
            except Forbidden:
                if spec.name in requested:
                    raise
                continue
            kept.append(spec)
        return tuple(kept)

    async def may_read(self, conn: AsyncConnection[Any], entity: Entity, pk: Any) -> bool:
        """Whether `pk` names a live row of `entity` that the caller may read: a read grant and
        its row filter, exactly as `GET /{entity}/{id}` would decide."""
        try:
            grant = self.grant(entity.name, "read")
        except Forbidden:
            return False
        row_filter = self.read_filter(grant, entity)
        where, params = row_filter if row_filter is not None else (None, ())
        row = await query.fetch_record_by_pk(
            conn, entity, pk, extra_where=where, extra_params=params
        )
        return row is not None

    def include_where(self) -> IncludeWhere | None:
        """The row filter of each included entity (called per include statement)."""
        if self.bypass:
            return None

        def where(target: Entity, qualifier: str | None) -> RowFilter | None:
            return self.read_filter(self.grant(target.name, "read"), target, qualifier)

        return where

    # writes

    def create_scope(self, grant: Grant) -> Scope:
        """Create ignores conditions (spec): every matching policy counts."""
        if grant.bypass or any(not p.check for p in grant.policies):
            return None
        return grant.policies

    def stored_scope(self, grant: Grant, entity: Entity, stored: Mapping[str, Any]) -> Scope:
        """The policies whose conditions hold on the stored row (a DB row); 403 when none."""
        if grant.unchecked:
            return None
        record = query.encode_record(entity, stored)
        scope = tuple(p for p in grant.policies if all_hold(p.conditions, record, self.user_id))
        if not scope:
            raise denied(grant.action, entity.name)
        if any(not p.check for p in scope):
            return None
        return scope

    def check_result(self, scope: Scope, action: str, entity: Entity, record: Any) -> None:
        """403 unless one policy of the scope has its `check` hold on the resulting record."""
        if scope is None:
            return
        if not any(all_hold(p.check, record, self.user_id) for p in scope):
            raise denied(action, entity.name)
