"""The `_events` table of every app database (contract DDL, `system-tables.md`), as this
capability's own versioned plan (scope `app:events`), applied when an app starts."""

from __future__ import annotations

from typing import Final

from rocketd.db.migrations import SchemaPlan, Step, plan, statements

EVENTS_PLAN: Final[SchemaPlan] = plan(
    "app:events",
    [
        Step(
            1,
            "events table and its indexes",
            statements(
                """
                create table if not exists _events (
                  id              uuid primary key default gen_random_uuid(),
                  trace_id        uuid not null,
                  span_id         uuid not null,
                  parent_span_id  uuid,
                  event_type      text not null,
                  source          text not null,
                  component       text not null,
                  action          text not null,
                  entity          text,
                  record_id       text,
                  user_id         uuid,
                  duration_ms     double precision,
                  status          text,
                  metadata        jsonb,
                  created_at      timestamptz not null default now()
                )
                """,
                "create index if not exists idx_events_trace on _events(trace_id)",
                "create index if not exists idx_events_entity_created "
                "on _events(entity, created_at desc)",
                "create index if not exists idx_events_created on _events(created_at desc)",
                "create index if not exists idx_events_type_source on _events(event_type, source)",
            ),
        ),
    ],
)
