"""Per-app settings: typed sections that capabilities declare, stored per app in `_app_settings`.

A section is a frozen dataclass of plain values (`bool`, `int`, `float`, `str`, `tuple[str, ...]`)
whose instance with no arguments holds the defaults, declared once:

    @dataclass(frozen=True)
    class Digest:
        enabled: bool = False
        hour: int = 7

    DIGEST = AppSettingsSection("digest", Digest(), checks={"hour": between(0, 23)})

The dataclass *is* the schema (as in `rocketd.config`): the section's keys, their types, their
defaults and the error messages all come from it. An app stores, per section, only the keys an
admin set (one jsonb row per section), so a default changed by a later release reaches every app
that did not override it. Reading a section gives the defaults with the stored keys over them.

Changes are admin changes like any other (`engine.admin`): one transaction under the app's
metadata lock, all sections of a request validated before anything is written (422 naming every
key at fault, nothing written), and a `MetadataChanged` notice in the same transaction.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Generic, TypeVar

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from rocketd.db.notify import MetadataChanged, send
from rocketd.engine.admin import AdminCall, Saved, lock_metadata
from rocketd.errors import ErrorDetail, ValidationFailed
from rocketd.logging import get_logger

log = get_logger("rocketd.engine.app_settings")

MAX_TEXT: Final = 1000  # characters of a string value (and of each item of a list)
MAX_ITEMS: Final = 100  # items of a list value
TABLE: Final = "_app_settings"

T = TypeVar("T")
Check = Callable[[Any], str | None]  # a problem with a valid-typed value ("must be ..."), or None

_TYPE_WORDS: Final = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    tuple: "an array of strings",
}


def between(low: float, high: float) -> Check:
    """A check: the value lies in [low, high]."""

    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be between {low:g} and {high:g}"

    return check


class AppSettingsSection(Generic[T]):
    """One named section of an app's settings: `default` is an instance of a frozen dataclass
    (its fields are the keys); `checks` maps a key to a further check of its value."""

    def __init__(self, name: str, default: T, *, checks: Mapping[str, Check] | None = None) -> None:
        if not dataclasses.is_dataclass(default) or isinstance(default, type):
            raise TypeError(f"settings section {name}: the default must be a dataclass instance")
        self.name = name
        self.default = default
        self._types: dict[str, type] = {}
        hints = typing.get_type_hints(type(default))
        for f in dataclasses.fields(default):
            self._types[f.name] = _value_type(name, f.name, hints[f.name])
        unknown = set(checks or {}) - set(self._types)
        if unknown:
            raise ValueError(f"settings section {name}: checks for unknown keys {sorted(unknown)}")
        self._checks = dict(checks or {})

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._types)

    def problems(self, raw: object) -> list[ErrorDetail]:
        """What is wrong with `raw` as (part of) this section: details whose `field` is the key
        (relative to the section) and whose message names `section.key`."""
        if not isinstance(raw, Mapping):
            return [ErrorDetail(f"{self.name} must be an object", "", "type")]
        out: list[ErrorDetail] = []
        for key in sorted(k for k in raw if k not in self._types):
            out.append(
                ErrorDetail(
                    f"unknown key {self.name}.{key} (known: {', '.join(self.keys)})",
                    str(key),
                    "unknown",
                )
            )
        for key, value in raw.items():
            if key not in self._types or value is None:
                continue
            problem = _type_problem(self._types[key], value)
            if problem is not None:
                out.append(ErrorDetail(f"{self.name}.{key} {problem}", key, "type"))
                continue
            problem = self._check(key, value)
            if problem is not None:
                out.append(ErrorDetail(f"{self.name}.{key} {problem}", key, "invalid"))
        return out

    def _check(self, key: str, value: Any) -> str | None:
        check = self._checks.get(key)
        return None if check is None else check(_python(self._types[key], value))

    def overrides(
        self, stored: Mapping[str, Any] | None, sent: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The keys an app sets after a change: the stored ones, then `sent` over them; a key
        sent as null goes back to its default. `sent` must have no `problems`."""
        out = {k: v for k, v in (stored or {}).items() if k in self._types}
        for key, value in sent.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = _stored(self._types[key], value)
        return out

    def value(self, stored: object) -> T:
        """The section's effective value: the defaults, with the stored keys that are still
        valid over them (others are logged and ignored: a stored row never breaks a read)."""
        if not isinstance(stored, Mapping):
            return self.default
        usable: dict[str, Any] = {}
        for key, raw in stored.items():
            problem = (
                "is not a key"
                if key not in self._types
                else _type_problem(self._types[key], raw) or self._check(key, raw)
            )
            if problem is None:
                usable[key] = _python(self._types[key], raw)
            else:
                log.warning("stored app setting ignored", key=f"{self.name}.{key}", problem=problem)
        return typing.cast(T, dataclasses.replace(typing.cast(Any, self.default), **usable))

    def to_json(self, value: T) -> dict[str, Any]:
        return {key: _json(getattr(value, key)) for key in self.keys}


