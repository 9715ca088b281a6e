"""`POST /api/{app}/_admin/rules/test`: one rule evaluated against a record the admin supplies,
with nothing read from or written to the app's tables but the rule's `related_load` queries.

The admin UI's "test this rule" panel uses it, and so can any client: it answers what a write
would meet (the violations, the values computed rules would set) using the same parser and
evaluator as the write pipeline, so the answer cannot drift from what a real write does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from rocketd.capabilities.rules.evaluate import evaluate_rules, load_related
from rocketd.capabilities.rules.model import parse_rule, rule_problems_in
from rocketd.engine.record_state import RecordState, native_value
from rocketd.errors import ErrorDetail, InvalidPayload, ValidationFailed
from rocketd.http.bodies import read_json_object
from rocketd.http.keys import APP_ACTOR
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import app_admin, principal_of
from rocketd.http.responses import data
from rocketd.metadata.field_types import ValueProblem, coerce_write_value
from rocketd.metadata.model import Entity

TEST_KEYS = ("rule", "record", "old", "action")
ACTIONS = ("create", "update", "delete")


def _values(entity: Entity, raw: object, key: str) -> dict[str, Any]:
    """A record given as JSON, as the write pipeline's parameters (422 for what does not fit)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidPayload("Invalid JSON body", [ErrorDetail(f"{key} must be an object", key)])
    problems: list[ErrorDetail] = []
    values: dict[str, Any] = {}
    for name, value in raw.items():
        field = entity.field_map.get(name)
        if field is None:
            problems.append(ErrorDetail(f"Unknown field: {name}", f"{key}.{name}", "unknown"))
            continue
        try:
            values[name] = coerce_write_value(field, value)
        except ValueProblem as problem:
            problems.append(ErrorDetail(problem.message, f"{key}.{name}", problem.rule))
    if problems:
        raise ValidationFailed(details=problems)
    return values


@app_admin
async def test_rule(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    unknown = sorted(set(body) - set(TEST_KEYS))
    if unknown:
        raise InvalidPayload(
            "Invalid JSON body", [ErrorDetail(f"unknown key: {k}", k) for k in unknown]
        )
    rule = parse_rule(body.get("rule"))
    actor = request[APP_ACTOR]
    registry = actor.snapshot.registry
    problems = rule_problems_in(registry, rule)
    if problems:
        raise ValidationFailed(details=problems)
    entity = registry.entity(rule.entity)
    assert entity is not None  # rule_problems_in reports an unknown entity
    action = body.get("action") or ("delete" if rule.hook == "before_delete" else "create")
    if action not in ACTIONS:
        raise InvalidPayload(
            "Invalid JSON body", [ErrorDetail("action must be create, update or delete", "action")]
        )
    record = _values(entity, body.get("record"), "record")
    old = _values(entity, body.get("old"), "old")
    principal = principal_of(request)
    if action == "delete":
        state = RecordState.for_record(entity, action, {**old, **record}, old or None, principal)
    else:
        state = RecordState.for_write(entity, action, record, old or None, principal)
    async with actor.pool.connection() as conn:
        related = await load_related(conn, registry, entity, state.db, list(rule.related_load))
    outcome = evaluate_rules([rule], state, related)
    return data(
        {
            "passed": not outcome.violations,
            "violations": [d.to_json() for d in outcome.violations],
            "computed": {k: native_value(v) for k, v in state.assigned.items()},
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post(f"{APP_PATH}/_admin/rules/test", test_rule)
