"""State machines on entity fields: initial states, transitions with roles and guards, actions.

Public API for other capabilities: `StateChanged` (the domain event of a transition),
`state_text` (a state value as the text transitions name).
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from rocketd.capabilities.state_machines.admin import KINDS
from rocketd.capabilities.state_machines.decide import state_text
from rocketd.capabilities.state_machines.model import MachineBook
from rocketd.capabilities.state_machines.stages import MACHINES, STAGES, StateChanged
from rocketd.extensions import Capability, SnapshotPart
from rocketd.metadata.registry import Registry


async def _load(conn: AsyncConnection[Any], registry: Registry) -> MachineBook:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("select * from _state_machines order by entity, field, id")
    return MachineBook.build(registry, await cur.fetchall())


CAPABILITY = Capability(
    name="state_machines",
    kinds=KINDS,
    snapshot_parts=(SnapshotPart(MACHINES, _load, lambda book: book.problems),),
    stages=STAGES,
)

__all__ = ["CAPABILITY", "StateChanged", "state_text"]
