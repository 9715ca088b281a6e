"""The storage interface every backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class TooLarge(Exception):
    """The stream went past the limit; what was written is already removed."""

    def __init__(self, seen: int, limit: int) -> None:
        super().__init__(f"{seen} bytes seen, limit {limit}")
        self.seen = seen
        self.limit = limit


@dataclass(frozen=True)
class StoredObject:
    """What a successful `put` wrote: the backend's key and the byte count."""

    key: str
    size: int
    head: bytes  # the first bytes (up to 512), for content sniffing


class Storage(Protocol):
    """Per-app object storage keyed by file id. Keys are opaque to callers (kept in
    `_files.storage_path`); an app's objects never share a prefix with another app's."""

    async def put(
        self, app: str, file_id: str, chunks: AsyncIterable[bytes], limit: int
    ) -> StoredObject:
        """Write the stream; raise `TooLarge` (after removing the partial object) as soon as
        more than `limit` bytes arrive. Any other failure removes the partial object too."""
        ...

    def local_file(self, key: str) -> Path | None:
        """The object as a readable local file (served with sendfile and Range support),
        or None when it is missing."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object (a missing one is not an error)."""
        ...

    def keys(self, app: str) -> dict[str, str]:
        """Every object of the app as {file id: key} (for the orphan sweep)."""
        ...

    def key_for(self, app: str, file_id: str) -> str:
        """The key `put` uses for this file id."""
        ...
