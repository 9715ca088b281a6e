"""Executing write plans on a real PostgreSQL: flat and nested creates and updates, write modes,
many-to-many links, rollbacks, database-error mapping and slug uniqueness.

Each test gets a scratch database with plain DDL (what the migrator would create) and drops it.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from rocketd.engine.write.writes import (
    BatchFailed,
    NestedEffects,
    execute_create,
    execute_update,
    plan_create,
    plan_update,
)
from rocketd.errors import ApiError, Conflict, NotFound, ValidationFailed
from rocketd.metadata.model import Entity, Field, PrimaryKey, Relation, SlugConfig
from rocketd.metadata.registry import Registry
from tests.support.databases import drop_databases, dsn_for

GENERATED = PrimaryKey("id", "uuid", generated=True)
ID = Field("id", "uuid", required=True)

ENTITIES = (
    Entity(
        "invoice",
        "invoices",
        GENERATED,
        (
            ID,
            Field("number", "string", required=True),
            Field("status", "string", default="draft", enum=("draft", "sent", "paid")),
            Field("customer_email", "string", unique=True),
            Field("created_at", "timestamp", auto="create"),
            Field("updated_at", "timestamp", auto="update"),
        ),
    ),
    Entity(
        "line",
        "lines",
        GENERATED,
        (
            ID,
            Field("invoice_id", "uuid", required=True),
            Field("description", "string", required=True),
            Field("qty", "int", default=1),
            Field("sku", "string", unique=True),
        ),
        soft_delete=True,
    ),
    Entity(
        "line_note",
        "line_notes",
        GENERATED,
        (ID, Field("line_id", "uuid", required=True), Field("text", "string", required=True)),
    ),
    Entity("tag", "tags", GENERATED, (ID, Field("name", "string", required=True))),
    # Client-supplied PK; `label` is NOT NULL in the table but not required in the metadata.
    Entity(
        "part",
        "parts",
        PrimaryKey("code", "string"),
        (
            Field("code", "string", required=True),
            Field("label", "string"),
            Field("invoice_id", "uuid"),
        ),
    ),
    Entity(
        "post",
        "posts",
        GENERATED,
        (
            ID,
            Field("title", "string", required=True),
            Field("slug", "string", required=True, unique=True),
            Field("code", "string", unique=True),
        ),
        slug=SlugConfig("slug", "title", regenerate_on_update=True),
    ),
    Entity(
        "page",
        "pages",
        GENERATED,
        (
            ID,
            Field("title", "string", required=True),
            Field("slug", "string", unique=True),
        ),
        slug=SlugConfig("slug", "title"),
    ),
)
RELATIONS = (
    Relation("invoice_lines", "one_to_many", "invoice", "line", target_key="invoice_id"),
    Relation("line_notes", "one_to_many", "line", "line_note", target_key="line_id"),
    Relation("invoice_parts", "one_to_many", "invoice", "part", target_key="invoice_id"),
    Relation(
        "invoice_tags",
        "many_to_many",
        "invoice",
        "tag",
        join_table="invoice_tags",
        source_join_key="invoice_id",
        target_join_key="tag_id",
    ),
)
REGISTRY = Registry({e.name: e for e in ENTITIES}, {r.name: r for r in RELATIONS})

DDL = """
CREATE TABLE invoices (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), number text NOT NULL,
  status text DEFAULT 'draft', customer_email text, created_at timestamptz, updated_at timestamptz);
CREATE UNIQUE INDEX idx_invoices_customer_email ON invoices (customer_email);
CREATE TABLE lines (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), invoice_id uuid NOT NULL,
  description text NOT NULL, qty integer DEFAULT 1, sku text, deleted_at timestamptz);
CREATE UNIQUE INDEX idx_lines_sku ON lines (sku);
CREATE TABLE line_notes (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), line_id uuid NOT NULL,
  text text NOT NULL);
