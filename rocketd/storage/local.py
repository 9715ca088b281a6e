"""The local-disk backend: `{storage.local_path}/{app}/{file_id}/content`.

The client's filename never reaches the path (upstream-gaps S17): it lives only in
`_files.filename`. Bytes are written to `content.part` and renamed into place once complete, so a
crash mid-upload leaves only a `.part` file, which the sweep removes. Keys are the absolute path of
`content`; a key outside the storage root is never read or removed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any, Final

from psycopg_pool import AsyncConnectionPool

from rocketd.storage.base import MissingObject, ObjectEntry

CONTENT: Final = "content"
PARTIAL: Final = CONTENT + ".part"
READ_CHUNK: Final = 256 * 1024


class LocalDriver:
    name = "local"

    def __init__(self, root: str) -> None:
        self.root = Path(root).resolve()

    def for_app(self, app: str, pool: AsyncConnectionPool[Any] | None = None) -> LocalStorage:
        return LocalStorage(self.root, app)


class _LocalWriter:
    def __init__(self, directory: Path, out: IO[bytes]) -> None:
        self._directory = directory
        self._out = out

    async def write(self, chunk: bytes) -> None:
        # Chunk writes go to the page cache and return at once; only the open is offloaded.
        self._out.write(chunk)

    async def commit(self) -> str:
        self._out.close()
        final = self._directory / CONTENT
        os.replace(self._directory / PARTIAL, final)
        return str(final)

    async def abort(self) -> None:
        self._out.close()
        shutil.rmtree(self._directory, ignore_errors=True)


class LocalStorage:
    def __init__(self, root: Path, app: str) -> None:
        # The app name follows the app name rules; refuse anything that could leave the root.
        if not app or "/" in app or app.startswith("."):
            raise ValueError(f"bad app name for storage: {app!r}")
        self.root = root
        self.app = app

    def _dir(self, file_id: str) -> Path:
        # A UUID we generated: no traversal.
        str(uuid.UUID(file_id))
        return self.root / self.app / file_id

    def key_for(self, file_id: str) -> str:
        return str(self._dir(file_id) / CONTENT)

    def owns(self, key: str) -> bool:
        return self._own(key) is not None

    async def open_write(self, file_id: str) -> _LocalWriter:
        directory = self._dir(file_id)
        directory.mkdir(parents=True, exist_ok=True)
        try:
            out = await asyncio.to_thread((directory / PARTIAL).open, "wb")
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return _LocalWriter(directory, out)

    def _own(self, key: str) -> Path | None:
        path = Path(key)
        if not path.is_absolute():
            return None
        try:
            path.resolve().relative_to(self.root)
        except ValueError:
            return None  # a row pointing outside the storage root is never read or removed
        return path

    def local_file(self, key: str) -> Path | None:
        path = self._own(key)
        return path if path is not None and path.is_file() else None

    async def size(self, key: str) -> int | None:
        path = self.local_file(key)
        return None if path is None else path.stat().st_size

    async def open_read(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        path = self.local_file(key)
        if path is None:
            raise MissingObject(key)
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            handle.seek(start)
            left = None if end is None else end - start
            while left is None or left > 0:
                want = READ_CHUNK if left is None else min(READ_CHUNK, left)
                chunk = await asyncio.to_thread(handle.read, want)
                if not chunk:
                    if left is not None:
                        raise MissingObject(key)  # shorter than asked: cut under our feet
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def delete(self, key: str) -> None:
        path = self._own(key)
        if path is None:
            return
        path.unlink(missing_ok=True)
        for extra in path.parent.glob("*"):
            extra.unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:
            pass

    async def objects(self) -> dict[str, ObjectEntry]:
        base = self.root / self.app
        if not base.is_dir():
            return {}
        now = time.time()
        found: dict[str, ObjectEntry] = {}
        for directory in base.iterdir():
            if not directory.is_dir():
                continue
            try:
                modified = directory.stat().st_mtime
            except OSError:
                modified = 0.0
            content = directory / CONTENT
            found[directory.name] = ObjectEntry(
                str(content), max(0.0, now - modified), content.is_file()
            )
        return found
