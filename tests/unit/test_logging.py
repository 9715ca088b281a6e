"""Log output: JSON lines off a TTY, carrying the request context bound in contextvars."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import pytest
import structlog

from rocketd.logging import (
    configure_logging,
    enabled,
    get_logger,
    redact_text,
    writes_to_journal,
)


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


def json_lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.mark.parametrize("library", ["psycopg", "aiohttp.server", "asyncio"])
def test_library_lines_come_out_as_the_same_json(library: str) -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    structlog.contextvars.bind_contextvars(trace_id="t-2")
    try:
        logging.getLogger(library).warning("pool %s is %d%% full", "main", 90)
        logging.getLogger(library).info("chatty library detail")  # libraries: warnings and up
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger(library).exception("it failed")
        get_logger("rocketd.test").info("own line")
    finally:
        structlog.contextvars.clear_contextvars()
    first, failed, own = json_lines(out)
    assert first["event"] == "pool main is 90% full"
    assert (first["level"], first["logger"], first["trace_id"]) == ("warning", library, "t-2")
    assert set(first) >= {"timestamp", "level", "logger", "event"}
    assert failed["level"] == "error" and "ValueError: boom" in str(failed["exception"])
    assert (own["logger"], own["level"], set(own) - set(first)) == ("rocketd.test", "info", set())


def test_levels_filter_rocketd_lines_and_the_root_logger() -> None:
    out = io.StringIO()
    configure_logging("warning", "json", stream=out)
    get_logger("rocketd.test").info("dropped")
    logging.getLogger("rocketd.other").info("dropped too")
    get_logger("rocketd.test").warning("kept")
    assert [line["event"] for line in json_lines(out)] == ["kept"]


SECRET_CASES = [
    (
        "https://hooks.slack.com/services/T000/B000/XXXXSECRET",
        "https://hooks.slack.com/services/…",
    ),
    ("http://127.0.0.1:9000/hook?token=SECRET", "http://127.0.0.1:9000/hook?…"),
    ("https://user:SECRET@erp.example.com/in", "https://erp.example.com/in"),
    ("https://erp.example.com", "https://erp.example.com"),
    (
        "postgresql://rocket:SECRET@db:5432/rocket?sslmode=require",
        "postgresql://rocket:***@db:5432/rocket?sslmode=require",
    ),
    ("postgresql://rocket@db/rocket?password=SECRET", "postgresql://rocket@db/rocket?password=***"),
    (
        "host=db user=rocket password='SE CRET' dbname=x",
        "host=db user=rocket password=*** dbname=x",
    ),
    ("redis://:SECRET@cache:6379/0", "redis://:***@cache:6379/0"),
]


@pytest.mark.parametrize(("text", "shown"), SECRET_CASES)
def test_redact_text_masks_known_secret_shapes(text: str, shown: str) -> None:
    assert redact_text(f"failed: {text} (retrying)") == f"failed: {shown} (retrying)"


def test_secrets_never_reach_the_output_of_any_logger() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    hook = "https://hooks.example.com/services/T1/B2/SECRET"
    get_logger("rocketd.webhooks").warning(
        "webhook attempt failed",
        url=hook,
        targets=[hook],
        headers={"Authorization": "Bearer SECRET", "X-Api-Key": "SECRET", "Accept": "json"},
        password="SECRET",
        token_type="bearer",
    )
    logging.getLogger("psycopg").warning(
        "connection failed: postgresql://u:SECRET@h/db and password=SECRET"
    )
    try:
        raise RuntimeError("cannot reach postgresql://u:SECRET@h/db")
    except RuntimeError:
        get_logger("rocketd.runtime").exception("start failed")
    text = out.getvalue()
    assert "SECRET" not in text
    hook_line, psycopg_line, failed = json_lines(out)
    assert hook_line["url"] == "https://hooks.example.com/services/…"
    assert hook_line["targets"] == ["https://hooks.example.com/services/…"]
    assert hook_line["headers"] == {"Authorization": "***", "X-Api-Key": "***", "Accept": "json"}
    assert (hook_line["password"], hook_line["token_type"]) == ("***", "bearer")
    assert psycopg_line["event"] == "connection failed: postgresql://u:***@h/db and password=***"
    assert "postgresql://u:***@h/db" in str(failed["exception"])


def test_journald_gets_a_priority_prefix_per_level(tmp_path: Path) -> None:
    with (tmp_path / "journal").open("w+") as stream:
        info = os.fstat(stream.fileno())
        environ = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        assert writes_to_journal(stream, environ)
        configure_logging("debug", "json", stream=stream, environ=environ)
        log = get_logger("rocketd.test")
        log.debug("d")
        log.info("i")
        log.warning("w")
        log.error("e")
        logging.getLogger("asyncio").critical("c")
        stream.seek(0)
        written = stream.read().splitlines()
    prefixes = [line[: line.index("{")] for line in written]
    assert prefixes == ["<7>", "<6>", "<4>", "<3>", "<2>"]
    assert [json.loads(line[3:])["event"] for line in written] == ["d", "i", "w", "e", "c"]


def test_no_priority_prefix_when_the_stream_is_not_the_journal(tmp_path: Path) -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out, environ={"JOURNAL_STREAM": "1:2"})
    get_logger("rocketd.test").info("plain")
    assert out.getvalue().startswith("{")
    with (tmp_path / "other").open("w") as stream:
        assert not writes_to_journal(stream, {"JOURNAL_STREAM": "1:2"})
        assert not writes_to_journal(stream, {})


def test_configuring_again_reopens_the_log_file(tmp_path: Path) -> None:
    path = tmp_path / "rocketd.log"
    configure_logging("info", "json", file=str(path))
    get_logger("rocketd.test").info("before")
    path.rename(tmp_path / "rocketd.log.1")
    configure_logging("info", "json", file=str(path))
    get_logger("rocketd.test").info("after")
    logging.getLogger("aiohttp.server").error("library after")
    old = [
        json.loads(line)["event"] for line in (tmp_path / "rocketd.log.1").read_text().splitlines()
    ]
    new = [json.loads(line)["event"] for line in path.read_text().splitlines()]
    assert (old, new) == (["before"], ["after", "library after"])
    configure_logging("info", "json", stream=io.StringIO())  # closes the file handler


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


def test_process_fields_reach_every_line_and_survive_reconfiguration() -> None:
    from rocketd import logging as rocketd_logging

    out = io.StringIO()
    try:
        rocketd_logging.bind_process_fields(worker=3)
        configure_logging("info", "json", stream=out)
        get_logger("rocketd.test").info("own")
        configure_logging("info", "json", stream=out)  # a SIGHUP reload
        logging.getLogger("psycopg").warning("library")
    finally:
        rocketd_logging._process_fields.clear()
    assert [(line["event"], line["worker"]) for line in json_lines(out)] == [
        ("own", 3),
        ("library", 3),
    ]


def test_request_log_fields_are_started_per_request_and_filled_in() -> None:
    from contextvars import copy_context

    from rocketd.logging import set_request_log, start_request_log

    out = io.StringIO()
    configure_logging("info", "json", stream=out)

    def one_connection() -> None:  # a keep-alive connection: its requests share one context
        set_request_log(app="ignored")  # before any request: nothing to add to
        get_logger("test").info("before")
        start_request_log(trace_id="t-1", app=None, user_id=None)
        set_request_log(app="shop")
        set_request_log(user_id="u-1")
        get_logger("test").info("first", app="explicit")  # a line's own field wins
        start_request_log(trace_id="t-2", app=None, user_id=None)
        get_logger("test").info("second")

    copy_context().run(one_connection)
    before, first, second = json_lines(out)
    assert "trace_id" not in before and "app" not in before
    assert (first["trace_id"], first["app"], first["user_id"]) == ("t-1", "explicit", "u-1")
    assert (second["trace_id"], second["app"], second["user_id"]) == ("t-2", None, None)
