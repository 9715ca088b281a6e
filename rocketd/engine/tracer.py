"""Where requests get their trace: the `TRACER` service, provided by the events capability.

The HTTP layer asks it once per app request, after the app is resolved; without the service
(the capability not installed, or `instrumentation.enabled: false`) nothing is traced and the
request pays one dictionary lookup.
"""

from __future__ import annotations

from typing import Final, Protocol

from rocketd.engine.pipeline import AppContext, ServiceKey
from rocketd.tracing import Trace


class Tracer(Protocol):
    def begin(self, app: AppContext, trace_id: str) -> Trace | None:
        """A new trace of `app` with this id, or None when the trace is not sampled."""
        ...


TRACER: Final[ServiceKey[Tracer]] = ServiceKey("tracer")
