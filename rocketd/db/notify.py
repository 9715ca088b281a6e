"""The one NOTIFY channel of rocketd and the typed notices sent on it.

Every instance listens on `rocket_metadata` in the management database (app lifecycle) and in
each app database (everything about that app). A payload is one notice:

| notice | payload | sent by | handled by |
|---|---|---|---|
| `MetadataChanged(app)` | `<app>` | every metadata save, in its transaction | the app's actor reloads its snapshot |
| `AppChanged(name)` | `_apps:<name>` | app create/delete (management database) | the directory starts or forgets the app |
| `UserChanged(user_id)` | `users:<id>` (or `users:` for all) | users admin | the app's cached user states |
| `Signal(name)` | `signal:<name>` | writes that leave work for a background actor | the actor registered for that name |

Capabilities add their own notice types (a subclass with its own `prefix`) and register a handler
for them; `NoticeCodec` knows the types of the installed capabilities. The payload grammar is the
same one earlier releases used, so instances of both versions understand each other during a
rolling upgrade. Send a notice inside the transaction it is about: PostgreSQL delivers it only
if that transaction commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from psycopg import AsyncConnection

CHANNEL: Final = "rocket_metadata"


@dataclass(frozen=True)
class Notice:
    """One notification: a `prefix` names its type, `value` is the rest of the payload."""

    prefix: ClassVar[str] = ""
    value: str

    @property
    def payload(self) -> str:
        return self.prefix + self.value


@dataclass(frozen=True)
class MetadataChanged(Notice):
    """The metadata of app `value` changed: reload its snapshot. The payload is the bare name."""

    prefix: ClassVar[str] = ""


@dataclass(frozen=True)
class AppChanged(Notice):
    """App `value` was created, deleted or changed status (sent in the management database)."""

    prefix: ClassVar[str] = "_apps:"


@dataclass(frozen=True)
class UserChanged(Notice):
    """User `value` (empty: any user) of the app changed: forget what is cached about it."""

    prefix: ClassVar[str] = "users:"


@dataclass(frozen=True)
class Signal(Notice):
    """Committed work for the background actor registered under the name `value`."""

    prefix: ClassVar[str] = "signal:"


KERNEL_NOTICES: Final[tuple[type[Notice], ...]] = (AppChanged, UserChanged, Signal)


class NoticeCodec:
    """Turns payloads back into notices, knowing the kernel's types and the installed ones."""

    def __init__(self, extra: Iterable[type[Notice]] = ()) -> None:
        kinds = [*KERNEL_NOTICES, *extra]
        prefixes = [kind.prefix for kind in kinds]
        if "" in prefixes or len(set(prefixes)) != len(prefixes):
            raise ValueError(f"notice prefixes must be distinct and non-empty: {prefixes}")
        # longest prefix first, so `users:` never shadows a longer one that starts with it
        self._kinds = sorted(kinds, key=lambda kind: -len(kind.prefix))

    def decode(self, payload: str) -> Notice:
        for kind in self._kinds:
            if payload.startswith(kind.prefix):
                return kind(payload[len(kind.prefix) :])
        return MetadataChanged(payload)


async def send(conn: AsyncConnection[Any], notice: Notice) -> None:
    """NOTIFY `notice` on `conn` (delivered when the surrounding transaction commits)."""
    await conn.execute("select pg_notify(%s, %s)", (CHANNEL, notice.payload))


def notify_params(notice: Notice) -> tuple[str, str]:
    """The parameters of `pg_notify(%s, %s)` for `notice`, for statements that send it inline."""
    return (CHANNEL, notice.payload)
