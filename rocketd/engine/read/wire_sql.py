"""SQL that writes records in their wire JSON form, so PostgreSQL can answer a list page as text.

A list page without includes is sent the way PostgreSQL writes it: each record is one
`row_to_json` value built from per-column expressions that give exactly the JSON the Python
encoders (`rocketd.engine.values`) give for the same value — uuid and decimal as strings,
timestamps in UTC with `Z` and six fraction digits unless the fraction is zero, dates as
`YYYY-MM-DD`, JSON columns embedded, NaN and infinite floats as null (orjson's choice). The
Python side then only joins the records' bytes; no value is decoded or re-encoded.

The expression depends on the column's type in the database, not only on the field type: a
column of a type these expressions do not cover (an imported table, a hand-made change) makes
`record_json` answer None, and the caller uses the Python path for that entity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from psycopg import sql

from rocketd.engine.sql.compose import ident
from rocketd.metadata.model import DELETED_AT, Entity

_WHOLE_SECONDS: Final = sql.Literal('YYYY-MM-DD"T"HH24:MI:SS"Z"')
_WITH_FRACTION: Final = sql.Literal('YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
_DAY: Final = sql.Literal("YYYY-MM-DD")

Expression = Callable[[sql.Composable], sql.Composable]

_INTEGERS: Final = ("smallint", "integer", "bigint")
_TEXTS: Final = ("text", "character varying")
_FLOATS: Final = ("double precision", "real")
_JSONS: Final = ("jsonb", "json")
_TIMESTAMPTZ: Final = "timestamp with time zone"
_TIMESTAMP: Final = "timestamp without time zone"


def _same(column: sql.Composable) -> sql.Composable:
    return column


def _as_text(column: sql.Composable) -> sql.Composable:
    return sql.SQL("{}::text").format(column)


def _finite_float(column: sql.Composable) -> sql.Composable:
    # float8 also for a real column: Python reads a real as a double, and prints all its digits.
    return sql.SQL(
        "CASE WHEN {c} IN ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8) THEN NULL"
        " ELSE {c}::float8 END"
    ).format(c=column)


def _utc_text(naive_utc: sql.Composable) -> sql.Composable:
    # Python's isoformat() drops the fraction only when it is zero, else prints six digits.
    return sql.SQL(
        "to_char({u}, CASE WHEN date_trunc('second', {u}) = {u} THEN {whole} ELSE {fraction} END)"
    ).format(u=naive_utc, whole=_WHOLE_SECONDS, fraction=_WITH_FRACTION)


def _timestamptz(column: sql.Composable) -> sql.Composable:
    return _utc_text(sql.SQL("({} AT TIME ZONE 'UTC')").format(column))


def _midnight(column: sql.Composable) -> sql.Composable:
    return sql.SQL("(to_char({}, {}) || 'T00:00:00Z')").format(column, _DAY)


def _day(column: sql.Composable) -> sql.Composable:
    return sql.SQL("to_char({}, {})").format(column, _DAY)


def _table() -> dict[tuple[str, str], Expression]:
    table: dict[tuple[str, str], Expression] = {("uuid", "uuid"): _as_text}
    for field_type in ("string", "text"):
        table.update({(field_type, t): _same for t in _TEXTS})
    table.update({("int", t): _same for t in _INTEGERS})
    table.update({("bigint", t): _same for t in _INTEGERS})
    table.update({("float", t): _finite_float for t in _FLOATS})
    table.update({("decimal", t): _as_text for t in ("numeric", *_INTEGERS)})
    table[("boolean", "boolean")] = _same
    # A naive timestamp is taken as UTC, as the Python encoder does.
    table[("timestamp", _TIMESTAMPTZ)] = _timestamptz
    table[("timestamp", _TIMESTAMP)] = lambda c: _utc_text(c)
    table[("timestamp", "date")] = _midnight
    table[("date", "date")] = _day
    for field_type in ("json", "file"):
        table.update({(field_type, t): _same for t in _JSONS})
    return table


# (field type, column type) -> expression. Anything else is not covered (see the docstring).
_EXPRESSIONS: Final = _table()


def record_json(
    entity: Entity, column_types: Mapping[str, str], qualifier: str
) -> sql.Composable | None:
    """`(SELECT <expr> AS "name", ...)`: a one-row subquery whose `row_to_json` is the record's
    wire JSON, reading the columns of the table alias `qualifier`; None when a column's type in
    the database is not covered."""
    items: list[sql.Composable] = []
    types = {f.name: f.base_type for f in entity.fields}
    for name in entity.output_columns:
        field_type = types.get(name, "timestamp" if name == DELETED_AT else "")
        expression = _EXPRESSIONS.get((field_type, column_types.get(name, "")))
        if expression is None:
            return None
        items.append(sql.SQL("{} AS {}").format(expression(ident(name, qualifier)), ident(name)))
    return sql.SQL("(SELECT ") + sql.SQL(", ").join(items) + sql.SQL(")")