def _value_type(section: str, key: str, hint: Any) -> type:
    if hint in (bool, int, float, str):
        return typing.cast(type, hint)
    if typing.get_origin(hint) is tuple and typing.get_args(hint) == (str, ...):
        return tuple
    raise TypeError(f"settings section {section}: key {key} has unsupported type {hint!r}")


def _type_problem(kind: type, value: Any) -> str | None:
    """Why `value` (from JSON) is not a `kind`, or None."""
    ok: bool
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    elif kind is str:
        ok = isinstance(value, str)
        if ok and len(value) > MAX_TEXT:
            return f"must be at most {MAX_TEXT} characters"
    else:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if ok and len(value) > MAX_ITEMS:
            return f"must have at most {MAX_ITEMS} items"
        if ok and any(len(v) > MAX_TEXT for v in value):
            return f"items must be at most {MAX_TEXT} characters"
    return None if ok else f"must be {_TYPE_WORDS[kind]}"


def _stored(kind: type, value: Any) -> Any:
    """A valid JSON value as it is stored (`4.0` for an int key is stored as 4)."""
    if kind is int:
        return int(value)
    if kind is float:
        return float(value)
    return value


def _python(kind: type, value: Any) -> Any:
    """A valid JSON value as the section's dataclass holds it (arrays become tuples)."""
    return tuple(value) if kind is tuple else _stored(kind, value)


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


Sections = Sequence[AppSettingsSection[Any]]

# The kernel's own sections (none yet); capabilities declare theirs, and the app factory hands
# the HTTP routes and export/import the installed ones.
KERNEL_SECTIONS: Final[tuple[AppSettingsSection[Any], ...]] = ()


def section_named(sections: Sections, name: str) -> AppSettingsSection[Any] | None:
    return next((s for s in sections if s.name == name), None)


async def stored_settings(conn: AsyncConnection[Any]) -> dict[str, Any]:
    """section name -> the keys the app set (every stored row, declared or not)."""
    cur = await conn.execute("select section, value from _app_settings")
    return {row[0]: row[1] for row in await cur.fetchall()}


def settings_json(sections: Sections, stored: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared section with its effective values (defaults filled in)."""
    return {s.name: s.to_json(s.value(stored.get(s.name))) for s in sections}


async def load_app_settings(conn: AsyncConnection[Any], sections: Sections) -> dict[str, Any]:
    """section name -> its effective value (the dataclass), for every declared section."""
    stored = await stored_settings(conn)
    return {s.name: s.value(stored.get(s.name)) for s in sections}


async def read_settings(pool: AsyncConnectionPool[Any], sections: Sections) -> dict[str, Any]:
    async with pool.connection() as conn:
        return settings_json(sections, await stored_settings(conn))


def body_problems(sections: Sections, body: Mapping[str, Any]) -> list[ErrorDetail]:
    """Every problem of a PUT body `{section: {key: value}}`, with `section.key` fields."""
    out: list[ErrorDetail] = []
    for name, raw in body.items():
        section = section_named(sections, name)
        if section is None:
            known = ", ".join(s.name for s in sections) or "none are declared"
            out.append(
                ErrorDetail(f"unknown settings section: {name} (known: {known})", name, "unknown")
            )
            continue
        for d in section.problems(raw):
            out.append(ErrorDetail(d.message, f"{name}.{d.field}" if d.field else name, d.rule))
    return out


def rejected(problems: Sequence[ErrorDetail]) -> ValidationFailed:
    return ValidationFailed("; ".join(d.message for d in problems), list(problems))


async def write_section(
    conn: AsyncConnection[Any], section: AppSettingsSection[Any], overrides: Mapping[str, Any]
) -> None:
    """Store a section's overrides (an empty set removes the row: all defaults again)."""
    if not overrides:
        await conn.execute("delete from _app_settings where section = %s", (section.name,))
        return
    await conn.execute(
        "insert into _app_settings (section, value) values (%s, %s) on conflict (section)"
        " do update set value = excluded.value, updated_at = now()",
        (section.name, Jsonb(dict(overrides))),
    )


async def update_settings(
    pool: AsyncConnectionPool[Any], call: AdminCall, sections: Sections, body: Mapping[str, Any]
) -> Saved:
    """A PUT: each section sent is changed key by key (a key sent as null returns to its
    default); every section is validated before anything is written. Answers every section."""
    problems = body_problems(sections, body)
    if problems:
        raise rejected(problems)
    notice = MetadataChanged(call.app_name)
    async with pool.connection() as conn, conn.transaction():
        await lock_metadata(conn)
        stored = await stored_settings(conn)
        for name, sent in body.items():
            section = section_named(sections, name)
            if section is None:  # refused above
                continue
            overrides = section.overrides(stored.get(name), sent)
            await write_section(conn, section, overrides)
            stored[name] = overrides
        await send(conn, notice)
    return Saved(settings_json(sections, stored), (notice,))
