"""Logging set-up: one structured stream for rocketd's own lines and every library's.

structlog renders the lines (coloured console on a TTY, JSON lines otherwise). Lines of stdlib
loggers (psycopg, aiohttp, asyncio, ...) go through structlog's `ProcessorFormatter`, so they come
out in the same shape as rocketd's own, with the same fields.

Request context (`trace_id`, `span_id`, `app`, `user_id`) is one dictionary per request in a
context variable (`start_request_log`, filled in by the HTTP middlewares as the values become
known), so every line logged while a request is handled carries it without passing loggers
around. One variable set once per request costs less than binding each field through
`structlog.contextvars` (which is still merged, for code that uses it).

Secrets never reach the output: the last step before rendering (`redact`) masks passwords in
database and Redis URLs and in libpq `password=` settings, cuts http(s) URLs (webhook targets carry
their tokens in the path or the query) down to scheme, host and the first path segment, and hides
the whole value of fields named like a secret.

Under systemd, when stderr is the journal's stream (`JOURNAL_STREAM`), each line starts with its
syslog priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug), which journald strips and
records as the entry's PRIORITY, so `journalctl -p warning` works.

`configure_logging` may be called again at any time (SIGHUP): it closes the previous handler,
so a log file renamed by logrotate is reopened.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog

from rocketd.tracing import current_span

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# syslog priorities (sd-daemon.h) by stdlib level.
_PRIORITIES: Final = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}
# Libraries log only their warnings and errors, whatever rocketd's own level.
_LIBRARY_LOGGERS: Final = ("psycopg", "aiohttp", "asyncio", "redis", "aiosmtplib")
_HANDLER_NAME: Final = "rocketd"
# The level `configure_logging` set last (structlog's own default: everything).
_level = logging.DEBUG


# Fields every line of this process carries (a worker's index), kept across reconfiguration.
_process_fields: dict[str, Any] = {}


def bind_process_fields(**fields: Any) -> None:
    """Add fields to every line this process logs from now on, rocketd's and the libraries'
    (a SIGHUP reload reconfigures logging and keeps them)."""
    _process_fields.update(fields)


def _add_process_fields(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    for name, value in _process_fields.items():
        event.setdefault(name, value)
    return event


# The log fields of the request being handled; a task started meanwhile shares the dictionary.
_REQUEST_FIELDS: ContextVar[dict[str, Any] | None] = ContextVar("rocketd_request_log", default=None)


def start_request_log(**fields: Any) -> None:
    """The log fields of a new request, replacing the previous request's in this context (a
    keep-alive connection serves its requests in one task)."""
    _REQUEST_FIELDS.set(fields)


def set_request_log(**fields: Any) -> None:
    """Add or change fields of the current request's log context (nothing outside a request)."""
    current = _REQUEST_FIELDS.get()
    if current is not None:
        current.update(fields)


def _add_request_fields(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    fields = _REQUEST_FIELDS.get()
    if fields:
        for name, value in fields.items():
            event.setdefault(name, value)
    return event


def _current_span(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    """Every line logged inside a traced span names the trace and that span."""
    span = current_span()
    if span is not None:
        event["trace_id"] = span.trace.trace_id
        event["span_id"] = span.span_id
    return event


# --------------------------------------------------------------------------------------------
# Redaction
# --------------------------------------------------------------------------------------------

MASK: Final = "***"
_URL_RE: Final = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*)://([^\s\"'<>\\]+)")
_CONNINFO_PASSWORD_RE: Final = re.compile(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&]+)")
_SECRET_FIELD_RE: Final = re.compile(
    r"(password|passwd|secret|token|authorization|api[-_]?key|cookie)", re.IGNORECASE
)
# Fields that name a secret's kind but hold none (a token's type, a count, ...).
_NOT_SECRET_FIELDS: Final = frozenset({"token_type", "tokens"})


def mask_url(url: str) -> str:
    """Replace the password in a URL's user info and in a `password=` query parameter."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    userinfo, at, hostinfo = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hostinfo}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(name == "password" for name, _ in pairs):
            masked = [(name, MASK if name == "password" else value) for name, value in pairs]
            query = urlencode(masked, safe="*/")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _cut_web_url(scheme: str, rest: str) -> str:
    """scheme://host[:port] and the first path segment; the rest may hold a token."""
    hostinfo, slash, tail = rest.partition("/")
    if not slash:  # no path: the query may follow the host directly
        hostinfo, query_mark, _ = hostinfo.partition("?")
        return f"{scheme}://{hostinfo.rpartition('@')[2]}" + ("?…" if query_mark else "")
    path, query_mark, _ = tail.partition("#")[0].partition("?")
    first, more, _ = path.partition("/")
    kept = f"{scheme}://{hostinfo.rpartition('@')[2]}/{first}"
    if more:
        kept += "/…"
    elif query_mark:
        kept += "?…"
    return kept


def _redact_url(match: re.Match[str]) -> str:
    scheme, rest = match.group(1), match.group(2)
    if scheme.lower() in ("http", "https"):
        return _cut_web_url(scheme, rest)
    return mask_url(match.group(0))