CREATE TABLE tags (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL);
CREATE TABLE invoice_tags (invoice_id uuid NOT NULL, tag_id uuid NOT NULL,
  PRIMARY KEY (invoice_id, tag_id));
CREATE TABLE parts (code text PRIMARY KEY, label text NOT NULL, invoice_id uuid);
CREATE TABLE posts (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), title text NOT NULL,
  slug text NOT NULL, code text);
CREATE UNIQUE INDEX idx_posts_slug ON posts (slug);
CREATE UNIQUE INDEX idx_posts_code ON posts (code);
CREATE TABLE pages (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), title text NOT NULL, slug text);
CREATE UNIQUE INDEX idx_pages_slug ON pages (slug);
"""


@pytest.fixture
async def conn(pg_dsn: str) -> AsyncIterator[AsyncConnection[Any]]:
    name = f"rkt_w_{secrets.token_hex(5)}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        async with await AsyncConnection.connect(dsn_for(pg_dsn, name), autocommit=True) as c:
            await c.execute(DDL)
            yield c
    finally:
        drop_databases(pg_dsn, [name])


def _entity(name: str) -> Entity:
    entity = REGISTRY.entity(name)
    assert entity is not None
    return entity


async def create(conn: AsyncConnection[Any], entity: str, body: dict[str, Any]) -> Any:
    """The new row's primary key (the INSERT returns the whole row: checked below)."""
    target = _entity(entity)
    plan = plan_create(REGISTRY, target, body)
    async with conn.transaction():
        row = await execute_create(conn, REGISTRY, plan)
    return row[target.pk.name]


async def update(conn: AsyncConnection[Any], entity: str, pk: Any, body: dict[str, Any]) -> None:
    plan = plan_update(REGISTRY, _entity(entity), body)
    async with conn.transaction():
        await execute_update(conn, REGISTRY, plan, pk)


async def rows(conn: AsyncConnection[Any], query: str, *params: Any) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


def details(exc: pytest.ExceptionInfo[ApiError]) -> list[dict[str, str]]:
    return [d.to_json() for d in exc.value.details]


def _two_lines_with_one_sku() -> dict[str, Any]:
    """An invoice whose two new lines share a unique `sku`: the second one fails."""
    return {
        "number": "INV-1",
        "invoice_lines": {
            "data": [{"description": "a", "sku": "S"}, {"description": "b", "sku": "S"}]
        },
    }


async def invoice_with_lines(
    conn: AsyncConnection[Any], *descriptions: str
) -> tuple[Any, list[Any]]:
    pk = await create(
        conn,
        "invoice",
        {"number": "INV-1", "invoice_lines": {"data": [{"description": d} for d in descriptions]}},
    )
    found = await rows(conn, "SELECT id FROM lines WHERE invoice_id = %s ORDER BY description", pk)
    return pk, [r["id"] for r in found]


async def live_lines(conn: AsyncConnection[Any], invoice: Any) -> list[str]:
    found = await rows(
        conn,
        "SELECT description FROM lines WHERE invoice_id = %s AND deleted_at IS NULL"
        " ORDER BY description",
        invoice,
    )
    return [r["description"] for r in found]


# --- flat writes --------------------------------------------------------------------------------


async def test_create_flat_record_applies_defaults_and_auto_timestamps(
    conn: AsyncConnection[Any],
) -> None:
    pk = await create(conn, "invoice", {"number": "INV-1", "id": str(uuid.uuid4())})
    (row,) = await rows(conn, "SELECT * FROM invoices")
    assert row["id"] == pk
    assert (row["number"], row["status"]) == ("INV-1", "draft")
    assert row["created_at"] is not None and row["updated_at"] is not None


