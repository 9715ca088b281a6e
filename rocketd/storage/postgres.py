"""The PostgreSQL backend: file bytes in the app's own database, table `_file_chunks`.

Every instance that reaches the database can serve every file, so several hosts share uploads
without a shared disk, and a database backup holds the files too. Memory stays bounded both ways:

* write: bytes are gathered into chunks of `storage.chunk_size` and each full chunk is inserted
  (and committed) as soon as it is complete, one short statement each, so a slow upload never
  holds a pool connection while it waits for the client. The `_files` row, inserted after
  `commit`, is what makes the object visible; chunks of an upload that failed are deleted by
  `abort`, and those of one that crashed (no row) by the orphan sweep.
* read: one query lists only the chunks that overlap the requested range (their offsets and
  lengths, not their bytes); then each chunk's needed slice is fetched on its own
  (`substring` runs in the server), so at most one chunk is in memory.

Each chunk records its `byte_offset`, so a range is found without assuming a chunk size: changing
`storage.chunk_size` never breaks files written before. An empty file is one empty chunk, so
"has at least one chunk" means "exists". Keys are `postgres:{file id}`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

from psycopg_pool import AsyncConnectionPool

from rocketd.storage.base import MissingObject, ObjectEntry

KEY_PREFIX: Final = "postgres:"


class PostgresDriver:
    name = "postgres"

    def __init__(self, chunk_size: int) -> None:
        self.chunk_size = chunk_size

    def for_app(self, app: str, pool: AsyncConnectionPool[Any]) -> PostgresStorage:
        return PostgresStorage(pool, self.chunk_size)


def file_id_of(key: str) -> uuid.UUID | None:
    if not key.startswith(KEY_PREFIX):
        return None
    try:
        return uuid.UUID(key[len(KEY_PREFIX) :])
    except ValueError:
        return None


class _ChunkWriter:
    def __init__(self, pool: AsyncConnectionPool[Any], file_id: uuid.UUID, chunk_size: int):
        self._pool = pool
        self._file_id = file_id
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self._seq = 0
        self._offset = 0

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        while len(self._buffer) >= self._chunk_size:
            piece = bytes(self._buffer[: self._chunk_size])
            del self._buffer[: self._chunk_size]
            await self._insert(piece)

    async def _insert(self, piece: bytes) -> None:
        async with self._pool.connection() as conn:
            # %b: sent in binary, not as hex text twice the size.
            await conn.execute(
                "insert into _file_chunks (file_id, seq, byte_offset, data) values (%s, %s, %s, %b)",
                (self._file_id, self._seq, self._offset, piece),
            )
        self._seq += 1
        self._offset += len(piece)

    async def commit(self) -> str:
        if self._buffer or self._seq == 0:  # the tail, or the one empty chunk of an empty file
            piece = bytes(self._buffer)
            self._buffer.clear()
            await self._insert(piece)
        return KEY_PREFIX + str(self._file_id)

    async def abort(self) -> None:
        self._buffer.clear()
        await _delete_chunks(self._pool, self._file_id)


async def _delete_chunks(pool: AsyncConnectionPool[Any], file_id: uuid.UUID) -> None:
    async with pool.connection() as conn:
        await conn.execute("delete from _file_chunks where file_id = %s", (file_id,))


class PostgresStorage:
    def __init__(self, pool: AsyncConnectionPool[Any], chunk_size: int) -> None:
        self._pool = pool
        self._chunk_size = chunk_size

    def owns(self, key: str) -> bool:
        return file_id_of(key) is not None

    async def open_write(self, file_id: str) -> _ChunkWriter:
        return _ChunkWriter(self._pool, uuid.UUID(file_id), self._chunk_size)

    async def size(self, key: str) -> int | None:
        file_id = file_id_of(key)
        if file_id is None:
            return None
        async with self._pool.connection() as conn:
            # octet_length reads the stored length only, not the (TOASTed) bytes.
            cur = await conn.execute(
                "select count(*), coalesce(sum(octet_length(data)), 0) from _file_chunks"
                " where file_id = %s",
                (file_id,),
            )
            row = await cur.fetchone()
        if row is None or row[0] == 0:
            return None
        return int(row[1])

    async def open_read(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        file_id = file_id_of(key)
        if file_id is None:
            raise MissingObject(key)
        last = (2**63 - 1) if end is None else end  # exclusive
        if last <= start:
            return
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "select seq, byte_offset, octet_length(data) from _file_chunks"
                " where file_id = %s and byte_offset < %s"
                " and byte_offset + octet_length(data) > %s order by seq",
                (file_id, last, start),
            )
            plan = await cur.fetchall()
        expected = start
        for seq, offset, length in plan:
            lo = max(start, offset)
            hi = min(last, offset + length)
            if lo != expected:
                raise MissingObject(key)  # a gap: the chunks changed under us
            async with self._pool.connection() as conn:
                # substring is 1-based; only the slice leaves the server.
                cur = await conn.execute(
                    "select substring(data from %s for %s) from _file_chunks"
                    " where file_id = %s and seq = %s",
                    (lo - offset + 1, hi - lo, file_id, seq),
                    binary=True,
                )
                row = await cur.fetchone()
            if row is None:
                raise MissingObject(key)  # deleted while it was being read
            expected = hi
            yield bytes(row[0])
        if end is not None and expected != end:
            raise MissingObject(key)

    async def delete(self, key: str) -> None:
        file_id = file_id_of(key)
        if file_id is not None:
            await _delete_chunks(self._pool, file_id)

    async def objects(self) -> dict[str, ObjectEntry]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "select file_id, extract(epoch from now() - max(created_at))::float8"
                " from _file_chunks group by file_id"
            )
            rows = await cur.fetchall()
        return {
            str(file_id): ObjectEntry(KEY_PREFIX + str(file_id), max(0.0, float(age)), True)
            for file_id, age in rows
        }

    def local_file(self, key: str) -> Path | None:
        return None
