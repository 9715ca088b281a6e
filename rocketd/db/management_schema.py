"""System tables of the management database (`_apps`, platform users and their tokens).

Column names and types follow the contract (spec/system-tables.md); additions are ours and only
additive: `_platform_refresh_tokens.token_hash`/`family_id`/`rotated_at` (refresh tokens are stored
as digests and rotated in families), `_platform_settings` (the generated platform secret).
"""

from __future__ import annotations

from rocketd.db.migrations import Step, plan, statements

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
    ],
)
