"""Post-commit signals reach the registered handler only when the transaction commits."""

from __future__ import annotations

from typing import Any

import psycopg

from rocketd.engine.signals import send_signal
from tests.apps import new_app
from tests.conftest import dsn_for
from tests.helpers import wait_until


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
