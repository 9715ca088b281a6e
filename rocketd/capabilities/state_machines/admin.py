"""The state-machine kind (`_state_machines`): one machine per (entity, field).

State machines run on the generic admin runner (`engine.admin`), like rules: validated against
the entities as stored now (states checked against the field, guards and action expressions
compiled when saved), one transaction under the app's metadata lock, `NOTIFY rocket_metadata`
in it; a PUT keeps what it omits (C28). A second machine for a field already governed is a 409.
The get route adds `graph` (states and edges) to the row. The snapshot loads machines with the
rules (`capabilities.rules.admin.load_rule_book`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import replace
from typing import Any, Final

from psycopg.types.json import Jsonb

from rocketd.capabilities.state_machines.model import (
    StateMachine,
    parse_state_machine,
    state_machine_problems_in,
)
from rocketd.engine.admin import AdminCall, Change, MetadataKind, Row, raw_text
from rocketd.errors import Conflict, ErrorDetail
from rocketd.metadata.parse import MetadataError
from rocketd.metadata.registry import Registry


class StateMachineKind(MetadataKind[StateMachine]):
    name = "state_machines"
    path = "state-machines"
    table = "_state_machines"
    label = "State machine"
    columns = ("entity", "field", "definition", "active")
    list_order = ("entity", "field", "created_at", "id")
    import_key_columns = ("entity", "field")

    def parse(self, body: object, call: AdminCall) -> StateMachine:
        return parse_state_machine(body)

    def problems_in(
        self, registry: Registry, item: StateMachine, stored: Row | None
    ) -> list[ErrorDetail]:
        return state_machine_problems_in(registry, item)

    def values(self, item: StateMachine) -> tuple[Any, ...]:
        return (item.entity, item.field, Jsonb(dict(item.raw_definition)), item.active)

    async def check_unique(self, change: Change, item: StateMachine) -> None:
        cur = await change.conn.execute(
            "select id from _state_machines where entity = %s and field = %s"
            " and id is distinct from %s",
            (item.entity, item.field, change.key),
        )
        other = await cur.fetchone()
        if other is not None:
            raise Conflict(
                f"A state machine for {item.entity}.{item.field} already exists: {other[0]}"
            )

    def get_json(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The row plus `graph` (states and edges, additive), null when the row no longer parses."""
        out = self.row_json(row)
        try:
            machine = parse_state_machine({k: row[k] for k in self.columns})
        except MetadataError:
            out["graph"] = None
        else:
            out["graph"] = machine.graph()
        return out

    def saved_json(self, item: StateMachine, row: Row) -> Any:
        return replace(item, id=str(row["id"])).to_json()

    def key_of(self, item: StateMachine) -> Hashable:
        return (item.entity, item.field)

    def raw_label(self, raw: object) -> str:
        return raw_text(raw, "entity", "field")

    def problem_label(self, raw: object, item: StateMachine) -> str:
        return f"{item.entity}.{item.field}"

    def skip_label(self, raw: object, item: StateMachine | None) -> str:
        return f"{item.entity}.{item.field}" if item else self.raw_label(raw)


STATE_MACHINES: Final = StateMachineKind()
KINDS: Final[tuple[MetadataKind[Any], ...]] = (STATE_MACHINES,)