def redact_text(text: str) -> str:
    """`text` with the secrets rocketd knows how to spot masked (see the module docstring)."""
    if "://" in text:
        text = _URL_RE.sub(_redact_url, text)
    if "password" in text:
        text = _CONNINFO_PASSWORD_RE.sub(f"password={MASK}", text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {key: _redact_field(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


def _redact_field(name: str, value: Any) -> Any:
    # Strings only: a count or a flag under such a name (`tokens_purged=3`) is no secret.
    if isinstance(value, str | bytes) and value and name not in _NOT_SECRET_FIELDS:
        if _SECRET_FIELD_RE.search(name):
            return MASK
    return _redact_value(value)


def redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: mask secrets in every field (runs after exceptions are formatted)."""
    for name, value in event_dict.items():
        if name == "event":
            event_dict[name] = _redact_value(value)
        else:
            event_dict[name] = _redact_field(name, value)
    return event_dict


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def writes_to_journal(stream: Any, environ: Mapping[str, str] | None = None) -> bool:
    """True when `stream` is the journald stream systemd connected (`JOURNAL_STREAM=dev:ino`)."""
    env = os.environ if environ is None else environ
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    try:
        info = os.fstat(stream.fileno())
        return (info.st_dev, info.st_ino) == (int(device), int(inode))
    except (AttributeError, OSError, ValueError):
        return False


class _Sink:
    """Where every line goes: one stream (stderr, or `log.file` opened by us), with the syslog
    priority in front of each line when that stream is the journal. rocketd's own lines are
    rendered by structlog and written here directly (no stdlib `LogRecord` on the hot path);
    library lines come through `_LibraryHandler`."""

    def __init__(self, stream: Any, journald: bool, owned: bool) -> None:
        self.stream = stream
        self.journald = journald
        self.owned = owned  # a file we opened, closed when replaced
        self.lock = threading.Lock()

    def write(self, line: str, levelno: int) -> None:
        if self.journald:
            # Every physical line gets it: journald records each as an entry of its own.
            priority = _PRIORITIES.get(levelno, 6)
            line = "\n".join(f"<{priority}>{part}" for part in line.split("\n"))
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.owned:
            self.stream.close()


def _write_at(levelno: int) -> Callable[[_SinkLogger, str], None]:
    """A `_SinkLogger` method writing its rendered line at `levelno`."""

    def write(self: _SinkLogger, message: str) -> None:
        self.sink.write(message, levelno)

    return write


class _SinkLogger:
    """The logger structlog hands its rendered lines to (one method per level)."""

    def __init__(self, sink: _Sink, name: str) -> None:
        self.sink = sink
        self.name = name  # for add_logger_name

    debug = _write_at(logging.DEBUG)
    info = msg = _write_at(logging.INFO)
    warning = warn = _write_at(logging.WARNING)
    error = exception = _write_at(logging.ERROR)
    critical = fatal = _write_at(logging.CRITICAL)


class _LibraryHandler(logging.Handler):
    """Stdlib records (psycopg, aiohttp, asyncio, ...) through structlog's `ProcessorFormatter`
    into the sink: the same processors, the same JSON."""

    def __init__(self, sink: _Sink, formatter: logging.Formatter) -> None:
        super().__init__()
        self.sink = sink
        self.setFormatter(formatter)
        self.set_name(_HANDLER_NAME)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.write(self.format(record), record.levelno)
        except Exception:  # never let a log line take the caller down
            self.handleError(record)

    def close(self) -> None:
        self.sink.close()
        super().close()


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    stream: Any = None,
    file: str = "",
    environ: Mapping[str, str] | None = None,
) -> None:
    """Configure structlog and the stdlib root logger, both writing to one sink.

    `file` (when not empty) is appended to instead of writing to `stream` (default stderr).
    Calling it again replaces the sink (and closes a file it had open).
    """
    if file:
        out: Any = open(file, "a", encoding="utf-8")  # closed when the sink is replaced
    else:
        out = stream if stream is not None else sys.stderr
    sink = _Sink(out, journald=not file and writes_to_journal(out, environ), owned=bool(file))
    use_json = fmt == "json" or (fmt == "auto" and not getattr(out, "isatty", lambda: False)())
    numeric_level = _LEVELS.get(level, logging.INFO)
    global _level
    _level = numeric_level
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_request_fields,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _add_process_fields,
        _current_span,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    rendering: list[Any] = []
    if use_json:
        renderer = structlog.processors.JSONRenderer()
        rendering.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=getattr(out, "isatty", lambda: False)())
    library_formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *rendering,
            redact,
            renderer,
        ],
    )
    structlog.configure(
        processors=[*shared, *rendering, redact, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=lambda name="rocketd", *_: _SinkLogger(sink, name),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        if old.get_name() == _HANDLER_NAME:
            old.close()
    root.addHandler(_LibraryHandler(sink, library_formatter))
    root.setLevel(numeric_level)
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric_level, logging.WARNING))
    # The trace middleware logs every request itself.
    logging.getLogger("aiohttp.access").setLevel(logging.ERROR)


def enabled(level: int) -> bool:
    """Whether a line at `level` (`logging.INFO`, ...) would be written. For once-per-request
    lines: a filtered call on a module's logger still costs several µs (the logger is not cached
    on first use, so that a reconfiguration reaches every module)."""
    return level >= _level


def get_logger(name: str) -> Any:
    """A structlog logger named after the module that owns it."""
    return structlog.get_logger(name)
