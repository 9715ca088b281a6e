"""The files' process service: the configured storage backend, shared by every app."""

from __future__ import annotations

from typing import Final

from rocketd.extensions import ServiceKey
from rocketd.storage import StorageDriver

STORAGE: Final[ServiceKey[StorageDriver]] = ServiceKey("files.storage")
