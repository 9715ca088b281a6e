"""System tables of every app database (`rocket_<app>`), as versioned steps.

This issue's tables are the auth ones (`_users`, `_refresh_tokens`); later capabilities append
their steps here, so every existing app database is upgraded at its next start.
"""

from __future__ import annotations

from typing import Any

import psycopg

from rocketd.db.email_index import ensure_case_insensitive_index
from rocketd.db.migrations import Step, plan, statements


async def _user_emails_case_insensitive(conn: psycopg.AsyncConnection[Any]) -> None:
    # Duplicates found here do not fail the upgrade: they are reported at every start.
    await ensure_case_insensitive_index(conn, "_users")


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
        Step(
            6,
            "webhooks and their delivery log (the webhook outbox)",
            statements(
                """
                create table if not exists _webhooks (
                  id          uuid primary key default gen_random_uuid(),
                  entity      text not null,
                  hook        text not null default 'after_write',
                  url         text not null,
                  method      text not null default 'POST',
                  headers     jsonb default '{}',
                  condition   text default '',
                  async       boolean not null default true,
                  retry       jsonb default '{"max_attempts": 3, "backoff": "exponential"}',
                  active      boolean not null default true,
                  created_at  timestamptz default now(),
                  updated_at  timestamptz default now()
                )
                """,
                # Each row is one delivery (the outbox row), updated on every attempt. Additive:
                # `webhook_id` is null for state-machine/workflow actions (`source` says which),
                # `backoff` is the webhook's retry.backoff at enqueue time.
                """
                create table if not exists _webhook_logs (
                  id               uuid primary key default gen_random_uuid(),
                  webhook_id       uuid references _webhooks(id) on delete cascade,
                  entity           text not null,
                  hook             text not null,
                  url              text not null,
                  method           text not null,
                  request_headers  jsonb default '{}',
                  request_body     jsonb default '{}',
                  response_status  int,
                  response_body    text default '',
                  status           text not null default 'pending',
                  attempt          int not null default 0,
                  max_attempts     int not null default 3,
                  next_retry_at    timestamptz,
                  error            text default '',
                  idempotency_key  text not null,
                  created_at       timestamptz default now(),
                  updated_at       timestamptz default now(),
                  source           text not null default 'webhook',
                  backoff          text not null default 'exponential',
                  duration_ms      int
                )
                """,
                "create index if not exists idx_webhook_logs_status on _webhook_logs(status)",
                "create index if not exists idx_webhook_logs_retry on _webhook_logs(next_retry_at)"
                " where status = 'retrying'",
                "create index if not exists idx_webhook_logs_due on _webhook_logs(next_retry_at)"
                " where status in ('pending', 'retrying')",
                "create index if not exists idx_webhook_logs_webhook on _webhook_logs(webhook_id)",
            ),
        ),
        Step(
            7,
            "workflow definitions and instances",
            statements(
                """
                create table if not exists _workflows (
                  id          uuid primary key default gen_random_uuid(),
                  name        text not null unique,
                  trigger     jsonb not null,
                  context     jsonb not null default '{}',
                  steps       jsonb not null default '[]',
                  active      boolean not null default true,
                  created_at  timestamptz default now(),
                  updated_at  timestamptz default now()
                )
                """,
                # Additive columns: `waiting` (paused at an approval step), `assignees` (a
                # relation assignee resolved on entry), and the trigger's entity and record.
                """
                create table if not exists _workflow_instances (
                  id                     uuid primary key default gen_random_uuid(),
                  workflow_id            uuid not null references _workflows(id)
                                         on delete cascade,
                  workflow_name          text not null,
                  status                 text not null default 'running',
                  current_step           text,
                  current_step_deadline  timestamptz,
                  context                jsonb not null default '{}',
                  history                jsonb not null default '[]',
                  created_at             timestamptz default now(),
                  updated_at             timestamptz default now(),
                  waiting                boolean not null default false,
                  assignees              text[],
                  trigger_entity         text,
                  trigger_record_id      text
                )
                """,
                "create index if not exists idx_workflow_instances_runnable"
                " on _workflow_instances(created_at) where status = 'running' and not waiting",
                "create index if not exists idx_workflow_instances_due"
                " on _workflow_instances(current_step_deadline)"
                " where status = 'running' and waiting",
                "create index if not exists idx_workflow_instances_workflow"
                " on _workflow_instances(workflow_id)",
            ),
        ),
        Step(
            8,
            "files and UI configs",
            statements(
                """
                create table if not exists _files (
                  id            uuid primary key default gen_random_uuid(),
                  filename      text not null,
                  storage_path  text not null,
                  mime_type     text not null default 'application/octet-stream',
                  size          bigint not null default 0,
                  uploaded_by   uuid,
                  created_at    timestamptz default now()
                )
                """,
                "create index if not exists idx_files_created on _files(created_at)",
                """
                create table if not exists _ui_configs (
                  id          uuid primary key default gen_random_uuid(),
                  entity      text not null,
                  scope       text not null default 'default',
                  config      jsonb not null default '{}',
                  created_at  timestamptz default now(),
                  updated_at  timestamptz default now(),
                  unique (entity, scope)
                )
                """,
            ),
        ),
        Step(
            9,
            "file chunks (the postgres storage driver)",
            statements(
                # One row per chunk; `byte_offset` lets a Range find its chunks whatever chunk
                # size wrote them. No foreign key to `_files`: the chunks are written first and
                # the `_files` row last (it is what marks the upload complete).
                """
                create table if not exists _file_chunks (
                  file_id      uuid not null,
                  seq          int not null,
                  byte_offset  bigint not null,
                  data         bytea not null,
                  created_at   timestamptz not null default now(),
                  primary key (file_id, seq)
                )
                """,
                # Uploads are mostly compressed already (images, PDFs, archives): store the
                # bytes out of line uncompressed, which also lets substring() read only a slice.
                "alter table _file_chunks alter column data set storage external",
            ),
        ),
        Step(
            10,
            "per-app settings",
            statements(
                # One row per settings section: the keys an admin set (engine.app_settings).
                """
                create table if not exists _app_settings (
                  section     text primary key,
                  value       jsonb not null default '{}',
                  updated_at  timestamptz not null default now()
                )
                """,
            ),
        ),
        Step(
            11,
            "case-insensitive user and invite emails",
            statements(
                "create index if not exists idx_invites_email_lower on _invites(lower(email))",
            ),
            action=_user_emails_case_insensitive,
        ),
        Step(
            12,
            "trace ids on outbox rows and workflow instances",
            statements(
                # The trace and span of the (traced) request that created the row, so the
                # delivery or the step, run later and maybe by another instance, joins its trace.
                "alter table _webhook_logs add column if not exists trace_id uuid",
                "alter table _webhook_logs add column if not exists parent_span_id uuid",
                "alter table _workflow_instances add column if not exists trace_id uuid",
                "alter table _workflow_instances add column if not exists parent_span_id uuid",
            ),
        ),
        Step(
            13,
            "declared index builds",
            statements(
                # One row per index the entities declare (db.declared_indexes): built by
                # CREATE INDEX CONCURRENTLY outside any admin transaction, so its state is kept.
                """
                create table if not exists _index_builds (
                  name        text primary key,
                  entity      text not null,
                  table_name  text not null,
                  definition  jsonb not null,
                  state       text not null default 'building',
                  error       text,
                  updated_at  timestamptz not null default now()
                )
                """,
            ),
        ),
    ],
)
