"""The installed capabilities, in order.

The runtime, the HTTP factory, the snapshot loader, export/import and the notice dispatcher
iterate `INSTALLED`: a new capability is one package under `rocketd/capabilities/` exporting a
`CAPABILITY` (see `rocketd/extensions.py`) plus one line here. The order is the order of their
metadata kinds in export/import (an item may name the ones before it: entities and relations
first, then rules, state machines, workflows, permissions, ...) and of their routes; stages are
ordered by their own `order`.
"""

from __future__ import annotations

from typing import Final

from rocketd.capabilities import (
    events,
    files,
    indexes,
    permissions,
    rules,
    schema_io,
    state_machines,
    ui_configs,
    users,
    webhooks,
    workflows,
)
from rocketd.extensions import Capability

INSTALLED: Final[tuple[Capability, ...]] = (
    rules.CAPABILITY,
    state_machines.CAPABILITY,
    workflows.CAPABILITY,
    permissions.CAPABILITY,
    users.CAPABILITY,
    webhooks.CAPABILITY,
    files.CAPABILITY,
    ui_configs.CAPABILITY,
    schema_io.CAPABILITY,
    events.CAPABILITY,
    indexes.CAPABILITY,
)
