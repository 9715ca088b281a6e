"""Versioned, idempotent schema upgrades for system tables.

A `SchemaPlan` is an ordered list of `Step`s for one scope (the management database, or every app
database). `apply_plan` runs the steps a database has not seen yet, each in its own transaction
together with the row that records it in `_schema_versions`, under a transaction-scoped advisory
lock so two instances booting at once never apply a step twice. A later release adds a step at the
end of a plan; it never edits a step that has shipped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import LiteralString

import psycopg

StepAction = Callable[[psycopg.AsyncConnection], Awaitable[None]]


@dataclass(frozen=True)
class Step:
    """One upgrade: DDL statements (or a callable for data fixes), applied exactly once."""

    version: int
    name: str
    statements: tuple[LiteralString, ...] = ()
    action: StepAction | None = None


@dataclass(frozen=True)
class SchemaPlan:
    scope: str
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        versions = [s.version for s in self.steps]
        if versions != sorted(set(versions)):
            raise ValueError(f"schema plan {self.scope}: versions must be unique and ascending")

    @property
    def latest(self) -> int:
        return self.steps[-1].version if self.steps else 0


_VERSIONS_DDL = """
create table if not exists _schema_versions (
  scope      text not null,
  version    int  not null,
  name       text not null,
  applied_at timestamptz not null default now(),
  primary key (scope, version)
)
"""

# Fixed key for the bootstrap lock: one schema upgrade at a time per database.
_LOCK_KEY = 0x726F636B6574_01


async def apply_plan(conn: psycopg.AsyncConnection, plan: SchemaPlan) -> list[int]:
    """Bring the database on `conn` up to `plan.latest`; return the versions applied now."""
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        await conn.execute(_VERSIONS_DDL)
    for step in plan.steps:
        async with conn.transaction():
            await conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            cur = await conn.execute(
                "select 1 from _schema_versions where scope = %s and version = %s",
                (plan.scope, step.version),
            )
            if await cur.fetchone():
                continue
            for statement in step.statements:
                await conn.execute(statement)
            if step.action is not None:
                await step.action(conn)
            await conn.execute(
                "insert into _schema_versions (scope, version, name) values (%s, %s, %s)",
                (plan.scope, step.version, step.name),
            )
            applied.append(step.version)
    return applied


def statements(*ddl: LiteralString) -> tuple[LiteralString, ...]:
    """Strip and keep non-empty DDL statements (one statement per string)."""
    return tuple(s.strip() for s in ddl if s.strip())


def plan(scope: str, steps: Sequence[Step]) -> SchemaPlan:
    return SchemaPlan(scope=scope, steps=tuple(steps))
