"""AppDirectory: which apps this instance serves, and their AppActors.

Requests resolve `{app}` here. A known app is a dictionary read; an app this instance has not
started yet (created on another instance, or first request after boot) is started once, with
concurrent first requests sharing that start. Unknown names are remembered briefly (negative cache)
so a flood of requests for a missing app does not hit the management database each time; app
create/delete notifications from any instance clear or update the cache immediately.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from psycopg_pool import AsyncConnectionPool

from rocketd.actors.app import RELOAD, AppActor
from rocketd.actors.listener import MetadataListener
from rocketd.actors.supervisor import Supervisor
from rocketd.config import Settings
from rocketd.db.notify import (
    AppChanged,
    MetadataChanged,
    Notice,
    NoticeCodec,
    Signal,
    UserChanged,
)
from rocketd.engine.installation import BARE_KERNEL, Installation
from rocketd.engine.pipeline import ServiceKey
from rocketd.errors import ServiceUnavailable
from rocketd.logging import get_logger
from rocketd.platform import apps
from rocketd.platform.capacity import check_connection_budget

log = get_logger("rocketd.actors.directory")

SignalHandler = Callable[[str], None]
# A capability's handler of its own notice type, received on an app database.
NoticeHandler = Callable[[AppActor, Notice], Awaitable[None]]
NEGATIVE_CACHE_SECONDS = 2.0
MAX_NEGATIVE_ENTRIES = 10_000


async def for_each_running(
    actors: Iterable[AppActor], work: Callable[[AppActor], Awaitable[None]], *, what: str
) -> None:
    """`work` on each running app, one after another. An app whose work fails (its database
    down, dropped or out of connections) is logged and skipped: the next apps still get theirs,
    so one tenant's trouble never stops a background job for the rest."""
    for actor in actors:
        if not actor.running:
            continue
        try:
            await work(actor)
        except Exception:
            log.exception(f"{what} failed for one app", app=actor.app_name)


