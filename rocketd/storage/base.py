"""The storage interface every backend implements, and the one streaming write loop they share.

A backend is process-wide (`StorageDriver`, built from the settings); `for_app` binds it to one
app and that app's database pool, giving the `Storage` the files engine and handlers use. The
interface is shaped for object stores (S3 and the like) as much as for disks and databases:
write = an async sink of chunks finished by `commit` (or `abort`), read = an async iterator over
an optional byte range, plus `size` (exists and how big), `delete` and a listing for the orphan
sweep. Keys are opaque strings kept in `_files.storage_path`; each backend recognises its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from psycopg_pool import AsyncConnectionPool

HEAD_BYTES: Final = 512


class TooLarge(Exception):
    """The stream went past the limit; what was written is already removed."""

    def __init__(self, seen: int, limit: int) -> None:
        super().__init__(f"{seen} bytes seen, limit {limit}")
        self.seen = seen
        self.limit = limit


class MissingObject(Exception):
    """The object's bytes are gone (or were cut short) while they were being read."""


@dataclass(frozen=True)
class StoredObject:
    """What a successful write stored: the backend's key and the byte count."""

    key: str
    size: int
    head: bytes  # the first bytes (up to 512), for content sniffing


@dataclass(frozen=True)
class ObjectEntry:
    """One stored object as the orphan sweep sees it."""

    key: str
    age_seconds: float  # since its last write
    complete: bool  # False: an upload that never finished (a local `.part` file)


class ObjectWriter(Protocol):
    """An object being written: chunks in order, then exactly one of `commit` or `abort`."""

    async def write(self, chunk: bytes) -> None: ...

    async def commit(self) -> str:
        """Make the object readable under the returned key."""
        ...

    async def abort(self) -> None:
        """Remove whatever was written (never raises for a missing object)."""
        ...


class Storage(Protocol):
    """One app's objects, keyed by file id. An app's objects never mix with another app's."""

    def owns(self, key: str) -> bool:
        """Whether `key` is one this backend writes (keys of other backends are not read)."""
        ...

    async def open_write(self, file_id: str) -> ObjectWriter: ...

    def open_read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes `start` .. `end` (exclusive; None: to the end), a bounded chunk at a time.
        Raises `MissingObject` when the bytes are gone."""
        ...

    async def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when it does not exist."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object (a missing one is not an error)."""
        ...

    async def objects(self) -> dict[str, ObjectEntry]:
        """Every object of the app, complete or not, as {file id: entry} (for the sweep)."""
        ...

    def local_file(self, key: str) -> Path | None:
        """The object as a readable local file (served with sendfile), or None when this
        backend has no local files or the object is missing."""
        ...


class StorageDriver(Protocol):
    """A configured backend, shared by every app of the process."""

    name: str

    def for_app(self, app: str, pool: AsyncConnectionPool[Any]) -> Storage: ...


async def write_object(
    storage: Storage, file_id: str, chunks: AsyncIterable[bytes], limit: int
) -> StoredObject:
    """Stream `chunks` into a new object; raise `TooLarge` (after removing the partial object)
    as soon as more than `limit` bytes arrived. Any other failure removes the partial object too."""
    writer = await storage.open_write(file_id)
    size = 0
    head = b""
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise TooLarge(size, limit)
            if len(head) < HEAD_BYTES:
                head += chunk[: HEAD_BYTES - len(head)]
            await writer.write(chunk)
        key = await writer.commit()
    except BaseException:
        await writer.abort()
        raise
    return StoredObject(key, size, head)
