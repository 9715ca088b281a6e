"""The local-disk backend: `{storage.local_path}/{app}/{file_id}/content`.

The client's filename never reaches the path (upstream-gaps S17): it lives only in
`_files.filename`. Bytes are written to `content.part` and renamed into place once complete, so a
crash mid-upload leaves only a `.part` file, which the sweep removes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterable
from pathlib import Path

from rocketd.storage.base import StoredObject, TooLarge

_NAME = "content"
_HEAD = 512


class LocalStorage:
    def __init__(self, root: str) -> None:
        self.root = Path(root).resolve()

    def _dir(self, app: str, file_id: str) -> Path:
        # Both parts are validated names (app name rules, a UUID we generated): no traversal.
        str(uuid.UUID(file_id))
        if not app or "/" in app or app.startswith("."):
            raise ValueError(f"bad app name for storage: {app!r}")
        return self.root / app / file_id

    def key_for(self, app: str, file_id: str) -> str:
        return str(self._dir(app, file_id) / _NAME)

    async def put(
        self, app: str, file_id: str, chunks: AsyncIterable[bytes], limit: int
    ) -> StoredObject:
        directory = self._dir(app, file_id)
        directory.mkdir(parents=True, exist_ok=True)
        final = directory / _NAME
        partial = directory / (_NAME + ".part")
        size = 0
        head = b""
        try:
            # Chunk writes go to the page cache and return at once; only the open is offloaded.
            out = await asyncio.to_thread(partial.open, "wb")
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(size, limit)
                    if len(head) < _HEAD:
                        head += chunk[: _HEAD - len(head)]
                    out.write(chunk)
            finally:
                out.close()
            os.replace(partial, final)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return StoredObject(str(final), size, head)

    def _own(self, key: str) -> Path | None:
        path = Path(key)
        try:
            path.resolve().relative_to(self.root)
        except ValueError:
            return None  # a row pointing outside the storage root is never read or removed
        return path

    def local_file(self, key: str) -> Path | None:
        path = self._own(key)
        return path if path is not None and path.is_file() else None

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

    def keys(self, app: str) -> dict[str, str]:
        base = self.root / app
        if not base.is_dir():
            return {}
        return {d.name: str(d / _NAME) for d in base.iterdir() if d.is_dir()}
