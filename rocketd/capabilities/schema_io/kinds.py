"""Today's metadata kinds, in the order of the export/import document.

THIS IS THE ONE PLACE TO REPLACE when capabilities are installed from one list
(`capabilities.INSTALLED`): the runtime will hand export/import the kinds of the installed
capabilities (the kernel's entities and relations first), and this module goes away. Until then
it is the only module of `schema_io` that names other capabilities, reaching past their package
`__init__` (which export nothing yet).
"""

from __future__ import annotations

from typing import Any

from rocketd.capabilities.permissions.admin import KINDS as PERMISSION_KINDS
from rocketd.capabilities.rules.admin import KINDS as RULE_KINDS
from rocketd.capabilities.state_machines.admin import KINDS as STATE_MACHINE_KINDS
from rocketd.capabilities.ui_configs.ui_configs import KINDS as UI_CONFIG_KINDS
from rocketd.capabilities.webhooks.admin import KINDS as WEBHOOK_KINDS
from rocketd.capabilities.workflows.admin import KINDS as WORKFLOW_KINDS
from rocketd.engine.admin import MetadataKind
from rocketd.engine.metadata_admin import KERNEL_KINDS


def document_kinds() -> tuple[MetadataKind[Any], ...]:
    """Entities, relations, then rules, state machines, workflows, permissions, webhooks and UI
    configs: the order items are validated and written in (an item may use the ones before)."""
    return (
        *KERNEL_KINDS,
        *RULE_KINDS,
        *STATE_MACHINE_KINDS,
        *WORKFLOW_KINDS,
        *PERMISSION_KINDS,
        *WEBHOOK_KINDS,
        *UI_CONFIG_KINDS,
    )