async def test_update_sets_only_given_fields_and_bumps_auto_update(
    conn: AsyncConnection[Any],
) -> None:
    pk = await create(conn, "invoice", {"number": "INV-1", "customer_email": "a@b.c"})
    (before,) = await rows(conn, "SELECT * FROM invoices")
    await update(conn, "invoice", pk, {"status": "paid", "created_at": "2000-01-01T00:00:00Z"})
    (after,) = await rows(conn, "SELECT * FROM invoices")
    assert (after["status"], after["customer_email"]) == ("paid", "a@b.c")
    assert after["created_at"] == before["created_at"]
    assert after["updated_at"] > before["updated_at"]


async def test_insert_and_update_return_the_row_as_stored(conn: AsyncConnection[Any]) -> None:
    """The record of a write comes from RETURNING, not a re-read: it must be the stored row."""
    entity = _entity("invoice")
    async with conn.transaction():
        created = await execute_create(
            conn, REGISTRY, plan_create(REGISTRY, entity, {"number": "INV-9"})
        )
    (stored,) = await rows(conn, "SELECT * FROM invoices")
    assert created == {name: stored[name] for name in entity.output_columns}
    async with conn.transaction():
        updated = await execute_update(
            conn, REGISTRY, plan_update(REGISTRY, entity, {"status": "sent"}), created["id"]
        )
        nothing = await execute_update(
            conn, REGISTRY, plan_update(REGISTRY, entity, {}), created["id"]
        )
    (stored,) = await rows(conn, "SELECT * FROM invoices")
    assert updated == {name: stored[name] for name in entity.output_columns}
    assert updated is not None and updated["status"] == "sent"
    assert updated["updated_at"] > created["updated_at"]
    # An update that sets nothing runs no UPDATE and returns nothing; `updated_at` is `auto`
    # here, so pick an entity without one.
    tag = await create(conn, "tag", {"name": "t"})
    async with conn.transaction():
        assert (
            await execute_update(conn, REGISTRY, plan_update(REGISTRY, _entity("tag"), {}), tag)
            is None
        )
    assert nothing is not None  # invoice has `updated_at` (auto): its UPDATE always runs


async def test_update_with_nothing_to_set_writes_nothing(conn: AsyncConnection[Any]) -> None:
    pk = await create(conn, "tag", {"name": "a"})
    (before,) = await rows(conn, "SELECT xmin::text AS x FROM tags")
    await update(conn, "tag", pk, {"id": str(uuid.uuid4())})
    (after,) = await rows(conn, "SELECT xmin::text AS x FROM tags")
    assert after == before


async def test_update_of_a_missing_or_soft_deleted_row_is_404(conn: AsyncConnection[Any]) -> None:
    _, (line,) = await invoice_with_lines(conn, "a")
    await conn.execute("UPDATE lines SET deleted_at = now()")
    with pytest.raises(NotFound):
        await update(conn, "line", line, {"qty": 3})
    with pytest.raises(NotFound):
        await update(conn, "invoice", uuid.uuid4(), {"status": "paid"})


async def test_unique_violation_on_the_record_is_409_naming_the_field(
    conn: AsyncConnection[Any],
) -> None:
    await create(conn, "invoice", {"number": "INV-1", "customer_email": "a@b.c"})
    with pytest.raises(Conflict) as exc:
        await create(conn, "invoice", {"number": "INV-2", "customer_email": "a@b.c"})
    assert exc.value.message == "A record with this value already exists"
    assert [(d["field"], d["rule"]) for d in details(exc)] == [("customer_email", "unique")]
    assert len(await rows(conn, "SELECT id FROM invoices")) == 1


# --- nested creates ------------------------------------------------------------------------------


