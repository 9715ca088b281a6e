"""The generic admin runner (`engine.admin`), driven through a kind declared here against a
scratch table of a scratch database: no server, no capability. What every admin table gets from
one declaration: CRUD with its 404s, PUT merge (or replace), validation against the metadata as
stored *now*, uniqueness, one transaction under the metadata lock, the NOTIFY in it, and the
import/export hooks' defaults."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from rocketd.config import Settings
from rocketd.db.notify import CHANNEL, MetadataChanged
from rocketd.engine.admin import (
    AdminCall,
    Change,
    MetadataKind,
    Row,
    lock_metadata,
    not_found,
    row_uuid,
)
from rocketd.errors import Conflict, ErrorDetail, InvalidPayload, NotFound, ValidationFailed
from rocketd.http.crud import kind_handlers
from rocketd.metadata.parse import MetadataError
from rocketd.metadata.registry import Registry
from tests.support.databases import scratch_database
from tests.support.helpers import wait_until

APP = "scratch"
CALL = AdminCall(APP, Settings())
TICKET = {
    "name": "ticket",
    "table": "tickets",
    "primary_key": {"field": "id", "type": "uuid", "generated": True},
    "fields": [{"name": "id", "type": "uuid"}],
}


def _schema(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "create table _entities (name text primary key, table_name text not null,"
        " definition jsonb not null, created_at timestamptz default now(),"
        " updated_at timestamptz default now())"
    )
    conn.execute(
        "create table _relations (name text primary key, source text, target text,"
        " definition jsonb not null)"
    )
    conn.execute(
        "create table _notes (id uuid primary key default gen_random_uuid(),"
        " title text not null unique, tags jsonb not null default '[]',"
        " active boolean not null default true, created_at timestamptz default now(),"
        " updated_at timestamptz default now())"
    )


@dataclass(frozen=True)
class Note:
    title: str
    tags: tuple[str, ...] = ()
    active: bool = True


class NoteKind(MetadataKind[Note]):
    """A kind as a capability would declare one: parse, a check against the registry, values."""

    name = "notes"
    path = "notes"
    table = "_notes"
    label = "Note"
    columns = ("title", "tags", "active")
    list_order = ("title",)
    import_key_columns = ("title",)

    def parse(self, body: object, call: AdminCall) -> Note:
        if not isinstance(body, Mapping):
            raise InvalidPayload("Invalid JSON body")
        title, tags, active = body.get("title"), body.get("tags", []), body.get("active", True)
        problems = []
        if not isinstance(title, str) or not title:
            problems.append(ErrorDetail("title is required", "title"))
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            problems.append(ErrorDetail("tags must be an array of strings", "tags"))
        if problems:
            raise MetadataError(problems)
        return Note(str(title), tuple(tags), bool(active))

    def problems_in(self, registry: Registry, item: Note, stored: Row | None) -> list[str]:
        if registry.entity(item.title) is not None:
            return [f"title {item.title} is taken by an entity"]
        return []

    def values(self, item: Note) -> tuple[Any, ...]:
        return (item.title, Jsonb(list(item.tags)), item.active)

    def conflict(self, item: Note) -> Conflict:
        return Conflict(f"A note titled {item.title} already exists")

    def key_of(self, item: Note) -> Hashable:
        return (item.title,)


class ReplacingNoteKind(NoteKind):
    put_merges = False


class QuietNoteKind(NoteKind):
    in_snapshot = False
    operations = frozenset({"list", "create", "delete"})


NOTES = NoteKind()


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    with scratch_database(pg_dsn, "rkt_admin", _schema) as dsn:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            dsn, min_size=1, max_size=4, kwargs={"autocommit": True}, open=False
        )
        await pool.open(wait=True)
        try:
            yield pool
        finally:
            await pool.close()


async def count(pool: AsyncConnectionPool[Any]) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("select count(*) from _notes")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_create_list_get_and_delete(pool: AsyncConnectionPool[Any]) -> None:
    saved = await NOTES.create(pool, CALL, {"title": "hello", "tags": ["a"]})
    row = saved.data
    assert set(row) == {"id", "title", "tags", "active", "created_at", "updated_at"}
    assert (row["title"], row["tags"], row["active"]) == ("hello", ["a"], True)
    assert row["created_at"].endswith("Z")
    assert saved.notices == (MetadataChanged(APP),) and dict(saved.meta) == {}
    assert await NOTES.read_all(pool) == [row]
    assert await NOTES.read_one(pool, row["id"]) == row
    assert await NOTES.read_one(pool, row["id"].upper()) == row  # any spelling of the UUID

    deleted = await NOTES.delete(pool, CALL, row["id"])
    assert deleted.data == {"id": row["id"], "deleted": True}
    assert deleted.notices == (MetadataChanged(APP),)
    for operation in (
        NOTES.read_one(pool, row["id"]),
        NOTES.update(pool, CALL, row["id"], {"title": "x"}),
        NOTES.delete(pool, CALL, row["id"]),
    ):
        with pytest.raises(NotFound) as caught:
            await operation
        assert caught.value.message == f"Note not found: {row['id']}"


@pytest.mark.parametrize("raw", ["not-a-uuid", "1", "' or 1=1 --", "x" * 500])
async def test_path_ids_that_cannot_name_a_row_are_404(
    pool: AsyncConnectionPool[Any], raw: str
) -> None:
    for operation in (
        NOTES.read_one(pool, raw),
        NOTES.update(pool, CALL, raw, {"title": "x"}),
        NOTES.delete(pool, CALL, raw),
    ):
        with pytest.raises(NotFound) as caught:
            await operation
        message = caught.value.message
        assert message.startswith("Note not found: ") and len(message) <= 120


def test_the_path_id_helpers() -> None:
    key = uuid.uuid4()
    assert row_uuid(str(key)) == key and row_uuid(str(key).upper()) == key
    assert row_uuid("nope") is None and row_uuid("1" * 65) is None
    assert not_found("Thing", "y" * 150).message == "Thing not found: " + "y" * 100 + "..."


async def test_put_merges_over_the_stored_row(pool: AsyncConnectionPool[Any]) -> None:
    made = (await NOTES.create(pool, CALL, {"title": "keep", "tags": ["a"], "active": False})).data
    # Omitted keys keep their stored values (C28); an echoed GET (read-only keys) is accepted.
    got = (await NOTES.update(pool, CALL, made["id"], {"tags": ["b"]})).data
    assert (got["title"], got["tags"], got["active"]) == ("keep", ["b"], False)
    echoed = (await NOTES.update(pool, CALL, made["id"], got)).data
    assert echoed["tags"] == ["b"] and echoed["id"] == made["id"]


async def test_put_replaces_when_the_kind_says_so(pool: AsyncConnectionPool[Any]) -> None:
    kind = ReplacingNoteKind()
    made = (await kind.create(pool, CALL, {"title": "r", "tags": ["a"], "active": False})).data
    got = (await kind.update(pool, CALL, made["id"], {"title": "r"})).data
    assert (got["tags"], got["active"]) == ([], True)  # omitted keys are the create defaults


async def test_problems_are_checked_against_the_metadata_as_stored_now(
    pool: AsyncConnectionPool[Any],
) -> None:
    await NOTES.create(pool, CALL, {"title": "ticket"})  # no entity of that name yet
    async with pool.connection() as conn:
        await conn.execute(
            "insert into _entities (name, table_name, definition) values (%s, %s, %s)",
            ("ticket", "tickets", Jsonb(TICKET)),
        )
    with pytest.raises(ValidationFailed) as caught:
        await NOTES.create(pool, CALL, {"title": "ticket"})
    assert caught.value.message == "title ticket is taken by an entity"
    assert caught.value.status == 422
    assert await count(pool) == 1


async def test_bad_bodies_and_conflicts_write_nothing(pool: AsyncConnectionPool[Any]) -> None:
    first = (await NOTES.create(pool, CALL, {"title": "one"})).data
    second = (await NOTES.create(pool, CALL, {"title": "two"})).data
    with pytest.raises(MetadataError) as bad:
        await NOTES.create(pool, CALL, {"title": "", "tags": [1]})
    assert [d.field for d in bad.value.details] == ["title", "tags"]
    with pytest.raises(Conflict) as clash:
        await NOTES.create(pool, CALL, {"title": "one"})
    assert clash.value.message == "A note titled one already exists"
    with pytest.raises(Conflict):
        await NOTES.update(pool, CALL, second["id"], {"title": "one"})
    assert [n["title"] for n in await NOTES.read_all(pool)] == ["one", "two"]
    assert await NOTES.read_one(pool, first["id"]) == first


async def test_the_notice_is_sent_in_the_changes_transaction(
    pool: AsyncConnectionPool[Any],
) -> None:
    async with pool.connection() as listener:
        await listener.execute(f"listen {CHANNEL}")
        made = (await NOTES.create(pool, CALL, {"title": "heard"})).data
        with pytest.raises(Conflict):
            await NOTES.create(pool, CALL, {"title": "heard"})  # rolled back: nothing heard
        await NOTES.delete(pool, CALL, made["id"])
        payloads = []
        gen = listener.notifies(timeout=5.0, stop_after=2)
        async for notify in gen:
            payloads.append(notify.payload)
    assert payloads == [APP, APP]  # the create and the delete, not the refused create


async def test_a_kind_outside_the_snapshot_sends_nothing(pool: AsyncConnectionPool[Any]) -> None:
    kind = QuietNoteKind()
    saved = await kind.create(pool, CALL, {"title": "quiet"})
    assert saved.notices == ()
    assert set(kind_handlers(kind)) == {"list", "create", "delete"}  # no get, no PUT routes
    assert set(kind_handlers(NOTES)) == {"list", "get", "create", "update", "delete"}


async def test_changes_wait_for_the_metadata_lock(pool: AsyncConnectionPool[Any]) -> None:
    """Every change takes the app's metadata lock: a change waits while another holds it."""
    async with pool.connection() as holder:
        async with holder.transaction():
            await lock_metadata(holder)
            pending = asyncio.create_task(NOTES.create(pool, CALL, {"title": "later"}))

            async def waiting_on_the_lock() -> bool:
                async with pool.connection() as probe:
                    cur = await probe.execute(
                        "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
                        " and wait_event = 'advisory' and datname = current_database()"
                    )
                    row = await cur.fetchone()
                return bool(row and row[0])

            await wait_until(waiting_on_the_lock, "the create to wait on the metadata lock")
            assert not pending.done() and await count(pool) == 0
        saved = await pending  # the holder committed: the create goes on
    assert saved.data["title"] == "later"


async def test_import_defaults(pool: AsyncConnectionPool[Any]) -> None:
    await NOTES.create(pool, CALL, {"title": "b", "tags": ["x"]})
    await NOTES.create(pool, CALL, {"title": "a"})
    async with pool.connection() as conn:
        assert await NOTES.existing_keys(conn) == {("a",), ("b",)}
        exported = await NOTES.export_items(conn)
        change = Change(conn, CALL, planned_registry=Registry.build([], []))
        async with conn.transaction():
            await NOTES.import_write(change, Note("c"))
    assert exported == [
        {"title": "a", "tags": [], "active": True},
        {"title": "b", "tags": ["x"], "active": True},
    ]
    assert NOTES.key_of(Note("a")) in {("a",)}
    assert NOTES.raw_key({"title": "a"}) is None  # checked after parsing by default
    assert [n["title"] for n in await NOTES.read_all(pool)] == ["a", "b", "c"]
