"""The metadata listener: one dedicated connection doing `LISTEN rocket_metadata` per process.

It owns that connection and its reconnection (with backoff), and hands each notification's
payload (an app name) to the `on_notify` callback; after every reconnection it calls
`on_reconnect`, because notifications sent while it was disconnected are lost for good. It must
not reload anything itself - the callbacks tell the actors that own the metadata - and must not
share its connection: LISTEN state is per session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql

from rocketd.actors.base import (
    Actor,
    ConnectionSource,
    ExponentialBackoff,
    open_autocommit_connection,
)
from rocketd.db.notify import CHANNEL
from rocketd.logging import get_logger

log = get_logger("rocketd.actors.listener")


class MetadataListener(Actor):
    """Listens on `CHANNEL` and forwards each payload to `on_notify`.

    `on_notify` is awaited in arrival order before the next notification is read, so it should
    be quick (tell an actor, do not reload inline). An exception from either callback is logged
    and does not stop the listener: one app's broken metadata must not deafen it for the rest.
    """

    def __init__(
        self,
        connect: ConnectionSource,
        *,
        on_notify: Callable[[str], Awaitable[None]],
        on_reconnect: Callable[[], Awaitable[None]],
        name: str = "metadata-listener",
        backoff_base: float = 0.1,
        backoff_cap: float = 5.0,
        liveness_check_seconds: float = 30.0,
    ) -> None:
        super().__init__(name)
        self._connect = connect
        self._on_notify = on_notify
        self._on_reconnect = on_reconnect
        self._backoff = ExponentialBackoff(backoff_base, backoff_cap)
        self._liveness_check_seconds = liveness_check_seconds
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._listening = asyncio.Event()
        # Kept on the object, not the run: a restart after a crash is a reconnection too.
        self._has_listened = False

    @property
    def connected(self) -> bool:
        """Whether LISTEN is in effect on a live connection right now."""
        return self._listening.is_set()

    @property
    def backend_pid(self) -> int | None:
        """The PostgreSQL backend pid of the listening connection, if connected."""
        if self._connection is None or not self.connected:
            return None
        return self._connection.info.backend_pid

    async def wait_listening(self, timeout: float = 5.0) -> None:
        """Wait until LISTEN is in effect; TimeoutError if it is not within `timeout` s."""
        try:
            async with asyncio.timeout(timeout):
                await self._listening.wait()
        except TimeoutError:
            raise TimeoutError(
                f"{self.name!r} was not listening on {CHANNEL!r} within {timeout} s; "
                "check that the database is reachable (the listener logs each failed attempt)"
            ) from None

    async def run(self) -> None:
        while True:
            try:
                await self._listen_until_disconnected()
            except psycopg.Error as exc:
                # Whatever failed - connect, LISTEN, reading - the cure is a fresh connection.
                await self._close_connection()
                delay = self._backoff.next_delay()
                log.warning(
                    "metadata listener disconnected",
                    actor=self.name,
                    error=str(exc).strip(),
                    retry_in=delay,
                )
                await asyncio.sleep(delay)

    async def on_stop(self) -> None:
        await self._close_connection()

    async def _listen_until_disconnected(self) -> None:
        """Connect, LISTEN, then deliver notifications until the connection fails (it raises)."""
        connection = await open_autocommit_connection(self._connect)
        self._connection = connection
        await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        self._listening.set()
        self._backoff.reset()
        log.info(
            "metadata listener listening",
            actor=self.name,
            channel=CHANNEL,
            backend_pid=connection.info.backend_pid,
        )
        if self._has_listened:
            # Called after LISTEN, so a change made during the reload is still notified.
            await self._call_on_reconnect()
        self._has_listened = True
        while True:
            async for notification in connection.notifies(timeout=self._liveness_check_seconds):
                await self._deliver(notification.payload)
            # A silently dropped TCP connection never raises on its own: after a quiet spell,
            # touch the server so a dead connection is noticed and replaced.
            await connection.execute("SELECT 1")

    async def _deliver(self, app_name: str) -> None:
        try:
            await self._on_notify(app_name)
        except Exception:
            log.exception("metadata notification handler failed", actor=self.name, app=app_name)

    async def _call_on_reconnect(self) -> None:
        try:
            await self._on_reconnect()
        except Exception:
            log.exception("metadata reconnect handler failed", actor=self.name)

    async def _close_connection(self) -> None:
        self._listening.clear()
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
