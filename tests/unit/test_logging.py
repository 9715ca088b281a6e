"""Log output: JSON lines off a TTY, carrying the request context bound in contextvars."""

from __future__ import annotations

import io
import json
import logging

import structlog

from rocketd.logging import configure_logging, enabled, get_logger


def test_json_lines_carry_bound_request_context() -> None:
    out = io.StringIO()
    configure_logging("info", "auto", stream=out)  # StringIO is not a TTY: JSON
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(trace_id="t-1", app="shop", user_id="u-1")
    try:
        get_logger("test").info("hello", extra=1)
        get_logger("test").debug("hidden at info level")
    finally:
        structlog.contextvars.clear_contextvars()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 1
    assert lines[0]["event"] == "hello"
    assert (lines[0]["trace_id"], lines[0]["app"], lines[0]["user_id"]) == ("t-1", "shop", "u-1")
    assert lines[0]["level"] == "info" and "timestamp" in lines[0]


def test_console_format_is_not_json() -> None:
    out = io.StringIO()
    configure_logging("debug", "console", stream=out)
    get_logger("test").debug("plain")
    text = out.getvalue()
    assert "plain" in text
    assert not text.lstrip().startswith("{")


def test_enabled_follows_the_configured_level() -> None:
    out = io.StringIO()
    configure_logging("warning", "json", stream=out)
    assert not enabled(logging.INFO) and enabled(logging.WARNING) and enabled(logging.ERROR)
    configure_logging("info", "json", stream=out)
    assert enabled(logging.INFO) and not enabled(logging.DEBUG)


def test_lines_inside_a_span_name_its_trace_and_span() -> None:
    from rocketd.tracing import Trace, start_root, start_span

    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    trace = Trace("6f1c3b9e-8d2a-4c1e-9f3a-2b7d5e8c1a40", lambda rows: None)
    with start_root(trace, "http", "handler", "request") as root:
        get_logger("test").info("in the request")
        with start_span("engine", "handler", "record.get") as child:
            get_logger("test").info("in the child")
    get_logger("test").info("outside")
    first, second, third = (json.loads(line) for line in out.getvalue().splitlines())
    assert (first["trace_id"], first["span_id"]) == (trace.trace_id, root.span_id)
    assert (second["trace_id"], second["span_id"]) == (trace.trace_id, child.span_id)
    assert "span_id" not in third