class AppDirectory:
    def __init__(
        self,
        settings: Settings,
        pool: AsyncConnectionPool[Any],
        supervisor: Supervisor,
        installation: Installation = BARE_KERNEL,
        notice_handlers: Mapping[type[Notice], NoticeHandler] | None = None,
    ) -> None:
        self._settings = settings
        self._installation = installation
        self._notice_handlers = dict(notice_handlers or {})
        self._codec = NoticeCodec(self._notice_handlers)
        self._pool = pool
        self._supervisor = supervisor
        self._actors: dict[str, AppActor] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._listeners: dict[str, MetadataListener] = {}
        self._signal_handlers: dict[str, SignalHandler] = {}
        self._missing: dict[str, float] = {}

    @property
    def services(self) -> Mapping[ServiceKey[Any], Any]:
        """The process services the capabilities provided at start (`ServiceKey`s)."""
        return self._installation.services

    @property
    def actors(self) -> dict[str, AppActor]:
        return dict(self._actors)

    async def each_running_app(
        self, work: Callable[[AppActor], Awaitable[None]], *, what: str
    ) -> None:
        """`work` on every running app served here, each app's failure its own
        (`for_each_running`): what every per-app background job uses."""
        await for_each_running(list(self._actors.values()), work, what=what)

    async def resolve(self, name: str) -> AppActor | None:
        """The running actor of an active app, None for an unknown or inactive app.

        An app whose actor is waiting to be restarted (its database is unreachable) is a 503.
        """
        actor = self._actors.get(name)
        if actor is not None:
            if not actor.running:
                raise ServiceUnavailable(f"App {name} is unavailable right now; retry shortly")
            return actor
        missing_until = self._missing.get(name)
        if missing_until is not None and missing_until > time.monotonic():
            return None
        actor = await self._load(name)
        if actor is not None and not actor.running:
            raise ServiceUnavailable(f"App {name} is unavailable right now; retry shortly")
        return actor

    async def _load(self, name: str) -> AppActor | None:
        row = await apps.find_app(self._pool, name)
        if row is None or row.status != apps.STATUS_ACTIVE:
            self._remember_missing(name)
            return None
        # Only real apps get a lock, so requests for random names cannot grow `_locks`.
        return await self._start(row)

    def _remember_missing(self, name: str) -> None:
        now = time.monotonic()
        if len(self._missing) >= MAX_NEGATIVE_ENTRIES:
            self._missing = {k: t for k, t in self._missing.items() if t > now}
            if len(self._missing) >= MAX_NEGATIVE_ENTRIES:
                self._missing.clear()
        self._missing[name] = now + NEGATIVE_CACHE_SECONDS

    def _lock_for(self, name: str) -> asyncio.Lock:
        # One start/stop at a time per app; concurrent first requests share that start.
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def _start(self, row: apps.AppRow) -> AppActor:
        async with self._lock_for(row.name):
            existing = self._actors.get(row.name)
            if existing is not None:
                return existing
            return await self._start_locked(row)

    async def _start_locked(self, row: apps.AppRow) -> AppActor:
        actor = AppActor(row, self._settings, self._installation)
        await self._supervisor.add(actor)
        # NOTIFY is per database: metadata changes are announced inside the app database's own
        # transaction, so each app gets a listener on its database (the management listener
        # only hears app lifecycle events).
        listener = MetadataListener(
            self._settings.database.direct_dsn(row.db_name),  # LISTEN: never via a pooler
            on_notify=functools.partial(self._reload_on_notify, actor),
            on_reconnect=functools.partial(self._reload_on_reconnect, actor),
            name=f"metadata-listener:{row.name}",
        )
        await self._supervisor.add(listener)
        self._actors[row.name] = actor
        self._listeners[row.name] = listener
        self._missing.pop(row.name, None)
        return actor

    def app_states(self) -> dict[str, str]:
        """Each app started here: "ok", or "unavailable" while its actor waits to be restarted
        or its metadata listener is not connected (its database does not answer). For /ready."""
        states = {}
        for name, actor in sorted(self._actors.items()):
            listener = self._listeners.get(name)
            up = actor.running and listener is not None and listener.connected
            states[name] = "ok" if up else "unavailable"
        return states

    def daemon_not_running(self) -> list[str]:
        """The supervised actors not running now, apart from apps' own (an app whose database
        fails answers 503 by itself; the daemon, its readiness and its watchdog stay healthy)."""
        per_app = {actor.name for actor in self._actors.values()} | {
            listener.name for listener in self._listeners.values()
        }
        return [name for name in self._supervisor.not_running() if name not in per_app]

    def add_signal_handler(self, name: str, handler: SignalHandler) -> None:
        """Call `handler(app_name)` whenever a committed write sends signal `name` (any
        instance's write: the signal is a NOTIFY on the app database)."""
        self._signal_handlers[name] = handler

    async def _reload_on_notify(self, actor: AppActor, payload: str) -> None:
        """A notice on the app's database: a signal for a background actor, a user change, a
        capability's own notice, or (anything else) a metadata change."""
        notice = self._codec.decode(payload)
        if isinstance(notice, Signal):
            handler = self._signal_handlers.get(notice.value)
            if handler is not None:
                handler(actor.app_name)
        elif isinstance(notice, UserChanged):
            # A user changed (users admin): forget its cached state, no metadata reload.
            actor.forget_users(notice.value or None)
        elif isinstance(notice, MetadataChanged | AppChanged):
            await self._reload(actor)
        else:
            await self._notice_handlers[type(notice)](actor, notice)

    @classmethod
    async def _reload_on_reconnect(cls, actor: AppActor) -> None:
        # Notifications sent while disconnected are lost: user changes among them too.
        actor.forget_users()
        await cls._reload(actor)

    @staticmethod
    async def _reload(actor: AppActor) -> None:
        if actor.running:
            actor.tell(RELOAD)

    async def start_existing(self) -> None:
        """Start every active app; one that fails is logged and skipped, not fatal."""
        await self._start_active(await apps.list_apps(self._pool))

    async def _start_active(self, rows: Iterable[apps.AppRow]) -> None:
        """Start the active apps among `rows` not served yet; a failure is logged and skipped."""
        for row in rows:
            if row.status != apps.STATUS_ACTIVE or row.name in self._actors:
                continue
            try:
                await self._start(row)
            except Exception:
                log.error("app failed to start; skipped", app=row.name, exc_info=True)

    async def create_app(
        self, name: object, display_name: object, db_driver: object
    ) -> apps.AppRow:
        row = await apps.create_app(self._settings, self._pool, name, display_name, db_driver)
        await self._start(row)
        await check_connection_budget(self._settings, await self.active_app_count())
        return row

    async def active_app_count(self) -> int:
        return sum(row.status == apps.STATUS_ACTIVE for row in await apps.list_apps(self._pool))

    async def delete_app(self, name: str) -> None:
        await self.forget(name)
        await apps.delete_app(self._settings, self._pool, name)

    async def forget(self, name: str) -> None:
        """Stop serving `name` here (its pool closes so the database can be dropped)."""
        async with self._lock_for(name):
            listener = self._listeners.pop(name, None)
            if listener is not None:
                await self._supervisor.remove(listener)
            actor = self._actors.pop(name, None)
            if actor is not None:
                await self._supervisor.remove(actor)

    async def on_notify(self, payload: str) -> None:
        """A `rocket_metadata` notification on the management database: `_apps:<name>` for app
        lifecycle (an app name alone is also accepted and reloads that app)."""
        notice = self._codec.decode(payload)
        if isinstance(notice, AppChanged):
            name = notice.value
            self._missing.pop(name, None)
            row = await apps.find_app(self._pool, name)
            if row is None or row.status != apps.STATUS_ACTIVE:
                await self.forget(name)
            elif name not in self._actors:
                # Created on another instance: serve it here too (background jobs cover it).
                await self.resolve(name)
            return
        actor = self._actors.get(notice.value)
        if isinstance(notice, MetadataChanged) and actor is not None:
            actor.tell(RELOAD)

    async def on_reconnect(self) -> None:
        """The listener missed notifications while it was down: recheck everything."""
        self._missing.clear()
        known = {row.name: row for row in await apps.list_apps(self._pool)}
        for name in list(self._actors):
            row = known.get(name)
            if row is None or row.status != apps.STATUS_ACTIVE:
                await self.forget(name)
            else:
                self._actors[name].tell(RELOAD)
        # Apps created meanwhile: served here too, as `on_notify` would have done. An instance
        # that only does background work gets no request that would start them lazily.
        await self._start_active(known.values())

    async def stop_all(self) -> None:
        for name in list(self._actors):
            await self.forget(name)
