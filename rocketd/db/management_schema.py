"""System tables of the management database (`_apps`, platform users and their tokens).

Column names and types follow the contract (spec/system-tables.md); additions are ours and only
additive: `_platform_refresh_tokens.token_hash`/`family_id`/`rotated_at` (refresh tokens are stored
as digests and rotated in families), `_platform_settings` (the generated platform secret),
`_login_throttle` (failed-attempt counters of every login-like endpoint, rocketd.auth.throttle),
and a unique index on `lower(_platform_users.email)` where no case-duplicates exist
(rocketd.db.email_index).
"""

from __future__ import annotations

from typing import Any

import psycopg

from rocketd.db.email_index import ensure_case_insensitive_index
from rocketd.db.migrations import Step, plan, statements


async def _platform_emails_case_insensitive(conn: psycopg.AsyncConnection[Any]) -> None:
    # Duplicates found here do not fail the upgrade: they are reported at every start.
    await ensure_case_insensitive_index(conn, "_platform_users")


MANAGEMENT_PLAN = plan(
    "management",
    [
        Step(
            1,
            "contract tables",
            statements(
                """
                create table if not exists _apps (
                  name          text primary key,
                  display_name  text not null,
                  db_name       text not null unique,
                  db_driver     text not null default 'postgres',
                  jwt_secret    text not null,
                  status        text not null default 'active',
                  created_at    timestamptz default now(),
                  updated_at    timestamptz default now()
                )
                """,
                # An upstream management database may predate db_driver.
                "alter table _apps add column if not exists db_driver text not null "
                "default 'postgres'",
                """
                create table if not exists _platform_users (
                  id            uuid primary key default gen_random_uuid(),
                  email         text not null unique,
                  password_hash text not null,
                  roles         text[] default '{platform_admin}',
                  active        boolean default true,
                  created_at    timestamptz default now(),
                  updated_at    timestamptz default now()
                )
                """,
                """
                create table if not exists _platform_refresh_tokens (
                  id         uuid primary key default gen_random_uuid(),
                  user_id    uuid not null references _platform_users(id) on delete cascade,
                  token      uuid not null unique default gen_random_uuid(),
                  expires_at timestamptz not null,
                  created_at timestamptz default now()
                )
                """,
                "create index if not exists idx_platform_refresh_tokens_token "
                "on _platform_refresh_tokens(token)",
                "create index if not exists idx_platform_refresh_tokens_expires "
                "on _platform_refresh_tokens(expires_at)",
            ),
        ),
        Step(
            2,
            "hashed rotating refresh tokens, platform settings",
            statements(
                "alter table _platform_refresh_tokens add column if not exists token_hash text",
                "alter table _platform_refresh_tokens add column if not exists family_id uuid",
                "alter table _platform_refresh_tokens add column if not exists "
                "rotated_at timestamptz",
                "create unique index if not exists idx_platform_refresh_tokens_hash "
                "on _platform_refresh_tokens(token_hash)",
                "create index if not exists idx_platform_refresh_tokens_family "
                "on _platform_refresh_tokens(family_id)",
                """
                create table if not exists _platform_settings (
                  key        text primary key,
                  value      text not null,
                  created_at timestamptz default now()
                )
                """,
            ),
        ),
        Step(
            3,
            "login throttle, case-insensitive platform emails",
            statements(
                # key: `account:<scope>:<sha256 of the lower-cased email>` or `address:<ip>`.
                """
                create table if not exists _login_throttle (
                  key          text primary key,
                  failures     timestamptz[] not null default '{}',
                  level        int not null default 0,
                  locked_until timestamptz,
                  expires_at   timestamptz not null
                )
                """,
                "create index if not exists idx_login_throttle_expires"
                " on _login_throttle(expires_at)",
            ),
            action=_platform_emails_case_insensitive,
        ),
    ],
)
