"""UI configs (`_ui_configs`): per-entity client configuration, admin-managed, read by apps."""

from __future__ import annotations

from rocketd.capabilities.ui_configs import routes, ui_configs
from rocketd.extensions import Capability

CAPABILITY = Capability(name="ui_configs", kinds=ui_configs.KINDS, add_routes=routes.add_routes)

__all__ = ["CAPABILITY"]
