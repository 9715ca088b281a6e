"""Timestamps on the wire: one text form for every row rocketd returns.

The contract (spec README, "Value encoding") asks for RFC 3339 in UTC with a `Z`; PostgreSQL hands
`timestamptz` columns back as aware datetimes in the session's zone. This module imports nothing
of rocketd, so every layer may use it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def iso_utc(value: datetime) -> str: ...
@overload
def iso_utc(value: None) -> None: ...
@overload
def iso_utc(value: datetime | None) -> str | None: ...
def iso_utc(value: datetime | None) -> str | None:
    """`2026-02-22T10:15:30.123456Z` for an aware datetime; None stays None."""
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def now_text() -> str:
    """The current time to the second, `2026-02-22T10:15:30Z`: payload and document stamps."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