async def test_create_parent_children_and_grandchildren_in_one_go(
    conn: AsyncConnection[Any],
) -> None:
    body = {
        "number": "INV-1",
        "invoice_lines": {
            "data": [
                {
                    "description": "a",
                    "qty": 2,
                    "line_notes": {"data": [{"text": "n1"}, {"text": "n2"}]},
                },
                {"description": "b", "invoice_id": str(uuid.uuid4())},
            ]
        },
    }
    pk = await create(conn, "invoice", body)
    lines = await rows(conn, "SELECT * FROM lines ORDER BY description")
    assert [(r["description"], r["qty"], r["invoice_id"]) for r in lines] == [
        ("a", 2, pk),
        ("b", 1, pk),
    ]
    notes = await rows(conn, "SELECT * FROM line_notes ORDER BY text")
    assert [(n["text"], n["line_id"]) for n in notes] == [
        ("n1", lines[0]["id"]),
        ("n2", lines[0]["id"]),
    ]


async def test_a_failing_child_rolls_back_the_parent(conn: AsyncConnection[Any]) -> None:
    body = _two_lines_with_one_sku()
    with pytest.raises(Conflict) as exc:
        await create(conn, "invoice", body)
    assert [(d["field"], d["rule"]) for d in details(exc)] == [("invoice_lines[1].sku", "unique")]
    assert await rows(conn, "SELECT id FROM invoices") == []
    assert await rows(conn, "SELECT id FROM lines") == []


async def test_batched_children_are_one_insert_with_the_same_rows(
    conn: AsyncConnection[Any],
) -> None:
    body = {
        "number": "INV-1",
        "invoice_lines": {
            "data": [{"description": "a", "qty": 2}, {"description": "b", "qty": 3, "sku": "S"}]
        },
    }
    plan = plan_create(REGISTRY, _entity("invoice"), body)
    effects = NestedEffects()
    async with conn.transaction():
        row = await execute_create(conn, REGISTRY, plan, batch_children=True, effects=effects)
    lines = await rows(conn, "SELECT * FROM lines ORDER BY description")
    assert [(r["description"], r["qty"], r["sku"], r["invoice_id"]) for r in lines] == [
        ("a", 2, None, row["id"]),
        ("b", 3, "S", row["id"]),
    ]
    assert effects.parent_untouched  # only new children: the INSERT's row is still current


async def test_children_with_different_columns_or_grandchildren_are_not_batched(
    conn: AsyncConnection[Any],
) -> None:
    body = {
        "number": "INV-1",
        "invoice_lines": {
            "data": [
                {"description": "a", "line_notes": {"data": [{"text": "n1"}]}},
                {"description": "b"},
            ]
        },
    }
    plan = plan_create(REGISTRY, _entity("invoice"), body)
    async with conn.transaction():
        await execute_create(conn, REGISTRY, plan, batch_children=True)
    notes = await rows(
        conn, "SELECT l.description FROM line_notes n JOIN lines l ON l.id = n.line_id"
    )
    assert [n["description"] for n in notes] == ["a"]
    assert len(await rows(conn, "SELECT id FROM lines")) == 2


async def test_a_failing_batch_raises_batch_failed_and_writes_nothing(
    conn: AsyncConnection[Any],
) -> None:
    body = _two_lines_with_one_sku()
    plan = plan_create(REGISTRY, _entity("invoice"), body)
    with pytest.raises(BatchFailed) as exc:
        async with conn.transaction():
            await execute_create(conn, REGISTRY, plan, batch_children=True)
    assert isinstance(exc.value.__cause__, psycopg.errors.UniqueViolation)
    assert await rows(conn, "SELECT id FROM invoices") == []


async def test_updates_and_deletes_of_children_mark_the_parent_for_a_re_read(
    conn: AsyncConnection[Any],
) -> None:
    pk, line_ids = await invoice_with_lines(conn, "a", "b")
    body = {"invoice_lines": {"data": [{"id": str(line_ids[0]), "description": "a2"}]}}
    effects = NestedEffects()
    async with conn.transaction():
        await execute_update(
            conn,
            REGISTRY,
            plan_update(REGISTRY, _entity("invoice"), body),
            pk,
            batch_children=True,
            effects=effects,
        )
    assert not effects.parent_untouched


