"""Post-commit signals: wake a background actor once a write transaction commits.

Code inside a write transaction calls `send_signal(conn, "webhooks")`, or appends
`RETURNING_SIGNAL` to the INSERT of the row the signal is about. It is a NOTIFY on the app
database, so PostgreSQL delivers it only if the transaction commits, to every rocketd instance
listening on that database. Each instance's AppDirectory passes it to the handler registered for
that name (e.g. the WebhookDispatcher), which then claims the pending rows (`FOR UPDATE SKIP
LOCKED`), so exactly one instance works on each row. A lost signal only delays work until the next
scheduler sweep; it never loses any.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from rocketd.actors.listener import METADATA_CHANNEL

SIGNAL_PREFIX = "signal:"


async def send_signal(conn: AsyncConnection[Any], name: str) -> None:
    await conn.execute("select pg_notify(%s, %s)", signal_params(name))


# Appended to an INSERT of one row, this sends the signal in that same statement (one round trip
# less than `send_signal`); its parameters come after the INSERT's (`signal_params`). PostgreSQL
# delivers identical notifications of one transaction once, so several such rows wake once.
RETURNING_SIGNAL = " returning pg_notify(%s, %s)"


def signal_params(name: str) -> tuple[str, str]:
    return (METADATA_CHANNEL, SIGNAL_PREFIX + name)


def parse_signal(payload: str) -> str | None:
    """The signal name of a notification payload, or None when it is not a signal."""
    return payload[len(SIGNAL_PREFIX) :] if payload.startswith(SIGNAL_PREFIX) else None
