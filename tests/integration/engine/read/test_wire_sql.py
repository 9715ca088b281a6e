"""PostgreSQL-written record JSON (`rocketd.engine.wire_sql`) against the Python encoders.

One scratch database with a table holding every field type, in the column types rocketd creates
and in the other types an imported table may have (naive timestamps, dates under timestamp
fields, integer columns under decimal fields, varchar, real, json), filled with edge values. The
same page read through `list_records` (Python decodes and encodes) and `list_records_json`
(PostgreSQL writes the JSON) must give equal JSON, whatever the session time zone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql

from rocketd.db.introspect import column_types
from rocketd.engine.read import wire_sql
from rocketd.engine.read.query import list_records, list_records_json, parse_list_query
from rocketd.http.responses import dumps
from rocketd.metadata.model import Entity, Field, PrimaryKey
from rocketd.metadata.registry import Registry
from tests.support.databases import scratch_database

THING = Entity(
    "thing",
    "things",
    PrimaryKey("id", "uuid"),
    (
        Field("id", "uuid"),
        Field("name", "string"),
        Field("note", "text"),
        Field("short", "string"),
        Field("count", "int"),
        Field("big", "bigint"),
        Field("ratio", "float"),
        Field("single", "float"),
        Field("price", "decimal", precision=2),
        Field("whole", "decimal"),
        Field("flag", "boolean"),
        Field("at", "timestamp"),
        Field("naive", "timestamp"),
        Field("day_as_ts", "timestamp"),
        Field("day", "date"),
        Field("doc", "json"),
        Field("plain_json", "json"),
        Field("upload", "file"),
    ),
    soft_delete=True,
)
REGISTRY = Registry({"thing": THING}, {})

DDL = """
create table things (
  id uuid primary key, name text, note text, short varchar(20), count integer, big bigint,
  ratio double precision, single real, price numeric(18,2), whole integer, flag boolean,
  at timestamptz, naive timestamp, day_as_ts date, day date, doc jsonb, plain_json json,
  upload jsonb, deleted_at timestamptz
);
insert into things values
  ('00000000-0000-0000-0000-000000000001', 'plain', 'multi
line "quoted" \\ back', 'v', 1, 9223372036854775807, 0.1, 1.5, 12.50, 7, true,
   '2026-02-22 10:15:30.123456+00', '2026-02-22 10:15:30', '2026-02-22', '2026-02-22',
   '{"a": [1, 2.5, "x"], "b": null}', '[1, "two"]', '{"id": "f", "size": 3}', null),
  ('00000000-0000-0000-0000-000000000002', E'tab\\tnul-free \\u00e9 \\U0001F600 \\u0001',
   '', '', -2147483648, -9223372036854775808, 'NaN', 'Infinity', -0.01, 0, false,
   '0999-01-01 00:00:00+00', '2026-02-22 23:59:59.000001', '1970-01-01', '0001-01-01',
   '{}', 'null', null, null),
  ('00000000-0000-0000-0000-000000000003', null, null, null, null, null, '-Infinity', -0.0,
   null, null, null, '2026-06-30 23:59:59.5+00', null, null, null, null, null, null, null),
  ('00000000-0000-0000-0000-000000000004', 'x', 'y', 'z', 0, 0, 1e300, 3.4e38, 0, -5, true,
   '2026-02-22 10:15:30+05:30', '2000-01-01 00:00:00.100000', '2026-12-31', '2026-12-31',
   '1.0', '{"nested": {"deep": [true, false]}}', '[]', null);
"""


@pytest.fixture(scope="module")
def database(pg_dsn: str) -> Iterator[str]:
    with scratch_database(pg_dsn, "rkt_wire", lambda conn: conn.execute(DDL)) as dsn:
        yield dsn


@pytest.fixture(params=["UTC", "Asia/Kolkata", "America/St_Johns"])
async def conn(database: str, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as c:
        await c.execute(sql.SQL("set timezone = {}").format(sql.Literal(request.param)))
        yield c


async def _types(conn: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((await column_types(conn, ["things"]))["things"].items()))


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "id"},
        {"sort": "-at", "per_page": "2"},
        {"sort": "id", "page": "2", "per_page": "3"},
        {"filter[flag]": "true", "sort": "name"},
        {"filter[name]": "nothing-matches"},
    ],
)
async def test_postgres_json_equals_the_python_encoding(conn: Any, params: dict[str, str]) -> None:
    spec = parse_list_query(REGISTRY, THING, params)
    records, total = await list_records(conn, REGISTRY, THING, spec)
    answer = await list_records_json(conn, THING, spec, await _types(conn))
    assert answer is not None
    encoded, wire_total = answer
    assert wire_total == total
    # Compare what a client parses from each: the Python side goes through the response encoder.
    assert [orjson.loads(item) for item in encoded] == orjson.loads(dumps(records))


async def test_edge_values_come_out_as_the_contract_says(conn: Any) -> None:
    spec = parse_list_query(REGISTRY, THING, {"sort": "id"})
    answer = await list_records_json(conn, THING, spec, await _types(conn))
    assert answer is not None
    first, second, third, fourth = (orjson.loads(item) for item in answer[0])
    assert first["at"] == "2026-02-22T10:15:30.123456Z" and first["naive"] == "2026-02-22T10:15:30Z"
    assert first["day_as_ts"] == "2026-02-22T00:00:00Z" and first["day"] == "2026-02-22"
    assert first["price"] == "12.50" and first["whole"] == "7" and first["big"] == 2**63 - 1
    assert first["doc"] == {"a": [1, 2.5, "x"], "b": None} and first["upload"]["size"] == 3
    assert second["ratio"] is None and second["single"] is None and third["ratio"] is None
    assert second["at"] == "0999-01-01T00:00:00Z" and second["day"] == "0001-01-01"
    assert second["naive"] == "2026-02-22T23:59:59.000001Z" and second["price"] == "-0.01"
    assert third["at"] == "2026-06-30T23:59:59.500000Z"
    assert (
        fourth["at"] == "2026-02-22T04:45:30Z" and fourth["naive"] == "2000-01-01T00:00:00.100000Z"
    )
    assert "deleted_at" in first and first["deleted_at"] is None  # the hidden column, as Python


def test_an_uncovered_column_type_means_the_python_path() -> None:
    types = {name: "text" for name in THING.output_columns}
    assert wire_sql.record_json(THING, types, "_p") is None  # uuid id in a text column


async def test_list_records_json_answers_none_for_uncovered_types(conn: Any) -> None:
    spec = parse_list_query(REGISTRY, THING, {})
    types = tuple((name, "money") for name in THING.output_columns)
    assert await list_records_json(conn, THING, spec, types) is None
