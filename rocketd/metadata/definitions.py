"""Reading the definitions of expression-bearing metadata: rules, state machines, workflows.

The helpers here are what those parsers share, so that every kind reports problems the same way:
the top level of an admin body checked for unknown keys and JSON types (400), expressions
compiled once with their first error line (422 via `Problems`), names, messages, literal values
checked against a field's type, and the loading of stored rows into a snapshot part (rows that no
longer parse or fit the metadata are skipped and described, never fatal). Pure: no database, no
HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final, Protocol, TypeVar

from rocketd.errors import ErrorDetail, InvalidPayload
from rocketd.expressions import Expression, ExpressionError, compile_expression
from rocketd.metadata.field_types import ValueProblem, coerce_write_value
from rocketd.metadata.model import DELETED_AT, Entity, Field
from rocketd.metadata.parse import MetadataError, Problems, is_blank, is_valid_name, join_path
from rocketd.metadata.registry import Registry

# Keys of a stored row that are not part of a definition.
ROW_KEYS: Final = frozenset({"id", "created_at", "updated_at"})


class _Identified(Protocol):
    """A parsed definition: a frozen dataclass with an `id` (set from the stored row)."""

    @property
    def id(self) -> str: ...


_Item = TypeVar("_Item", bound=_Identified)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_body(data: object, allowed: frozenset[str], types: Mapping[str, type]) -> dict[str, Any]:
    """The top level of an admin body: an object with known keys of the right JSON types (400)."""
    if not isinstance(data, dict):
        raise InvalidPayload("Invalid JSON body", [ErrorDetail("body must be a JSON object")])
    details: list[ErrorDetail] = []
    known = allowed | ROW_KEYS
    for key in sorted(k for k in data if k not in known):
        details.append(
            ErrorDetail(
                f"unknown field '{key}'; allowed: {', '.join(sorted(allowed))}", key, "unknown"
            )
        )
    names = {str: "a string", int: "an integer", bool: "true or false", dict: "an object"}
    for key, expected in types.items():
        value = data.get(key)
        if value is None:
            continue
        wrong = not isinstance(value, expected) or (expected is int and isinstance(value, bool))
        if wrong:
            details.append(ErrorDetail(f"{key} must be {names[expected]}", key, "type"))
    if details:
        raise InvalidPayload("Invalid JSON body", details)
    return data


def compile_checked(source: object, path: str, problems: Problems) -> Expression | None:
    """The compiled expression, or None after reporting `invalid expression: ...`."""
    if not isinstance(source, str) or not source.strip():
        problems.add(path, f"{path} must be a non-empty expression string")
        return None
    try:
        return compile_expression(source)
    except ExpressionError as exc:
        # The first line: message, position and an excerpt (the caret line is for terminals).
        problems.add(path, f"invalid expression: {str(exc).splitlines()[0]}")
        return None


def message_of(data: Mapping[str, Any], path: str, problems: Problems) -> str:
    value = data.get("message")
    if is_blank(value):
        return ""
    if not isinstance(value, str):
        problems.add(join_path(path, "message"), f"{join_path(path, 'message')} must be a string")
        return ""
    return value


def field_name_of(
    data: Mapping[str, Any], key: str, path: str, problems: Problems, what: str
) -> str:
    where = join_path(path, key)
    value = data.get(key)
    if is_blank(value):
        problems.add(where, f"{where} is required ({what})")
        return ""
    if not is_valid_name(value):
        problems.add(where, f"{where} must be a field name, got {value!r}")
        return ""
    assert isinstance(value, str)
    return value


def computed_writable(entity: Entity, name: str, operation: str) -> bool:
    """Whether a computed rule or set_field action may write `name` for this operation."""
    if name == DELETED_AT:
        return False
    allowed = entity.writable_on_create if operation == "create" else entity.writable_on_update
    return name in allowed


def literal_problem(target: Field, value: Any) -> str | None:
    try:
        coerce_write_value(target, value)
    except ValueProblem as problem:
        return problem.message
    return None


def load_row(
    parse: Callable[[object], _Item],
    check: Callable[[Registry, _Item], list[ErrorDetail]],
    registry: Registry,
    row: Mapping[str, Any],
    kind: str,
    problems: list[str],
) -> _Item | None:
    """The parsed row with its id, or None after describing why it is skipped."""
    row_id = str(row.get("id", ""))
    body = {key: row.get(key) for key in row if key not in ROW_KEYS}
    try:
        parsed = parse(body)
    except (MetadataError, InvalidPayload) as exc:
        problems.append(f"{kind} {row_id} skipped: {describe(exc.details) or exc.message}")
        return None
    found = check(registry, parsed)
    if found:
        problems.append(f"{kind} {row_id} skipped: {describe(found)}")
        return None
    return replace(parsed, id=row_id)  # type: ignore[type-var]  # a dataclass, see _Identified


def describe(details: Sequence[ErrorDetail]) -> str:
    return "; ".join(d.message for d in details)