async def test_database_not_null_violation_in_a_child_is_422_required(
    conn: AsyncConnection[Any],
) -> None:
    with pytest.raises(ValidationFailed) as exc:
        await create(conn, "invoice", {"number": "I", "invoice_parts": {"data": [{"code": "p1"}]}})
    assert [(d["field"], d["rule"]) for d in details(exc)] == [
        ("invoice_parts[0].label", "required")
    ]
    assert await rows(conn, "SELECT id FROM invoices") == []


async def test_generated_pk_in_a_new_parents_children_is_not_a_child(
    conn: AsyncConnection[Any],
) -> None:
    _, (line,) = await invoice_with_lines(conn, "a")
    body = {"number": "INV-2", "invoice_lines": {"data": [{"id": str(line), "qty": 9}]}}
    with pytest.raises(ValidationFailed) as exc:
        await create(conn, "invoice", body)
    assert [(d["field"], d["rule"]) for d in details(exc)] == [("invoice_lines[0]", "not_child")]
    assert len(await rows(conn, "SELECT id FROM invoices")) == 1


# --- nested updates: 1:N modes -----------------------------------------------------------------


async def test_diff_updates_inserts_and_soft_deletes_children(conn: AsyncConnection[Any]) -> None:
    invoice, (a, b, _c) = await invoice_with_lines(conn, "a", "b", "c")
    body = {
        "invoice_lines": {
            "data": [
                {"id": str(a), "description": "a2"},
                {"description": "d"},
                {"id": str(b), "_delete": True},
            ]
        }
    }
    await update(conn, "invoice", invoice, body)
    assert await live_lines(conn, invoice) == ["a2", "c", "d"]
    (deleted,) = await rows(conn, "SELECT deleted_at FROM lines WHERE id = %s", b)
    assert deleted["deleted_at"] is not None  # soft-delete target: soft-deleted


async def test_replace_removes_missing_children_and_honours_delete(
    conn: AsyncConnection[Any],
) -> None:
    invoice, (a, b, _c) = await invoice_with_lines(conn, "a", "b", "c")
    body = {
        "invoice_lines": {
            "_write_mode": "replace",
            "data": [
                {"id": str(a), "qty": 5},
                {"id": str(b), "_delete": True},
                {"description": "d"},
            ],
        }
    }
    await update(conn, "invoice", invoice, body)
    assert await live_lines(conn, invoice) == ["a", "d"]
    (row,) = await rows(conn, "SELECT qty FROM lines WHERE id = %s", a)
    assert row["qty"] == 5


async def test_append_only_inserts_new_children(conn: AsyncConnection[Any]) -> None:
    invoice, (a, b) = await invoice_with_lines(conn, "a", "b")
    body = {
        "invoice_lines": {
            "_write_mode": "append",
            "data": [
                {"id": str(a), "description": "changed"},
                {"id": str(b), "_delete": True},
                {"description": "c"},
            ],
        }
    }
    await update(conn, "invoice", invoice, body)
    assert await live_lines(conn, invoice) == ["a", "b", "c"]


async def test_a_pk_that_is_not_a_current_child_is_422_and_nothing_is_written(
    conn: AsyncConnection[Any],
) -> None:
    mine, _ = await invoice_with_lines(conn, "mine")
    _, (theirs,) = await invoice_with_lines(conn, "theirs")
    for item in (
        {"id": str(theirs), "description": "hijacked"},
        {"id": str(theirs), "_delete": True},
    ):
        body = {"number": "CHANGED", "invoice_lines": {"data": [{"description": "new"}, item]}}
        with pytest.raises(ValidationFailed) as exc:
            await update(conn, "invoice", mine, body)
        assert details(exc) == [
            {
                "field": "invoice_lines[1]",
                "rule": "not_child",
                "message": "invoice_lines[1] is not a child of this record",
            }
        ]
    assert [r["number"] for r in await rows(conn, "SELECT number FROM invoices")] == ["INV-1"] * 2
    found = await rows(conn, "SELECT description, deleted_at FROM lines ORDER BY description")
    assert [(r["description"], r["deleted_at"]) for r in found] == [
        ("mine", None),
        ("theirs", None),
    ]


