"""The workflows' part of the app snapshot: the valid `_workflows` of the app, compiled."""

from __future__ import annotations

from typing import Final

from rocketd.capabilities.workflows.admin import EMPTY_WORKFLOW_BOOK, WorkflowBook
from rocketd.extensions import SnapshotKey

WORKFLOWS: Final[SnapshotKey[WorkflowBook]] = SnapshotKey("workflows", EMPTY_WORKFLOW_BOOK)
