"""OTLP/HTTP export of spans (`instrumentation.otlp_endpoint`), with the OpenTelemetry SDK and
its OTLP exporter: the optional extra `pip install rocketd[otel]`.

Every trace that reaches the event buffer is also handed, as OpenTelemetry spans, to a
`BatchSpanProcessor`, which exports from its own thread: a slow or absent collector never holds
a request (its queue is bounded; what does not fit is dropped by the SDK). Ids map one to one: a
trace id is the UUID's 128 bits, a span id the last 64 bits of the span's UUID, so the trace a
collector shows is the one `GET /_events/trace/{id}` returns; a request that came with a W3C
`traceparent` is parented under the caller's span.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from rocketd import __version__
from rocketd.tracing import EventRow

EXPORT_DELAY_MS: Final = 500
MAX_QUEUE: Final = 20_000
_CLIENT_ACTIONS: Final = frozenset({"webhook.dispatch", "query.execute"})


class OtlpUnavailable(RuntimeError):
    pass


def _span_id(text: str) -> int:
    """The OTLP span id of a span: the last 64 bits of its UUID (rocketd's span ids keep their
    per-process counter there)."""
    return int(text.replace("-", "")[16:], 16)


def _attribute(value: Any) -> Any:
    if isinstance(value, str | bool | int | float):
        return value
    return json.dumps(value, default=str, separators=(",", ":"))


class OtlpExporter:
    """Turns finished `_events` rows into OpenTelemetry spans and exports them over OTLP/HTTP."""

    def __init__(self, endpoint: str, processor: Any = None) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise OtlpUnavailable(
                "instrumentation.otlp_endpoint needs the OpenTelemetry SDK: "
                "pip install 'rocketd[otel]'"
            ) from exc
        self.resource = Resource.create({"service.name": "rocketd", "service.version": __version__})
        self.processor = processor or BatchSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint),
            max_queue_size=MAX_QUEUE,
            schedule_delay_millis=EXPORT_DELAY_MS,
        )

    def export(self, app: str, rows: Sequence[EventRow]) -> None:
        for row in rows:
            self.processor.on_end(self._span(app, row))

    def _span(self, app: str, row: EventRow) -> Any:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
        from opentelemetry.trace.status import Status, StatusCode

        (trace_id, span_id, parent_id, event_type, source, component, action, entity,
         record_id, user_id, duration_us, status, metadata, started_ns) = row  # fmt: skip
        trace = int(trace_id.replace("-", ""), 16)
        sampled = TraceFlags(TraceFlags.SAMPLED)
        context = SpanContext(trace, _span_id(span_id), is_remote=False, trace_flags=sampled)
        remote = metadata.get("remote_parent_span_id") if parent_id is None else None
        parent = None
        if parent_id is not None:
            parent = SpanContext(trace, _span_id(parent_id), is_remote=False, trace_flags=sampled)
        elif isinstance(remote, str):
            parent = SpanContext(trace, int(remote, 16), is_remote=True, trace_flags=sampled)
        attributes: dict[str, Any] = {
            "rocketd.app": app,
            "rocketd.event_type": event_type,
            "rocketd.source": source,
            "rocketd.component": component,
        }
        for key, value in (("entity", entity), ("record_id", record_id), ("user_id", user_id)):
            if value is not None:
                attributes[f"rocketd.{key}"] = value
        for key, value in metadata.items():
            if value is not None:
                attributes[f"rocketd.{key}"] = _attribute(value)
        if source == "http":
            kind = SpanKind.SERVER
        elif action in _CLIENT_ACTIONS:
            kind = SpanKind.CLIENT
        else:
            kind = SpanKind.INTERNAL
        end_ns = started_ns + (duration_us or 0) * 1000
        return ReadableSpan(
            action,
            context=context,
            parent=parent,
            resource=self.resource,
            attributes=attributes,
            kind=kind,
            status=Status(StatusCode.ERROR if status == "error" else StatusCode.UNSET),
            start_time=started_ns,
            end_time=end_ns,
        )

    def shutdown(self) -> None:
        """Export what is queued, then stop the export thread (blocking: run it in a thread)."""
        self.processor.shutdown()
