"""delete_record on a real PostgreSQL: soft/hard, every on_delete policy on 1:N and m:n,
recursion, restrict rolling back cascades, the target side and cycles.

Each test gets a scratch database with plain DDL and drops it afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from rocketd.engine.write.deletes import delete_record
from rocketd.errors import Conflict, NotFound
from rocketd.metadata.model import Entity, Field, PrimaryKey, Relation
from rocketd.metadata.registry import Registry
from tests.support.databases import drop_databases, dsn_for

PK = PrimaryKey("id", "uuid", generated=True)
ID = Field("id", "uuid", required=True)


def _entity(name: str, table: str, *fields: str, soft: bool = False) -> Entity:
    return Entity(
        name,
        table,
        PK,
        (ID, *(Field(f, "uuid" if f.endswith("_id") else "string") for f in fields)),
        soft_delete=soft,
    )


def _children(name: str, source: str, target: str, fk: str, on_delete: str) -> Relation:
    return Relation(name, "one_to_many", source, target, target_key=fk, on_delete=on_delete)


def _links(name: str, source: str, target: str, on_delete: str) -> Relation:
    return Relation(
        name,
        "many_to_many",
        source,
        target,
        join_table=name,
        source_join_key=f"{source}_id",
        target_join_key=f"{target}_id",
        on_delete=on_delete,
    )


ENTITIES = (
    _entity("author", "authors", "name"),
    _entity("book", "books", "title", "author_id", soft=True),
    _entity("chapter", "chapters", "title", "book_id"),
    _entity("review", "reviews", "text", "book_id"),
    _entity("loan", "loans", "who", "book_id"),
    _entity("memo", "memos", "text", "author_id"),
    _entity("tag", "tags", "name"),
    _entity("genre", "genres", "name", soft=True),
    _entity("category", "categories", "name", "parent_id"),
    _entity("ping", "pings", "name", "pong_id"),
    _entity("pong", "pongs", "name", "ping_id"),
)
RELATIONS = (
    _children("author_books", "author", "book", "author_id", "cascade"),
    _children("author_memos", "author", "memo", "author_id", "detach"),
    _children("book_chapters", "book", "chapter", "book_id", "cascade"),
    _children("book_loans", "book", "loan", "book_id", "restrict"),
    _children("book_reviews", "book", "review", "book_id", "set_null"),
    _links("book_tags", "book", "tag", "detach"),
    _links("book_genres", "book", "genre", "set_null"),
    _links("author_awards", "author", "tag", "restrict"),
    _links("author_pins", "author", "tag", "cascade"),
    _children("category_children", "category", "category", "parent_id", "cascade"),
    _children("ping_pongs", "ping", "pong", "ping_id", "cascade"),
    _children("pong_pings", "pong", "ping", "pong_id", "cascade"),
)
REGISTRY = Registry({e.name: e for e in ENTITIES}, {r.name: r for r in RELATIONS})


def _ddl() -> str:
    statements = []
    for e in ENTITIES:
        columns = ["id uuid PRIMARY KEY DEFAULT gen_random_uuid()"]
        columns += [f"{f.name} {'uuid' if f.type == 'uuid' else 'text'}" for f in e.fields[1:]]
        if e.soft_delete:
            columns.append("deleted_at timestamptz")
        statements.append(f"CREATE TABLE {e.table} ({', '.join(columns)})")
    for r in RELATIONS:
        if r.many_to_many:
            statements.append(
                f"CREATE TABLE {r.join_table} ({r.source_join_key} uuid NOT NULL,"
                f" {r.target_join_key} uuid NOT NULL,"
                f" PRIMARY KEY ({r.source_join_key}, {r.target_join_key}))"
            )
    return ";\n".join(statements)


@pytest.fixture
async def conn(pg_dsn: str) -> AsyncIterator[AsyncConnection[Any]]:
    name = f"rkt_w_{secrets.token_hex(5)}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        async with await AsyncConnection.connect(dsn_for(pg_dsn, name), autocommit=True) as c:
            await c.execute(_ddl())
            yield c
    finally:
        drop_databases(pg_dsn, [name])


async def insert(conn: AsyncConnection[Any], table: str, **values: Any) -> Any:
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, values)),
        sql.SQL(", ").join(sql.Placeholder() * len(values)),
    )
    cur = await conn.execute(query, tuple(values.values()))
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def link(conn: AsyncConnection[Any], join_table: str, source: Any, target: Any) -> None:
    await conn.execute(
        sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(sql.Identifier(join_table)),
        (source, target),
    )


async def rows(conn: AsyncConnection[Any], query: str, *params: Any) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def count(conn: AsyncConnection[Any], query: str, *params: Any) -> int:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def delete(
    conn: AsyncConnection[Any], entity: str, pk: Any, registry: Registry = REGISTRY
) -> None:
    target = registry.entity(entity)
    assert target is not None
    async with conn.transaction():
        await delete_record(conn, registry, target, {"id": pk, "name": "ignored"})


async def library(conn: AsyncConnection[Any]) -> dict[str, Any]:
    """An author with two books (chapters, reviews, tags, genres), a memo, an award, a pin."""
    ids: dict[str, Any] = {"author": await insert(conn, "authors", name="Ann")}
    ids["tag"] = await insert(conn, "tags", name="t")
    ids["genre"] = await insert(conn, "genres", name="g")
    ids["memo"] = await insert(conn, "memos", text="m", author_id=ids["author"])
    for n in (1, 2):
        book = ids[f"book{n}"] = await insert(conn, "books", title=f"B{n}", author_id=ids["author"])
        await insert(conn, "chapters", title=f"B{n}C1", book_id=book)
        await insert(conn, "chapters", title=f"B{n}C2", book_id=book)
        ids[f"review{n}"] = await insert(conn, "reviews", text="r", book_id=book)
        await link(conn, "book_tags", book, ids["tag"])
        await link(conn, "book_genres", book, ids["genre"])
    await link(conn, "author_pins", ids["author"], ids["tag"])
    return ids


async def test_hard_delete_cascades_recursively_through_soft_and_hard_children(
    conn: AsyncConnection[Any],
) -> None:
    ids = await library(conn)
    await delete(conn, "author", ids["author"])
    assert await count(conn, "SELECT count(*) FROM authors") == 0
    # books are soft-delete: soft-deleted, and their own policies applied in turn
    assert await count(conn, "SELECT count(*) FROM books WHERE deleted_at IS NULL") == 0
    assert await count(conn, "SELECT count(*) FROM books") == 2
    assert await count(conn, "SELECT count(*) FROM chapters") == 0  # cascade (hard target)
    assert await count(conn, "SELECT count(*) FROM reviews WHERE book_id IS NULL") == 2  # set_null
    assert await count(conn, "SELECT count(*) FROM book_tags") == 0  # m:n detach
    assert await count(conn, "SELECT count(*) FROM book_genres") == 0  # m:n set_null = detach
    assert await count(conn, "SELECT count(*) FROM author_pins") == 0  # m:n cascade: join rows
    assert await count(conn, "SELECT count(*) FROM tags") == 1  # ... never the targets
    memo = await rows(conn, "SELECT author_id FROM memos")
    assert memo == [{"author_id": ids["author"]}]  # 1:N detach: untouched


async def test_soft_delete_sets_deleted_at_once_and_then_is_404(conn: AsyncConnection[Any]) -> None:
    ids = await library(conn)
    await delete(conn, "book", ids["book1"])
    (book,) = await rows(conn, "SELECT deleted_at FROM books WHERE id = %s", ids["book1"])
    assert book["deleted_at"] is not None
    assert await count(conn, "SELECT count(*) FROM chapters") == 2  # only book2's remain
    with pytest.raises(NotFound) as exc:
        await delete(conn, "book", ids["book1"])
    assert exc.value.message == f"book with id {ids['book1']} not found"


async def test_cascade_leaves_already_soft_deleted_children_alone(
    conn: AsyncConnection[Any],
) -> None:
    ids = await library(conn)
    await conn.execute(
        "UPDATE books SET deleted_at = '2001-01-01T00:00:00Z' WHERE id = %s", (ids["book1"],)
    )
    await delete(conn, "author", ids["author"])
    (book,) = await rows(conn, "SELECT deleted_at FROM books WHERE id = %s", ids["book1"])
    assert book["deleted_at"].year == 2001
    # chapters of the previously soft-deleted book are not reached by the cascade
    assert await count(conn, "SELECT count(*) FROM chapters") == 2


async def test_restrict_deep_in_a_cascade_rolls_back_everything(conn: AsyncConnection[Any]) -> None:
    ids = await library(conn)
    await insert(conn, "loans", who="Bob", book_id=ids["book2"])
    with pytest.raises(Conflict) as exc:
        await delete(conn, "author", ids["author"])
    assert exc.value.message == "Cannot delete: 1 related loan records exist"
    assert await count(conn, "SELECT count(*) FROM authors") == 1
    assert await count(conn, "SELECT count(*) FROM books WHERE deleted_at IS NULL") == 2
    assert await count(conn, "SELECT count(*) FROM chapters") == 4
    assert await count(conn, "SELECT count(*) FROM reviews WHERE book_id IS NOT NULL") == 2
    assert await count(conn, "SELECT count(*) FROM author_pins") == 1


async def test_many_to_many_restrict_counts_join_rows(conn: AsyncConnection[Any]) -> None:
    ids = await library(conn)
    other = await insert(conn, "tags", name="u")
    await link(conn, "author_awards", ids["author"], ids["tag"])
    await link(conn, "author_awards", ids["author"], other)
    with pytest.raises(Conflict) as exc:
        await delete(conn, "author", ids["author"])
    assert exc.value.message == "Cannot delete: 2 related tag records exist"


async def test_hard_deleting_a_target_removes_links_pointing_at_it(
    conn: AsyncConnection[Any],
) -> None:
    ids = await library(conn)
    await delete(conn, "tag", ids["tag"])
    assert await count(conn, "SELECT count(*) FROM book_tags") == 0
    assert await count(conn, "SELECT count(*) FROM author_pins") == 0


async def test_soft_deleting_a_target_keeps_links_pointing_at_it(
    conn: AsyncConnection[Any],
) -> None:
    ids = await library(conn)
    await delete(conn, "genre", ids["genre"])
    assert await count(conn, "SELECT count(*) FROM book_genres") == 2


async def test_self_referencing_cycle_is_deleted_once(conn: AsyncConnection[Any]) -> None:
    a = await insert(conn, "categories", name="a")
    b = await insert(conn, "categories", name="b", parent_id=a)
    c = await insert(conn, "categories", name="c", parent_id=b)
    await conn.execute("UPDATE categories SET parent_id = %s WHERE id = %s", (c, a))
    untouched = await insert(conn, "categories", name="other")
    await delete(conn, "category", a)
    assert [r["id"] for r in await rows(conn, "SELECT id FROM categories")] == [untouched]


async def test_cycle_between_two_entities_terminates(conn: AsyncConnection[Any]) -> None:
    ping = await insert(conn, "pings", name="ping")
    pong = await insert(conn, "pongs", name="pong", ping_id=ping)
    await conn.execute("UPDATE pings SET pong_id = %s", (pong,))
    await delete(conn, "ping", ping)
    assert await count(conn, "SELECT count(*) FROM pings") == 0
    assert await count(conn, "SELECT count(*) FROM pongs") == 0


async def test_restrict_does_not_count_rows_this_delete_is_removing(
    conn: AsyncConnection[Any],
) -> None:
    relations = {r.name: r for r in RELATIONS}
    relations["pong_pings"] = _children("pong_pings", "pong", "ping", "pong_id", "restrict")
    registry = Registry(REGISTRY.entities, relations)
    ping = await insert(conn, "pings", name="ping")
    pong = await insert(conn, "pongs", name="pong", ping_id=ping)
    await conn.execute("UPDATE pings SET pong_id = %s", (pong,))
    await delete(conn, "ping", ping, registry)  # the only ping referring to pong is `ping` itself
    assert await count(conn, "SELECT count(*) FROM pongs") == 0

    ping = await insert(conn, "pings", name="ping")
    pong = await insert(conn, "pongs", name="pong", ping_id=ping)
    await insert(conn, "pings", name="bystander", pong_id=pong)
    with pytest.raises(Conflict) as exc:
        await delete(conn, "ping", ping, registry)
    assert exc.value.message == "Cannot delete: 1 related ping records exist"