async def test_nested_update_reaches_grandchildren(conn: AsyncConnection[Any]) -> None:
    invoice, (line,) = await invoice_with_lines(conn, "a")
    body = {
        "invoice_lines": {
            "data": [{"id": str(line), "line_notes": {"data": [{"text": "late note"}]}}]
        }
    }
    await update(conn, "invoice", invoice, body)
    notes = await rows(conn, "SELECT text, line_id FROM line_notes")
    assert [(n["text"], n["line_id"]) for n in notes] == [("late note", line)]


async def test_client_supplied_child_pk_is_inserted_when_new_and_updated_when_current(
    conn: AsyncConnection[Any],
) -> None:
    invoice = await create(conn, "invoice", {"number": "I"})
    parts = {"invoice_parts": {"data": [{"code": "p1", "label": "one"}]}}
    await update(conn, "invoice", invoice, parts)
    await update(
        conn, "invoice", invoice, {"invoice_parts": {"data": [{"code": "p1", "label": "uno"}]}}
    )
    found = await rows(conn, "SELECT code, label, invoice_id FROM parts")
    assert [(r["code"], r["label"], r["invoice_id"]) for r in found] == [("p1", "uno", invoice)]
    # Another parent naming the same code tries to insert it: the PK is taken.
    other = await create(conn, "invoice", {"number": "J"})
    with pytest.raises(Conflict) as exc:
        await update(conn, "invoice", other, parts)
    assert [(d["field"], d["rule"]) for d in details(exc)] == [("invoice_parts[0].code", "unique")]


# --- many-to-many ----------------------------------------------------------------------------------


async def linked(conn: AsyncConnection[Any], invoice: Any) -> list[str]:
    found = await rows(
        conn,
        "SELECT t.name FROM invoice_tags j JOIN tags t ON t.id = j.tag_id"
        " WHERE j.invoice_id = %s ORDER BY t.name",
        invoice,
    )
    return [r["name"] for r in found]


async def test_many_to_many_diff_replace_and_append(conn: AsyncConnection[Any]) -> None:
    a, b, c = [str(await create(conn, "tag", {"name": n})) for n in "abc"]
    invoice = await create(
        conn,
        "invoice",
        {"number": "I", "invoice_tags": {"data": [{"id": a}, {"id": b}, {"id": a}]}},
    )
    assert await linked(conn, invoice) == ["a", "b"]

    await update(
        conn,
        "invoice",
        invoice,
        {"invoice_tags": {"data": [{"id": a, "_delete": True}, {"id": c}, {"id": b}]}},
    )
    assert await linked(conn, invoice) == ["b", "c"]

    await update(
        conn,
        "invoice",
        invoice,
        {
            "invoice_tags": {
                "_write_mode": "replace",
                "data": [{"id": a}, {"id": b, "_delete": True}],
            }
        },
    )
    assert await linked(conn, invoice) == ["a"]

    await update(
        conn,
        "invoice",
        invoice,
        {"invoice_tags": {"_write_mode": "append", "data": [{"id": a}, {"id": c}, {"id": c}]}},
    )
    assert await linked(conn, invoice) == ["a", "c"]
    assert len(await rows(conn, "SELECT * FROM tags")) == 3  # targets are never written


