"""Schemas and definitions several test modules load: a numbered note, the leave-request entity
and its approval workflow (docs/workflows.md's shape)."""

from __future__ import annotations

from typing import Any

PK = {"field": "id", "type": "uuid", "generated": True}
# The smallest entity worth writing: a generated id and a number.
NOTE = {
    "name": "note",
    "table": "notes",
    "primary_key": PK,
    "fields": [{"name": "id", "type": "uuid"}, {"name": "n", "type": "integer"}],
}
LEAVE = {
    "name": "leave_request",
    "table": "leave_requests",
    "primary_key": PK,
    "soft_delete": True,
    "fields": [
        {"name": "id", "type": "uuid"},
        {"name": "days", "type": "int"},
        {"name": "manager_id", "type": "string"},
        {"name": "status", "type": "string"},
        {"name": "decided_at", "type": "timestamp"},
        {"name": "updated_at", "type": "timestamp", "auto": "update"},
    ],
}


def set_status(value: str) -> dict[str, Any]:
    return {
        "type": "set_field",
        "entity": "leave_request",
        "record_id": "context.record_id",
        "field": "status",
        "value": value,
    }


LEAVE_FLOW: dict[str, Any] = {
    "name": "leave_approval",
    "trigger": {
        "type": "state_change",
        "entity": "leave_request",
        "field": "status",
        "to": "pending",
    },
    "context": {"record_id": "record.id", "days": "record.days", "manager": "record.manager_id"},
    "steps": [
        {
            "id": "check_days",
            "type": "condition",
            "expression": "context.days > 5",
            "on_true": {"goto": "manager_review"},
            "on_false": {"goto": "auto_approve"},
        },
        {
            "id": "manager_review",
            "type": "approval",
            "assignee": {"type": "role", "role": "manager"},
            "timeout": "48h",
            "on_approve": {"goto": "hr_review"},
            "on_reject": {"goto": "reject_leave"},
            "on_timeout": {"goto": "reject_leave"},
        },
        {
            "id": "hr_review",
            "type": "approval",
            "assignee": {"type": "relation", "path": "context.manager"},
            "on_approve": {"goto": "auto_approve"},
            "on_reject": {"goto": "reject_leave"},
        },
        {
            "id": "auto_approve",
            "type": "action",
            "actions": [
                set_status("approved"),
                {
                    "type": "set_field",
                    "entity": "leave_request",
                    "record_id": "context.record_id",
                    "field": "decided_at",
                    "value": "now",
                },
            ],
            "then": "end",
        },
        {
            "id": "reject_leave",
            "type": "action",
            "actions": [set_status("rejected")],
            "then": "end",
        },
    ],
    "active": True,
}
