"""File storage: where uploaded bytes live. Handlers and the files engine talk to the `Storage`
interface only; the backend is picked by `storage.driver` (`open_storage`), so another one (S3)
can be added here without touching the files API.

Writes go to the configured backend. Reads, deletes and the orphan sweep follow the key to the
backend that wrote it, so files uploaded before a change of `storage.driver` stay readable (where
their bytes are reachable: local files only on the host that has them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from rocketd.storage.base import (
    MissingObject,
    ObjectEntry,
    ObjectWriter,
    Storage,
    StorageDriver,
    StoredObject,
    TooLarge,
    write_object,
)
from rocketd.storage.local import LocalDriver, LocalStorage
from rocketd.storage.postgres import PostgresDriver, PostgresStorage

__all__ = [
    "DRIVERS",
    "LocalDriver",
    "LocalStorage",
    "MissingObject",
    "ObjectEntry",
    "ObjectWriter",
    "PostgresDriver",
    "PostgresStorage",
    "Storage",
    "StorageDriver",
    "StoredObject",
    "TooLarge",
    "open_storage",
    "write_object",
]

DRIVERS = ("local", "postgres")


class _Routed:
    """One app's storage: the configured backend first, the others only for their own keys."""

    def __init__(self, backends: list[Storage]) -> None:
        self._backends = backends

    def _owner(self, key: str) -> Storage | None:
        return next((b for b in self._backends if b.owns(key)), None)

    def owns(self, key: str) -> bool:
        return self._owner(key) is not None

    async def open_write(self, file_id: str) -> ObjectWriter:
        return await self._backends[0].open_write(file_id)

    async def open_read(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        owner = self._owner(key)
        if owner is None:
            raise MissingObject(key)
        async for chunk in owner.open_read(key, start, end):
            yield chunk

    async def size(self, key: str) -> int | None:
        owner = self._owner(key)
        return None if owner is None else await owner.size(key)

    async def delete(self, key: str) -> None:
        owner = self._owner(key)
        if owner is not None:
            await owner.delete(key)

    async def objects(self) -> dict[str, ObjectEntry]:
        found: dict[str, ObjectEntry] = {}
        for backend in reversed(self._backends):  # the configured backend's entry wins
            found.update(await backend.objects())
        return found

    def local_file(self, key: str) -> Path | None:
        owner = self._owner(key)
        return None if owner is None else owner.local_file(key)


class _RoutingDriver:
    def __init__(self, drivers: list[StorageDriver]) -> None:
        self._drivers = drivers
        self.name = drivers[0].name

    def for_app(self, app: str, pool: AsyncConnectionPool[Any]) -> Storage:
        return _Routed([d.for_app(app, pool) for d in self._drivers])


def open_storage(driver: str, local_path: str, chunk_size: int = 1_048_576) -> StorageDriver:
    """The backend named by `storage.driver` (writes), with the others behind it (reads)."""
    drivers: dict[str, StorageDriver] = {
        "local": LocalDriver(local_path),
        "postgres": PostgresDriver(chunk_size),
    }
    if driver not in drivers:
        raise ValueError(f"unknown storage driver: {driver}")
    primary = drivers.pop(driver)
    return _RoutingDriver([primary, *drivers.values()])
