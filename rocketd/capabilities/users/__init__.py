"""App users (`_users`) and invites: the users admin, the invite flow, the password policy.

The per-request check that a token's user still exists is identity infrastructure
(`rocketd/auth/user_states.py`); this capability announces `UserChanged` when a user changes.
"""

from __future__ import annotations

from rocketd.capabilities.users import invites, routes, users
from rocketd.extensions import Capability

CAPABILITY = Capability(
    name="users", kinds=(*users.KINDS, *invites.KINDS), add_routes=routes.add_routes
)

__all__ = ["CAPABILITY"]
