"""System tables of every app database (`rocket_<app>`), as versioned steps.

This issue's tables are the auth ones (`_users`, `_refresh_tokens`); later capabilities append
their steps here, so every existing app database is upgraded at its next start.
"""

from __future__ import annotations

from rocketd.db.migrations import Step, plan, statements

APP_PLAN = plan(
    "app",
    [
        Step(
            1,
            "users and refresh tokens",
            statements(
                """
                create table if not exists _users (
                  id            uuid primary key default gen_random_uuid(),
                  email         text not null unique,
                  password_hash text not null,
                  roles         text[] default '{}',
                  active        boolean default true,
                  created_at    timestamptz default now(),
                  updated_at    timestamptz default now()
                )
                """,
                """
                create table if not exists _refresh_tokens (
                  id         uuid primary key default gen_random_uuid(),
                  user_id    uuid not null references _users(id) on delete cascade,
                  token      uuid not null unique default gen_random_uuid(),
                  expires_at timestamptz not null,
                  created_at timestamptz default now()
                )
                """,
                "create index if not exists idx_refresh_tokens_token on _refresh_tokens(token)",
                "create index if not exists idx_refresh_tokens_expires "
                "on _refresh_tokens(expires_at)",
                "alter table _refresh_tokens add column if not exists token_hash text",
                "alter table _refresh_tokens add column if not exists family_id uuid",
                "alter table _refresh_tokens add column if not exists rotated_at timestamptz",
                "create unique index if not exists idx_refresh_tokens_hash "
                "on _refresh_tokens(token_hash)",
                "create index if not exists idx_refresh_tokens_family "
                "on _refresh_tokens(family_id)",
            ),
        ),
        Step(
            2,
            "entities and relations metadata",
            statements(
                """
                create table if not exists _entities (
                  name        text primary key,
                  table_name  text not null unique,
                  definition  jsonb not null,
                  created_at  timestamptz default now(),
                  updated_at  timestamptz default now()
                )
                """,
                """
                create table if not exists _relations (
                  name        text primary key,
                  source      text not null references _entities(name) on delete cascade,
                  target      text not null references _entities(name) on delete cascade,
                  definition  jsonb not null,
                  created_at  timestamptz default now(),
                  updated_at  timestamptz default now()
                )
                """,
            ),
        ),
        Step(
            3,
            "rules, state machines, permissions",
            statements(
                """
                create table if not exists _rules (
                  id          uuid primary key default gen_random_uuid(),
                  entity      text not null references _entities(name) on delete cascade,
                  hook        text not null default 'before_write',
                  type        text not null,
                  definition  jsonb not null,
                  priority    int not null default 0,
                  active      boolean not null default true,
                  created_at  timestamptz default now(),
                  updated_at  timestamptz default now()
                )
                """,
                """
                create table if not exists _state_machines (
                  id          uuid primary key default gen_random_uuid(),
                  entity      text not null references _entities(name) on delete cascade,
                  field       text not null,
                  definition  jsonb not null,
                  active      boolean not null default true,
                  created_at  timestamptz default now(),
                  updated_at  timestamptz default now()
                )
                """,
                """
                create table if not exists _permissions (
                  id          uuid primary key default gen_random_uuid(),
                  entity      text not null,
                  action      text not null,
                  roles       text[] not null default '{}',
                  conditions  jsonb default '[]',
                  created_at  timestamptz default now(),
                  updated_at  timestamptz default now()
                )
                """,
                # Additive (upstream-gaps S5): conditions checked against the resulting row.
                "alter table _permissions add column if not exists checks jsonb default '[]'",
            ),
        ),
        Step(
            4,
            "invites",
            statements(
                """
                create table if not exists _invites (
                  id          uuid primary key default gen_random_uuid(),
                  email       text not null,
                  roles       text[] default '{}',
                  token       text not null unique,
                  expires_at  timestamptz not null,
                  accepted_at timestamptz,
                  invited_by  uuid,
                  created_at  timestamptz default now()
                )
                """,
                "create index if not exists idx_invites_token on _invites(token)",
                "create index if not exists idx_invites_email on _invites(email)",
            ),
        ),
        Step(
            5,
            "outbox for state-machine webhooks and events",
            statements(
                # Written in the write transaction (committed or rolled back with the record);
                # drained by the webhook and instrumentation workers.
                """
                create table if not exists _outbox (
                  id            uuid primary key default gen_random_uuid(),
                  kind          text not null,
                  payload       jsonb not null,
                  status        text not null default 'pending',
                  attempts      int not null default 0,
                  created_at    timestamptz not null default now(),
                  available_at  timestamptz not null default now()
                )
                """,
                "create index if not exists idx_outbox_pending on _outbox(kind, available_at)"
                " where status = 'pending'",
            ),
        ),
    ],
)
