"""Files: uploads streamed to storage, downloads with Range and ETag, `file` fields, the orphan
sweep."""

from __future__ import annotations

from rocketd.capabilities.files import routes
from rocketd.capabilities.files.stages import STAGES
from rocketd.extensions import Capability

CAPABILITY = Capability(name="files", stages=STAGES, add_routes=routes.add_routes)

__all__ = ["CAPABILITY"]
