"""Every extension point of rocketd, named in one module.

A capability (rules, webhooks, workflows, ...) is a package under `rocketd/capabilities/` that
exports one `Capability` declaring what it plugs in. `rocketd/capabilities/__init__.py` lists the
installed ones (`INSTALLED`); the runtime, the HTTP factory, the snapshot loader, export/import
and the notice dispatcher iterate that list, so a new capability is one package plus one line.

| point | what it is | defined in |
|---|---|---|
| `Stage`, `Phase`, `WriteMode` | a step of the write pipeline, its phase, the modes it runs in | `engine/pipeline.py` |
| `WriteContext`, `DomainEvent` | what a stage sees of one write (and of each nested child); the events stages emit for later ones | `engine/pipeline.py` |
| `StageObserver` | wraps every stage run of a traced request (instrumentation spans) | `engine/pipeline.py` |
| `AppContext`, `Caller`, `ServiceKey` | the app a kernel call runs in, who asked, typed process services | `engine/pipeline.py`, `engine/caller.py` |
| `MetadataKind` | one declaration of an admin-managed metadata table: admin CRUD, routes, export/import | `engine/admin.py` |
| `SnapshotKey`, `SnapshotPart` | a typed part of the app snapshot and how it loads | `engine/snapshot.py` |
| `ReadHooks`, `ReadScope` | row scope, projection and cache slots of the read path | `engine/read/scope.py` |
| `AppSettingsSection` | a typed section of the per-app settings (`_admin/settings`) | `engine/app_settings.py` |
| `Notice` | a typed NOTIFY payload and its handler | `db/notify.py` |
| `Capability.start` | background services: actors, scheduler jobs, signal handlers, services | here |

The kernel modules define the types they run (the pipeline runner owns `Stage`, the snapshot
owns `SnapshotKey`), so the kernel never imports this module; this module re-exports them and
adds what only the composition root needs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from rocketd.actors.app import AppActor
from rocketd.actors.directory import AppDirectory
from rocketd.actors.scheduler import Scheduler
from rocketd.actors.supervisor import Supervisor
from rocketd.config import Settings
from rocketd.db.migrations import SchemaPlan
from rocketd.db.notify import Notice
from rocketd.engine.admin import MetadataKind
from rocketd.engine.app_settings import KERNEL_SECTIONS, AppSettingsSection
from rocketd.engine.caller import SYSTEM_CALLER, Caller
from rocketd.engine.metadata_admin import KERNEL_KINDS
from rocketd.engine.pipeline import (
    ALL_MODES,
    AppContext,
    DomainEvent,
    Phase,
    ServiceKey,
    Stage,
    StageObserver,
    WriteContext,
    WriteMode,
)
from rocketd.engine.read.scope import ReadHooks, ReadScope
from rocketd.engine.snapshot import SnapshotKey, SnapshotPart

__all__ = [
    "ALL_MODES",
    "SYSTEM_CALLER",
    "AppContext",
    "AppSettingsSection",
    "Caller",
    "Capability",
    "DomainEvent",
    "MetadataKind",
    "Notice",
    "NoticeHandler",
    "Phase",
    "ReadHooks",
    "ReadScope",
    "ServiceKey",
    "SnapshotKey",
    "SnapshotPart",
    "Stage",
    "StageObserver",
    "StartContext",
    "WriteContext",
    "WriteMode",
]

# Handles one notice received on an app database (`actor` is that app's) or, for `AppChanged`,
# on the management database (`actor` is None).
NoticeHandler = Callable[[AppActor | None, Notice], Awaitable[None]]


@dataclass
class StartContext:
    """What a capability's `start` receives: the runtime's parts, and the means to add its own.

    `background` is False on API-only instances (`background_work: false`): start no actors
    and no scheduler jobs then, only what requests need (services, signal handlers are skipped
    too: no actor would act on them).
    """

    settings: Settings
    supervisor: Supervisor
    directory: AppDirectory
    scheduler: Scheduler | None
    background: bool
    services: dict[ServiceKey[Any], Any] = field(default_factory=dict)
    _stops: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def provide(self, key: ServiceKey[Any], value: Any) -> None:
        """Make `value` reachable from every `AppContext` as `app.service(key)`."""
        if key in self.services:
            raise ValueError(f"service {key.name} is provided twice")
        self.services[key] = value

    def on_stop(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run `callback` at shutdown, after the actors stopped (in reverse order of start)."""
        self._stops.append(callback)

    async def stop(self) -> None:
        while self._stops:
            await self._stops.pop()()


@dataclass(frozen=True)
class Capability:
    """What one capability plugs in. Every field is optional."""

    name: str
    # admin-managed metadata tables: admin CRUD routes, export/import (in this order)
    kinds: tuple[MetadataKind[Any], ...] = ()
    # parts of the app snapshot, loaded at every reload
    snapshot_parts: tuple[SnapshotPart[Any], ...] = ()
    # steps of the write pipeline
    stages: tuple[Stage, ...] = ()
    # wraps every stage run (one observer may be installed)
    stage_observer: StageObserver | None = None
    # row scope / projection / cache slots of the read path
    read_hooks: ReadHooks | None = None
    # typed NOTIFY payloads this capability sends, and how each instance handles them
    notices: Mapping[type[Notice], NoticeHandler] = field(default_factory=dict)
    # its per-app settings section (`GET/PUT /api/{app}/_admin/settings`)
    app_settings: AppSettingsSection[Any] | None = None
    # its own HTTP routes (handlers live in its routes.py)
    add_routes: Callable[[web.Application], None] | None = None
    # background work and process services, started after the apps
    start: Callable[[StartContext], Awaitable[None]] | None = None
    # its own system tables in every app database: a plan of its own (scope `app:<name>`),
    # applied after the kernel's APP_PLAN when an app starts (tables that shipped before this
    # layout stay in APP_PLAN, whose steps never change)
    schema: SchemaPlan | None = None


def metadata_kinds(capabilities: tuple[Capability, ...]) -> tuple[MetadataKind[Any], ...]:
    """Every admin-managed metadata kind, in document order: the kernel's entities and relations,
    then each installed capability's kinds in `INSTALLED` order."""
    return (*KERNEL_KINDS, *(kind for c in capabilities for kind in c.kinds))


def settings_sections(capabilities: tuple[Capability, ...]) -> tuple[AppSettingsSection[Any], ...]:
    """The per-app settings sections: the kernel's, then each installed capability's."""
    return (*KERNEL_SECTIONS, *(c.app_settings for c in capabilities if c.app_settings))
