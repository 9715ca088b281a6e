"""UI configs (`_ui_configs`): per-entity client configuration, admin-managed, read by apps."""

from __future__ import annotations

from rocketd.capabilities.ui_configs import routes
from rocketd.extensions import Capability

CAPABILITY = Capability(name="ui_configs", add_routes=routes.add_routes)

__all__ = ["CAPABILITY"]
