"""structlog set-up: coloured console lines on a TTY, JSON lines otherwise (systemd, files).

Request context (`trace_id`, `span_id`, `app`, `user_id`) is bound through `structlog.contextvars` by the HTTP
middlewares, so every line logged while a request is handled carries it without passing loggers
around. This module must not log secrets: callers mask DSNs before logging them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from rocketd.tracing import current_span

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# The level `configure_logging` set last (structlog's own default: everything).
_level = logging.DEBUG


def _current_span(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    """Every line logged inside a traced span names the trace and that span."""
    span = current_span()
    if span is not None:
        event["trace_id"] = span.trace.trace_id
        event["span_id"] = span.span_id
    return event


def configure_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Configure structlog (and the stdlib root logger it feeds aiohttp/psycopg messages into)."""
    out = stream if stream is not None else sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not getattr(out, "isatty", lambda: False)())
    numeric_level = _LEVELS.get(level, logging.INFO)
    global _level
    _level = numeric_level
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _current_span,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if use_json:
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=True)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # Library loggers (aiohttp.access is silenced: the trace middleware logs requests itself).
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric_level, logging.WARNING))
    logging.getLogger("aiohttp.access").setLevel(logging.ERROR)


def enabled(level: int) -> bool:
    """Whether a line at `level` (`logging.INFO`, ...) would be written. For once-per-request
    lines: a filtered call on a module's logger still costs several µs (the logger is not cached
    on first use, so that a reconfiguration reaches every module)."""
    return level >= _level


def get_logger(name: str) -> Any:
    """A structlog logger named after the module that owns it."""
    return structlog.get_logger(name)
