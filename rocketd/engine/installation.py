"""What the installed capabilities contribute to every app, gathered once by the runtime.

The AppDirectory hands one `Installation` to each AppActor: the snapshot parts it loads at every
reload, the stages it compiles for each snapshot, the read hooks, the process services stages may
use, and the capabilities' own schema plans for the app database. The kernel reads it without
knowing which capability gave what.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from rocketd.db.migrations import SchemaPlan
from rocketd.db.replicas import ReplicaReads
from rocketd.engine.pipeline import AppContext, ServiceKey, Stage, StageBook, StageObserver
from rocketd.engine.read.scope import NO_READ_HOOKS, ReadHooks
from rocketd.engine.signals import SignalSender
from rocketd.engine.snapshot import AppSnapshot, SnapshotPart


@dataclass
class Installation:
    parts: tuple[SnapshotPart[Any], ...] = ()
    stages: tuple[Stage, ...] = ()
    observer: StageObserver | None = None
    read_hooks: ReadHooks = NO_READ_HOOKS
    schema_plans: tuple[SchemaPlan, ...] = ()
    # filled by the capabilities' `start` (after the apps' actors exist, before any request)
    services: dict[ServiceKey[Any], Any] = field(default_factory=dict)

    def context(
        self,
        name: str,
        pool: AsyncConnectionPool[Any],
        snapshot: AppSnapshot,
        signals: SignalSender,
        replicas: ReplicaReads | None = None,
    ) -> AppContext:
        """The AppContext of one snapshot: its stages compiled lazily, per entity."""
        services: Mapping[ServiceKey[Any], Any] = self.services
        return AppContext(
            name=name,
            pool=pool,
            snapshot=snapshot,
            signals=signals,
            stages=StageBook(snapshot, self.stages, self.observer),
            read_hooks=self.read_hooks,
            replicas=replicas,
            services=services,
        )


BARE_KERNEL = Installation()