async def test_append_ignores_delete_marks_on_links(conn: AsyncConnection[Any]) -> None:
    """Spec (data-api.md, nested writes): append ignores `_delete` - it neither unlinks nor
    fails, even for an id that names no tag or repeats a linked one (it was a 422)."""
    a, b = [str(await create(conn, "tag", {"name": n})) for n in "ab"]
    invoice = await create(conn, "invoice", {"number": "I", "invoice_tags": {"data": [{"id": a}]}})
    body = {
        "invoice_tags": {
            "_write_mode": "append",
            "data": [
                {"id": a, "_delete": True},
                {"id": b},
                {"id": b, "_delete": True},
                {"id": str(uuid.uuid4()), "_delete": True},
            ],
        }
    }
    await update(conn, "invoice", invoice, body)
    assert await linked(conn, invoice) == ["a", "b"]


async def test_linking_a_missing_target_is_422_and_rolls_back(conn: AsyncConnection[Any]) -> None:
    a = str(await create(conn, "tag", {"name": "a"}))
    missing = str(uuid.uuid4())
    body = {"number": "I", "invoice_tags": {"data": [{"id": a}, {"id": missing}]}}
    with pytest.raises(ValidationFailed) as exc:
        await create(conn, "invoice", body)
    assert [(d["field"], d["rule"]) for d in details(exc)] == [("invoice_tags[1]", "exists")]
    assert await rows(conn, "SELECT * FROM invoices") == []
    assert await rows(conn, "SELECT * FROM invoice_tags") == []


# --- slugs -----------------------------------------------------------------------------------------


async def slugs(conn: AsyncConnection[Any], table: str) -> list[str]:
    found = await rows(conn, f"SELECT slug FROM {table} ORDER BY slug")
    return [r["slug"] for r in found]


async def test_slug_collisions_get_numbered_suffixes(conn: AsyncConnection[Any]) -> None:
    for _ in range(3):
        await create(conn, "post", {"title": "Hello World!"})
    assert await slugs(conn, "posts") == ["hello-world", "hello-world-2", "hello-world-3"]


async def test_slug_retry_keeps_the_transaction_and_nested_writes_working(
    conn: AsyncConnection[Any],
) -> None:
    await create(conn, "page", {"title": "Same"})
    async with conn.transaction():
        for title in ("Same", "Same"):
            plan = plan_create(REGISTRY, _entity("page"), {"title": title})
            await execute_create(conn, REGISTRY, plan)
    assert await slugs(conn, "pages") == ["same", "same-2", "same-3"]


async def test_other_unique_violation_during_slug_retry_is_409_for_that_field(
    conn: AsyncConnection[Any],
) -> None:
    await create(conn, "post", {"title": "T", "code": "X"})
    with pytest.raises(Conflict) as exc:
        await create(conn, "post", {"title": "T", "code": "X"})
    assert [(d["field"], d["rule"]) for d in details(exc)] == [("code", "unique")]
    assert await slugs(conn, "posts") == ["t"]


async def test_explicit_slug_is_stored_verbatim(conn: AsyncConnection[Any]) -> None:
    await create(conn, "post", {"title": "Hello", "slug": "My Own Slug"})
    assert await slugs(conn, "posts") == ["My Own Slug"]


async def test_slug_is_regenerated_on_update_only_when_the_source_changes(
    conn: AsyncConnection[Any],
) -> None:
    await create(conn, "post", {"title": "Fresh News"})
    pk = await create(conn, "post", {"title": "Old News"})
    await update(conn, "post", pk, {"title": "Old News"})
    assert await slugs(conn, "posts") == ["fresh-news", "old-news"]
    await update(conn, "post", pk, {"title": "Fresh News"})
    assert await slugs(conn, "posts") == ["fresh-news", "fresh-news-2"]
    await update(conn, "post", pk, {"title": "Newer", "slug": "kept"})
    assert await slugs(conn, "posts") == ["fresh-news", "kept"]


async def test_slug_is_not_regenerated_without_regenerate_on_update(
    conn: AsyncConnection[Any],
) -> None:
    pk = await create(conn, "page", {"title": "First"})
    await update(conn, "page", pk, {"title": "Second"})
    assert await slugs(conn, "pages") == ["first"]
