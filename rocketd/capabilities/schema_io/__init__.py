"""Schema export, import and diff: one JSON document with an app's metadata (and sample data),
and what importing one would change."""

from __future__ import annotations

from rocketd.capabilities.schema_io import routes
from rocketd.extensions import Capability

CAPABILITY = Capability(name="schema_io", add_routes=routes.add_routes)

__all__ = ["CAPABILITY"]
