"""State machines on entity fields: initial states, transitions with roles and guards, actions.

Public API for other capabilities: `StateChanged` (the domain event of a transition),
`state_text` (a state value as the text transitions name).
"""

from __future__ import annotations

from rocketd.capabilities.state_machines.admin import KINDS
from rocketd.capabilities.state_machines.decide import state_text
from rocketd.capabilities.state_machines.stages import STAGES, StateChanged
from rocketd.extensions import Capability

CAPABILITY = Capability(name="state_machines", kinds=KINDS, stages=STAGES)

__all__ = ["CAPABILITY", "StateChanged", "state_text"]
