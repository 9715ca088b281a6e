"""The `postgres` storage driver: bytes in `_file_chunks`, bounded memory both ways, byte ranges
at chunk boundaries, several instances on one database, a file cut short while being read, and
files kept readable across a change of driver. (The whole files API also runs on this driver:
tests/integration/capabilities/files/test_files.py is parametrised over both drivers.)"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from rocketd.config import Settings, StorageSettings
from rocketd.http.app import create_app
from rocketd.platform.app_names import db_name_for
from rocketd.runtime import Runtime
from rocketd.storage import MissingObject, PostgresDriver, write_object
from tests.support.apps import AppClient, new_app
from tests.support.databases import unique_name
from tests.support.helpers import bearer, wait_until

MB = 1024 * 1024
CHUNK = 65_536  # the smallest allowed: the files here span many chunks


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    storage = StorageSettings(
        driver="postgres",
        local_path=str(tmp_path / "uploads"),
        max_file_size=32 * MB,
        chunk_size=CHUNK,
    )
    return replace(settings, storage=storage)


def pattern(index: int, size: int) -> bytes:
    """Deterministic, incompressible-enough bytes for block `index`."""
    seed = hashlib.sha256(index.to_bytes(8, "big")).digest()
    return (seed * (size // len(seed) + 1))[:size]


async def streamed_form(
    blocks: int, block_size: int, boundary: str, digest: Any
) -> AsyncIterator[bytes]:
    """A multipart body generated on the fly, so the client never holds the file either."""
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    for index in range(blocks):
        block = pattern(index, block_size)
        digest.update(block)
        yield block
    yield f"\r\n--{boundary}--\r\n".encode()


async def upload_streamed(
    app: AppClient, blocks: int, block_size: int
) -> tuple[dict[str, Any], str]:
    digest = hashlib.sha256()
    boundary = "str3amB0undary"
    resp = await app.client.post(
        app.url("_files/upload"),
        data=streamed_form(blocks, block_size, boundary, digest),
        headers={**app.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    body = await resp.json()
    assert resp.status == 201, body
    return body["data"], digest.hexdigest()


async def upload_bytes(app: AppClient, content: bytes) -> str:
    form = aiohttp.FormData()
    form.add_field("file", content, filename="f.bin", content_type="application/octet-stream")
    resp = await app.client.post(app.url("_files/upload"), data=form, headers=app.headers)
    body = await resp.json()
    assert resp.status == 201, body
    return str(body["data"]["id"])


async def app_rows(settings: Settings, app: str, query: str, *params: Any) -> list[Any]:
    dsn = settings.database.dsn(db_name_for(app))
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall() if cur.description else []


async def test_large_upload_and_download_keep_memory_bounded(
    client: Any, settings: Settings
) -> None:
    app = await new_app(client)
    size = 20 * MB
    block = 64 * 1024
    await upload_bytes(app, b"warm-up")  # first-use allocations (pools, codecs) out of the way

    tracemalloc.start()
    try:
        info, expected = await upload_streamed(app, size // block, block)
        _, upload_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info["size"] == size

    rows = await app_rows(
        settings,
        app.name,
        "select count(*), max(octet_length(data)), sum(octet_length(data)),"
        " bool_and(byte_offset = seq::bigint * %s) from _file_chunks where file_id = %s",
        CHUNK,
        info["id"],
    )
    assert rows == [(size // CHUNK, CHUNK, size, True)]

    tracemalloc.start()
    try:
        digest = hashlib.sha256()
        resp = await client.get(app.url(f"_files/{info['id']}"), headers=app.headers)
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(size)
        async for piece in resp.content.iter_chunked(64 * 1024):
            digest.update(piece)
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == expected
    # Generous bounds, far below the 20 MB a whole-file buffer would need (client and server
    # run in this process, so both sides are counted).
    assert upload_peak < 6 * MB, upload_peak
    assert download_peak < 6 * MB, download_peak


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 1),  # first byte
        ("bytes=196707-196707", 196_707, 196_708),  # last byte (in the short last chunk)
        ("bytes=65535-65536", 65_535, 65_537),  # the last byte of chunk 0 and the first of 1
        ("bytes=65530-131080", 65_530, 131_081),  # spans three chunks
        ("bytes=65536-131071", 65_536, 131_072),  # exactly chunk 1
        ("bytes=131072-", 131_072, 196_708),  # from a chunk start to the end
        ("bytes=-100", 196_608, 196_708),  # suffix: exactly the last chunk
        ("bytes=-65637", 131_071, 196_708),  # suffix reaching one byte into chunk 1
    ],
)
async def test_ranges_at_chunk_boundaries(
    client: Any, settings: Settings, header: str, start: int, end: int
) -> None:
    app = await new_app(client)
    content = b"".join(pattern(i, CHUNK) for i in range(3)) + pattern(9, 100)
    size = len(content)  # 3 full chunks and 100 bytes
    file_id = await upload_bytes(app, content)
    rows = await app_rows(
        settings, app.name, "select count(*) from _file_chunks where file_id = %s", file_id
    )
    assert rows == [(4,)]
    resp = await client.get(app.url(f"_files/{file_id}"), headers={**app.headers, "Range": header})
    assert resp.status == 206
    assert await resp.read() == content[start:end]
    assert resp.headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}"
    assert resp.headers["Content-Length"] == str(end - start)


async def test_unsatisfiable_and_whole_file_ranges(client: Any) -> None:
    app = await new_app(client)
    content = pattern(1, 300_000)
    file_id = await upload_bytes(app, content)
    url = app.url(f"_files/{file_id}")
    for header in ("bytes=300000-", "bytes=400000-400010", "bytes=-0", "bytes=5-1", "bytes=x"):
        resp = await client.get(url, headers={**app.headers, "Range": header})
        assert resp.status == 416, header
        assert resp.headers["Content-Range"] == "bytes */300000"
    resp = await client.get(url, headers={**app.headers, "Range": "bytes=0-"})
    assert resp.status == 206 and await resp.read() == content
    resp = await client.head(url, headers=app.headers)
    assert resp.status == 200 and resp.headers["Content-Length"] == "300000"
    assert await resp.read() == b""
    # If-Range naming another version: the whole file, 200.
    resp = await client.get(
        url, headers={**app.headers, "Range": "bytes=0-9", "If-Range": '"stale"'}
    )
    assert resp.status == 200 and await resp.read() == content
    etag = resp.headers["ETag"]
    resp = await client.get(url, headers={**app.headers, "Range": "bytes=0-9", "If-Range": etag})
    assert resp.status == 206 and await resp.read() == content[:10]
    resp = await client.get(url, headers={**app.headers, "If-Match": '"stale"'})
    assert resp.status == 412


async def test_a_range_reads_only_the_chunks_it_overlaps(runtime: Any, settings: Settings) -> None:
    """Straight against the backend: a chunk outside the range can be gone and the range is
    still served; a range that needs it reports the gap instead of returning short data."""
    name = unique_name("chunks")
    await runtime.services.directory.create_app(name, None, None)
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        settings.database.dsn(db_name_for(name)), kwargs={"autocommit": True}, open=False
    )
    await pool.open(wait=True)
    try:
        writer = PostgresDriver(CHUNK).for_app(name, pool)
        content = b"".join(pattern(i, CHUNK) for i in range(4))

        async def body() -> AsyncIterator[bytes]:
            for start in range(0, len(content), 10_000):
                yield content[start : start + 10_000]

        stored = await write_object(writer, "3f0b6a5e-2c1d-4d7e-9a43-51f0c8e2b7aa", body(), 10**9)
        # Read back with another chunk size configured: offsets are stored, not assumed.
        reader = PostgresDriver(1 * MB).for_app(name, pool)
        assert await reader.size(stored.key) == len(content)
        got = b"".join([c async for c in reader.open_read(stored.key, 70_000, 200_000)])
        assert got == content[70_000:200_000]

        async with pool.connection() as conn:
            await conn.execute("delete from _file_chunks where seq = 0")
        got = b"".join([c async for c in reader.open_read(stored.key, 70_000, 200_000)])
        assert got == content[70_000:200_000]
        with pytest.raises(MissingObject):
            [c async for c in reader.open_read(stored.key, 60_000, 70_000)]
        with pytest.raises(MissingObject):
            [c async for c in reader.open_read(stored.key)]
    finally:
        await pool.close()


async def test_a_file_cut_short_while_served_ends_the_connection(
    client: Any, settings: Settings
) -> None:
    app = await new_app(client)
    content = pattern(3, 8 * MB)
    file_id = await upload_bytes(app, content)
    resp = await client.get(app.url(f"_files/{file_id}"), headers=app.headers)
    assert resp.status == 200
    first = await resp.content.readexactly(64 * 1024)
    assert first == content[: 64 * 1024]
    await app_rows(settings, app.name, "delete from _file_chunks where file_id = %s", file_id)
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    # The server is fine, and the row now answers "not on disk".
    status, body = await app.call("GET", f"_files/{file_id}")
    assert status == 404 and body["error"]["message"] == f"File {file_id} not found on disk"


@pytest.mark.parametrize("driver", ["postgres", "local"])
async def test_two_instances_share_files_through_the_database(
    runtime: Any, settings: Settings, tmp_path: Path, aiohttp_client: Any, driver: str
) -> None:
    """Upload through instance A, download through instance B (each with its own local disk).
    With the `local` driver B cannot see the bytes: that is why the postgres driver exists."""
    storage_a = replace(settings.storage, driver=driver, local_path=str(tmp_path / "host-a"))
    storage_b = replace(settings.storage, driver=driver, local_path=str(tmp_path / "host-b"))
    rt_a = Runtime(dataclasses.replace(settings, storage=storage_a))
    await rt_a.start(http=False)
    assert rt_a.services is not None
    client_a = await aiohttp_client(create_app(rt_a.services))
    rt_b = Runtime(dataclasses.replace(settings, storage=storage_b))
    await rt_b.start(http=False)
    try:
        assert rt_b.services is not None
        client_b = await aiohttp_client(create_app(rt_b.services))
        app_a = await new_app(client_a)
        await wait_until(
            lambda: app_a.name in rt_b.services.directory.actors, "B to serve the new app", 30
        )
        app_b = AppClient(client_b, app_a.name, app_a.token)
        content = pattern(5, 700_000)
        file_id = await upload_bytes(app_a, content)
        resp = await client_b.get(app_b.url(f"_files/{file_id}"), headers=bearer(app_b.token))
        if driver == "local":
            assert resp.status == 404
            return
        assert resp.status == 200 and await resp.read() == content
        resp = await client_b.get(
            app_b.url(f"_files/{file_id}"),
            headers={**bearer(app_b.token), "Range": "bytes=300000-300009"},
        )
        assert resp.status == 206 and await resp.read() == content[300_000:300_010]
        # Deleted through B: gone for A too, bytes and all.
        assert (await app_b.ok("DELETE", f"_files/{file_id}"))["data"] == {"deleted": True}
        status, _ = await app_a.call("GET", f"_files/{file_id}")
        assert status == 404
        chunks = await app_rows(settings, app_a.name, "select count(*) from _file_chunks")
        assert chunks == [(0,)]
    finally:
        await rt_b.stop()
        await rt_a.stop()


async def test_files_stay_readable_after_a_change_of_driver(
    settings: Settings, aiohttp_client: Any
) -> None:
    """Uploaded under `local`, then the instance restarts with `postgres`: the old file is still
    served from disk (the key names its backend) and deleted there; new uploads go to chunks."""
    local = replace(settings.storage, driver="local")
    first = Runtime(dataclasses.replace(settings, storage=local))
    await first.start(http=False)
    try:
        assert first.services is not None
        before = await aiohttp_client(create_app(first.services))
        app = await new_app(before)
        old_content = pattern(7, 100_000)
        old_id = await upload_bytes(app, old_content)
    finally:
        await first.stop()
    on_disk = Path(local.local_path) / app.name / old_id / "content"
    assert on_disk.read_bytes() == old_content

    second = Runtime(settings)  # the postgres driver of this module's settings
    await second.start(http=False)
    try:
        assert second.services is not None
        after = await aiohttp_client(create_app(second.services))
        moved = AppClient(after, app.name, app.token)
        resp = await after.get(moved.url(f"_files/{old_id}"), headers=moved.headers)
        assert resp.status == 200 and await resp.read() == old_content
        new_id = await upload_bytes(moved, b"new bytes")
        rows = await app_rows(settings, app.name, "select distinct file_id::text from _file_chunks")
        assert rows == [(new_id,)]
        report = (await moved.ok("POST", "_admin/files/sweep?grace_seconds=0"))["data"]
        assert report == {"removed": [], "missing_bytes": []}
        assert (await moved.ok("DELETE", f"_files/{old_id}"))["data"] == {"deleted": True}
        assert not on_disk.parent.exists()
    finally:
        await second.stop()


async def test_stalled_uploads_hold_no_connection_and_leave_no_chunks(
    client: Any, settings: Settings
) -> None:
    """Chunks are inserted one short statement at a time: more stalled uploads than the app pool
    has connections (3 in tests) do not starve other requests, and when their clients go away
    the chunks they wrote are deleted."""
    app = await new_app(client)
    boundary = "sta11"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.bin"\r\n\r\n'
    ).encode()
    request = (
        f"POST /api/{app.name}/_files/upload HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {app.token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(head) + 1_000_000}\r\n\r\n"
    ).encode()
    writers = []
    for _ in range(settings.app_pool_size + 2):
        _, writer = await asyncio.open_connection(client.server.host, client.server.port)
        # Several of the multipart reader's 256 KiB reads, then silence.
        writer.write(request + head + b"s" * 900_000)
        await writer.drain()
        writers.append(writer)

    async def chunked_files() -> int:
        rows = await app_rows(
            settings, app.name, "select count(distinct file_id) from _file_chunks"
        )
        return int(rows[0][0])

    async def all_stalled() -> bool:
        return await chunked_files() == len(writers)

    async def all_cleaned() -> bool:
        return await chunked_files() == 0

    await wait_until(all_stalled, "every stalled upload's chunks", timeout=30)
    # A hang here would mean the stalled uploads hold the pool's connections.
    listing = await asyncio.wait_for(app.ok("GET", "_files"), timeout=20)
    assert listing["data"] == []
    for writer in writers:
        writer.close()
    await wait_until(all_cleaned, "the aborted uploads' chunks to be deleted", timeout=30)
