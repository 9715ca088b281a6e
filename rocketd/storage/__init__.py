"""File storage: where uploaded bytes live. Handlers talk to the `Storage` interface only; the
backend is picked by `storage.driver` (`open_storage`), so another one can be added here without
touching the files API."""

from __future__ import annotations

from rocketd.storage.base import Storage, StoredObject
from rocketd.storage.local import LocalStorage

__all__ = ["LocalStorage", "Storage", "StoredObject", "open_storage"]


def open_storage(driver: str, local_path: str) -> Storage:
    if driver == "local":
        return LocalStorage(local_path)
    raise ValueError(f"unknown storage driver: {driver}")
