"""Which requests are traced, and where their rows go.

Sampling is decided per trace, from its id: the first 32 bits of a random UUID are uniform, so
`sampling_rate` of the traces are kept, whole, and every process (the one answering the request,
the one delivering its webhook later) decides the same for the same trace without telling each
other. A client choosing its own `X-Trace-ID` therefore chooses whether it is sampled.
"""

from __future__ import annotations

import functools
from typing import Any

from psycopg_pool import AsyncConnectionPool

from rocketd.capabilities.events.buffer import EventBuffer
from rocketd.capabilities.events.otlp import OtlpExporter
from rocketd.tracing import EventRow, Trace


def sampled(trace_id: str, rate: float) -> bool:
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    try:
        head = int(trace_id[:8], 16)
    except ValueError:
        return False
    return head < rate * 0x1_0000_0000


class AppTracer:
    """The `TRACER` service: a new `Trace` of an app whose rows go to the buffer."""

    def __init__(
        self, buffer: EventBuffer, sampling_rate: float, exporter: OtlpExporter | None = None
    ) -> None:
        self.buffer = buffer
        self.sampling_rate = sampling_rate
        self.exporter = exporter

    def begin(self, app: str, pool: AsyncConnectionPool[Any], trace_id: str) -> Trace | None:
        if not sampled(trace_id, self.sampling_rate):
            return None
        return Trace(trace_id, functools.partial(self.deliver, app, pool))

    def deliver(self, app: str, pool: AsyncConnectionPool[Any], rows: list[EventRow]) -> None:
        """A closed trace's rows: to the buffer, and to the OTLP exporter when there is one."""
        self.buffer.add(app, pool, rows)
        if self.exporter is not None:
            self.exporter.export(app, rows)
