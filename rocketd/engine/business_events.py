"""Business events: named facts an app's own logic announces (`send_event` actions of state
machines and workflows today, `POST /_events` once instrumentation lands).

The kernel only defines the event and where it goes: to the `BUSINESS_EVENTS` service when a
capability provides one (the events capability records them in `_events`), else to the log, as
one structured line per event, so nothing is silently dropped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from rocketd.engine.pipeline import AppContext, ServiceKey
from rocketd.logging import get_logger

log = get_logger("rocketd.events")


@dataclass(frozen=True)
class BusinessEvent:
    action: str  # the event's name (`send_event`'s `event`)
    source: str  # state_machine | workflow | api
    entity: str | None = None
    record_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    trace_id: str | None = None


BusinessEventSink = Callable[[AppContext, BusinessEvent], Awaitable[None]]
BUSINESS_EVENTS: Final[ServiceKey[BusinessEventSink]] = ServiceKey("business_events")


async def emit_business_event(app: AppContext, event: BusinessEvent) -> None:
    """Hand `event` to the installed sink, or log it."""
    sink = app.services.get(BUSINESS_EVENTS)
    if sink is not None:
        await sink(app, event)
        return
    log.info(
        "business event",
        app=app.name,
        name=event.action,
        source=event.source,
        entity=event.entity,
        record_id=event.record_id,
        metadata=dict(event.metadata),
    )
