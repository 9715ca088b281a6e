"""Post-commit signals reach the registered handler only when the transaction commits."""

from __future__ import annotations

from typing import Any

import psycopg

from rocketd.engine.signals import RETURNING_SIGNAL, send_signal, signal_params
from tests.support.apps import new_app
from tests.support.databases import dsn_for
from tests.support.helpers import wait_until


async def test_committed_signal_reaches_handler_and_rolled_back_one_does_not(
    client: Any, runtime: Any, pg_dsn: str
) -> None:
    app = await new_app(client)
    seen: list[tuple[str, str]] = []
    runtime.services.directory.add_signal_handler("probe", lambda a: seen.append(("probe", a)))
    runtime.services.directory.add_signal_handler("other", lambda a: seen.append(("other", a)))
    async with await psycopg.AsyncConnection.connect(dsn_for(pg_dsn, f"rocket_{app.name}")) as conn:
        async with conn.transaction():
            await send_signal(conn, "other")
        try:
            async with conn.transaction():
                await send_signal(conn, "probe")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        async with conn.transaction():
            await send_signal(conn, "probe")
    await wait_until(lambda: ("probe", app.name) in seen, "the committed probe signal")
    assert seen.count(("probe", app.name)) == 1  # the rolled-back one never arrived
    assert ("other", app.name) in seen


async def test_a_signal_in_an_insert_wakes_once_per_committed_transaction(
    client: Any, runtime: Any, pg_dsn: str
) -> None:
    app = await new_app(client)
    seen: list[str] = []
    runtime.services.directory.add_signal_handler("rows", seen.append)
    sentinel: list[str] = []
    runtime.services.directory.add_signal_handler("sentinel", sentinel.append)
    insert = "insert into _probe (n) values (%s)" + RETURNING_SIGNAL
    dsn = dsn_for(pg_dsn, f"rocket_{app.name}")
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("create temporary table _probe (n int)")
        try:
            async with conn.transaction():
                await conn.execute(insert, (0, *signal_params("rows")))
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        async with conn.transaction():
            for n in (1, 2, 3):  # three rows, identical notifications: delivered once
                await conn.execute(insert, (n, *signal_params("rows")))
        async with conn.transaction():
            await conn.execute(insert, (4, *signal_params("rows")))
        # Notifications of one session arrive in commit order: once the sentinel is in, any
        # third (duplicate or rolled-back) "rows" signal would have arrived before it.
        async with conn.transaction():
            await send_signal(conn, "sentinel")
    await wait_until(lambda: sentinel == [app.name], "the sentinel signal")
    assert seen == [app.name, app.name]
