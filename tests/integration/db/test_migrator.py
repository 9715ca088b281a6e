"""Auto-migration against a real PostgreSQL: tables, columns, widening, refusals (which must leave
the database exactly as it was), renames, join tables and foreign-key indexes."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection, sql
from psycopg.conninfo import make_conninfo

from rocketd.db.introspect import introspect_indexes, introspect_table
from rocketd.db.migrator import index_name, migrate_entity, migrate_relation
from rocketd.errors import ValidationFailed
from rocketd.metadata.model import Entity, Field, PrimaryKey, Relation


@pytest.fixture
async def conn(pg_dsn: str) -> AsyncIterator[AsyncConnection[Any]]:
    """An autocommit connection to a scratch database (`rkt_mig_<hex>`), dropped afterwards."""
    name = f"rkt_mig_{secrets.token_hex(6)}"
    async with await AsyncConnection.connect(pg_dsn, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        async with await AsyncConnection.connect(
            make_conninfo(pg_dsn, dbname=name), autocommit=True
        ) as connection:
            yield connection
    finally:
        async with await AsyncConnection.connect(pg_dsn, autocommit=True) as admin:
            await admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


class Entities:
    """The registry side `migrate_relation` needs."""

    def __init__(self, *entities: Entity) -> None:
        self.by_name = {e.name: e for e in entities}

    def entity(self, name: str) -> Entity | None:
        return self.by_name.get(name)


def post(*fields: Field, table: str = "posts", soft_delete: bool = False) -> Entity:
    return Entity(
        name="post",
        table=table,
        primary_key=PrimaryKey("id", "int", True),
        fields=(Field("id", "int"), *fields),
        soft_delete=soft_delete,
    )


async def migrate(conn: AsyncConnection[Any], old: Entity | None, new: Entity) -> list[str]:
    """As the admin routes do: inside a transaction the caller owns."""
    async with conn.transaction():
        return await migrate_entity(conn, old, new)


async def rows(conn: AsyncConnection[Any], query: str, *params: Any) -> list[tuple[Any, ...]]:
    cur = await conn.execute(query, params or None)
    return await cur.fetchall()


async def schema_snapshot(conn: AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    """Every column, index and table of schema public, to prove a refusal changed nothing."""
    columns = await rows(
        conn,
        "select table_name, column_name, data_type, is_nullable, column_default"
        " from information_schema.columns where table_schema = 'public'"
        " order by table_name, ordinal_position",
    )
    indexes = await rows(
        conn, "select indexname, indexdef from pg_indexes where schemaname = 'public' order by 1"
    )
    return [*columns, *indexes]


async def column_type(conn: AsyncConnection[Any], table: str, column: str) -> str:
    columns = await introspect_table(conn, table)
    assert columns is not None
    return columns[column].data_type


# --------------------------------------------------------------------------------- create


async def test_create_table_then_insert_uses_identity_and_typed_defaults(
    conn: AsyncConnection[Any],
) -> None:
    entity = post(
        Field("title", "string", required=True),
        Field("status", "string", default="draft"),
        Field("views", "bigint", default=0),
        Field("price", "decimal", precision=2, default="9.5"),
        Field("ratio", "float", default=0.25),
        Field("published", "boolean", default=False),
        Field("ref", "uuid", default="8e0b6b4f-4d43-4a5a-9c43-3f8e6c2c1a11"),
        Field("at", "timestamp", default="2024-05-01T12:00:00Z"),
        Field("day", "date", default="2024-02-29"),
        Field("meta", "json", default={"tags": ["a"]}),
        Field("cover", "file"),
        Field("created_at", "timestamp", auto="create"),
    )
    assert await migrate(conn, None, entity) == []
    await conn.execute("insert into posts (title) values ('one'), ('two')")
    got = await rows(
        conn,
        "select id, status, views, price, ratio, published, ref::text, at, day::text, meta,"
        " cover, created_at from posts order by id",
    )
    assert [r[0] for r in got] == [1, 2]
    first = got[0]
    assert first[1:6] == ("draft", 0, Decimal("9.50"), 0.25, False)
    assert first[6] == "8e0b6b4f-4d43-4a5a-9c43-3f8e6c2c1a11"
    assert first[7].isoformat() == "2024-05-01T12:00:00+00:00"
    assert first[8:11] == ("2024-02-29", {"tags": ["a"]}, None)
    assert first[11] is None  # auto fields get no DDL default: the engine writes them
    with pytest.raises(psycopg.errors.NotNullViolation):
        async with conn.transaction():
            await conn.execute("insert into posts (status) values ('x')")


async def test_uuid_key_is_generated_by_the_database(conn: AsyncConnection[Any]) -> None:
    entity = Entity(
        "tag", "tags", PrimaryKey("id", "uuid", True), (Field("id", "uuid"), Field("n", "text"))
    )
    await migrate(conn, None, entity)
    cur = await conn.execute("insert into tags (n) values ('x') returning id")
    row = await cur.fetchone()
    assert row is not None and len(str(row[0])) == 36


async def test_hostile_default_is_stored_literally(conn: AsyncConnection[Any]) -> None:
    await conn.execute("create table y (a int)")
    hostile = "x'); drop table y; -- %s %(a)s \\ \""
    await migrate(conn, None, post(Field("s", "string", default=hostile)))
    await conn.execute("insert into posts default values")
    assert await rows(conn, "select s from posts") == [(hostile,)]
    assert await introspect_table(conn, "y") is not None


async def test_soft_delete_column_and_partial_index(conn: AsyncConnection[Any]) -> None:
    await migrate(conn, None, post(Field("slug", "string", unique=True), soft_delete=True))
    assert await column_type(conn, "posts", "deleted_at") == "timestamp with time zone"
    [(definition,)] = await rows(
        conn, "select indexdef from pg_indexes where indexname = 'idx_posts_deleted_at'"
    )
    assert definition.endswith("WHERE (deleted_at IS NULL)")
    [(unique_definition,)] = await rows(
        conn, "select indexdef from pg_indexes where indexname = 'idx_posts_slug'"
    )
    assert unique_definition.startswith("CREATE UNIQUE INDEX") and "WHERE" not in unique_definition


async def test_long_names_get_hashed_index_names_that_exist(conn: AsyncConnection[Any]) -> None:
    table = "t" * 63
    field = "f" * 63
    await migrate(conn, None, post(Field(field, "text", unique=True), table=table))
    names = {i.name for i in await introspect_indexes(conn, table)}
    assert index_name(table, field) in names
    assert len(index_name(table, field)) <= 63


# --------------------------------------------------------------------------------- update


async def test_add_columns_with_data_present(conn: AsyncConnection[Any]) -> None:
    old = post(Field("title", "string"))
    await migrate(conn, None, old)
    await conn.execute("insert into posts (title) values ('a'), ('b')")
    new = post(
        Field("title", "string"),
        Field("summary", "text", required=True),
        Field("status", "string", required=True, default="draft"),
        Field("score", "int"),
    )
    notes = await migrate(conn, old, new)
    assert any("summary" in n and "nullable" in n for n in notes)
    assert await rows(conn, "select title, summary, status, score from posts order by id") == [
        ("a", None, "draft", None),
        ("b", None, "draft", None),
    ]
    columns = await introspect_table(conn, "posts")
    assert columns is not None
    assert not columns["summary"].not_null and columns["status"].not_null
    # Once the rows are filled in, saving the entity again makes the column NOT NULL.
    await conn.execute("update posts set summary = 'filled'")
    assert await migrate(conn, new, new) == []
    columns = await introspect_table(conn, "posts")
    assert columns is not None and columns["summary"].not_null


async def test_widening_int_to_bigint_keeps_data(conn: AsyncConnection[Any]) -> None:
    old = post(Field("views", "int"))
    await migrate(conn, None, old)
    await conn.execute("insert into posts (views) values (7), (2147483647)")
    await migrate(
        conn,
        Entity("post", "posts", PrimaryKey("id", "int", True), old.fields),
        Entity(
            "post",
            "posts",
            PrimaryKey("id", "bigint", True),
            (Field("id", "bigint"), Field("views", "bigint")),
        ),
    )
    assert await column_type(conn, "posts", "views") == "bigint"
    assert await column_type(conn, "posts", "id") == "bigint"
    await conn.execute("insert into posts (views) values (9000000000)")
    assert await rows(conn, "select id, views from posts order by id") == [
        (1, 7),
        (2, 2147483647),
        (3, 9000000000),
    ]


async def test_refused_narrowing_leaves_the_table_unchanged(conn: AsyncConnection[Any]) -> None:
    old = post(Field("views", "bigint"))
    await migrate(conn, None, old)
    await conn.execute("insert into posts (views) values (1)")
    before = await schema_snapshot(conn)
    new = post(Field("views", "int"), Field("extra", "text", unique=True))
    with pytest.raises(ValidationFailed) as caught:
        await migrate(conn, old, new)
    assert caught.value.status == 422
    assert "field views" in caught.value.message
    assert [d.field for d in caught.value.details] == ["views"]
    assert await schema_snapshot(conn) == before


async def test_not_null_refused_when_nulls_exist(conn: AsyncConnection[Any]) -> None:
    old = post(Field("title", "string"))
    await migrate(conn, None, old)
    await conn.execute("insert into posts (title) values ('a'), (null)")
    before = await schema_snapshot(conn)
    with pytest.raises(ValidationFailed) as caught:
        await migrate(conn, old, post(Field("title", "string", required=True)))
    assert caught.value.details[0].field == "title"
    assert caught.value.details[0].rule == "required"
    assert await schema_snapshot(conn) == before


async def test_unique_refused_when_duplicates_exist(conn: AsyncConnection[Any]) -> None:
    old = post(Field("slug", "string"))
    await migrate(conn, None, old)
    await conn.execute("insert into posts (slug) values ('a'), ('a'), (null), (null)")
    before = await schema_snapshot(conn)
    with pytest.raises(ValidationFailed) as caught:
        await migrate(conn, old, post(Field("slug", "string", unique=True)))
    assert "field slug: cannot make it unique" in caught.value.message
    assert await schema_snapshot(conn) == before
    # NULLs are not duplicates; once the values differ the index is created.
    await conn.execute("update posts set slug = 'b' where id = 2")
    await migrate(conn, old, post(Field("slug", "string", unique=True)))
    with pytest.raises(psycopg.errors.UniqueViolation):
        async with conn.transaction():
            await conn.execute("insert into posts (slug) values ('a')")


async def test_failure_during_execution_rolls_back_every_statement(
    conn: AsyncConnection[Any],
) -> None:
    old = post(Field("title", "string"))
    await migrate(conn, None, old)
    await conn.execute("insert into posts (title) values ('a'), ('b')")
    before = await schema_snapshot(conn)
    # Both rows get the same default, so the unique index fails after the column was added.
    new = post(Field("title", "string"), Field("code", "string", unique=True, default="same"))
    async with conn.transaction():
        await conn.execute("insert into posts (title) values ('in the caller transaction')")
        with pytest.raises(ValidationFailed) as caught:
            await migrate_entity(conn, old, new)
        # The caller's transaction is still usable and keeps its own work.
        assert await rows(conn, "select count(*) from posts") == [(3,)]
    assert caught.value.details[0].field == "code"
    assert await schema_snapshot(conn) == before


async def test_unique_turned_off_drops_the_index_and_removed_fields_keep_data(
    conn: AsyncConnection[Any],
) -> None:
    old = post(Field("slug", "string", unique=True), Field("legacy", "text", required=True))
    await migrate(conn, None, old)
    await conn.execute("insert into posts (slug, legacy) values ('a', 'kept')")
    notes = await migrate(conn, old, post(Field("slug", "string")))
    assert any("no longer unique" in n for n in notes)
    assert any("legacy" in n and "kept" in n for n in notes)
    assert "idx_posts_slug" not in {i.name for i in await introspect_indexes(conn, "posts")}
    await conn.execute("insert into posts (slug) values ('a')")
    assert await rows(conn, "select slug, legacy from posts order by id") == [
        ("a", "kept"),
        ("a", None),
    ]


async def test_rename_keeps_data_and_renames_indexes(conn: AsyncConnection[Any]) -> None:
    old = post(Field("slug", "string", unique=True), soft_delete=True)
    await migrate(conn, None, old)
    await conn.execute("insert into posts (slug) values ('a')")
    notes = await migrate(
        conn, old, post(Field("slug", "string", unique=True), table="articles", soft_delete=True)
    )
    assert any("renamed" in n for n in notes)
    assert await introspect_table(conn, "posts") is None
    assert await rows(conn, "select id, slug from articles") == [(1, "a")]
    names = {i.name for i in await introspect_indexes(conn, "articles")}
    assert {"idx_articles_slug", "idx_articles_deleted_at"} <= names
    await conn.execute("insert into articles (slug) values ('b')")  # identity still works


async def test_rename_onto_an_existing_table_is_refused(conn: AsyncConnection[Any]) -> None:
    old = post()
    await migrate(conn, None, old)
    await conn.execute("create table articles (id int primary key)")
    before = await schema_snapshot(conn)
    with pytest.raises(ValidationFailed) as caught:
        await migrate(conn, old, post(table="articles"))
    assert caught.value.details[0].field == "table"
    assert await schema_snapshot(conn) == before


async def test_new_entity_adopts_a_compatible_table(conn: AsyncConnection[Any]) -> None:
    await conn.execute(
        "create table posts (id int primary key, title varchar(20) not null, n integer)"
    )
    await conn.execute("insert into posts values (1, 'kept', 5)")
    await migrate(
        conn,
        None,
        Entity(
            "post",
            "posts",
            PrimaryKey("id", "int", False),
            (
                Field("id", "int"),
                Field("title", "string", required=True),
                Field("n", "bigint"),
                Field("extra", "text"),
            ),
        ),
    )
    assert await rows(conn, "select id, title, n, extra from posts") == [(1, "kept", 5, None)]
    assert await column_type(conn, "posts", "title") == "text"


async def test_new_entity_refuses_an_incompatible_table(conn: AsyncConnection[Any]) -> None:
    await conn.execute("create table posts (id int primary key, title jsonb)")
    before = await schema_snapshot(conn)
    with pytest.raises(ValidationFailed) as caught:
        await migrate(conn, None, post(Field("title", "string"), Field("new_one", "text")))
    assert "field title" in caught.value.message
    assert await schema_snapshot(conn) == before


# ------------------------------------------------------------------------------- relations


async def test_many_to_many_join_table(conn: AsyncConnection[Any]) -> None:
    posts = post()
    tag = Entity("tag", "tags", PrimaryKey("id", "uuid", True), (Field("id", "uuid"),))
    await migrate(conn, None, posts)
    await migrate(conn, None, tag)
    relation = Relation(
        "post_tags",
        "many_to_many",
        "post",
        "tag",
        join_table="post_tags",
        source_join_key="post_id",
        target_join_key="tag_id",
    )
    registry = Entities(posts, tag)
    async with conn.transaction():
        await migrate_relation(conn, registry, relation)
    assert await column_type(conn, "post_tags", "post_id") == "integer"
    assert await column_type(conn, "post_tags", "tag_id") == "uuid"
    indexes = {i.name: i for i in await introspect_indexes(conn, "post_tags")}
    assert indexes["idx_post_tags_tag_id"].columns == ("tag_id",)
    assert any(i.primary and i.columns == ("post_id", "tag_id") for i in indexes.values())
    await conn.execute("insert into post_tags values (1, gen_random_uuid())")
    # Running it again (relation update) changes nothing.
    before = await schema_snapshot(conn)
    async with conn.transaction():
        await migrate_relation(conn, registry, relation)
    assert await schema_snapshot(conn) == before


async def test_existing_incompatible_join_table_is_refused(conn: AsyncConnection[Any]) -> None:
    posts = post()
    tag = Entity("tag", "tags", PrimaryKey("id", "uuid", True), (Field("id", "uuid"),))
    await conn.execute("create table post_tags (post_id int, tag_id text)")
    before = await schema_snapshot(conn)
    relation = Relation(
        "post_tags",
        "many_to_many",
        "post",
        "tag",
        join_table="post_tags",
        source_join_key="post_id",
        target_join_key="tag_id",
    )
    with pytest.raises(ValidationFailed) as caught:
        async with conn.transaction():
            await migrate_relation(conn, Entities(posts, tag), relation)
    assert [d.field for d in caught.value.details] == ["target_join_key"]
    assert await schema_snapshot(conn) == before


async def test_one_to_many_creates_the_foreign_key_index(conn: AsyncConnection[Any]) -> None:
    posts = post()
    comment = Entity(
        "comment",
        "comments",
        PrimaryKey("id", "int", True),
        (Field("id", "int"), Field("post_id", "int")),
    )
    await migrate(conn, None, posts)
    await migrate(conn, None, comment)
    relation = Relation("post_comments", "one_to_many", "post", "comment", target_key="post_id")
    async with conn.transaction():
        await migrate_relation(conn, Entities(posts, comment), relation)
    indexes = {i.name: i for i in await introspect_indexes(conn, "comments")}
    assert indexes["idx_comments_post_id"].columns == ("post_id",)
    assert not indexes["idx_comments_post_id"].unique
    before = await schema_snapshot(conn)
    async with conn.transaction():
        await migrate_relation(conn, Entities(posts, comment), relation)
    assert await schema_snapshot(conn) == before
    # Making the foreign key unique replaces the plain index by a unique one of the same name.
    await migrate(conn, comment, Entity(
        "comment",
        "comments",
        PrimaryKey("id", "int", True),
        (Field("id", "int"), Field("post_id", "int", unique=True)),
    ))  # fmt: skip
    indexes = {i.name: i for i in await introspect_indexes(conn, "comments")}
    assert indexes["idx_comments_post_id"].unique
