"""Every SQL statement of an app as a `query.execute` span, from one place: the cursor class of
the app pools (installed only when instrumentation is on, so a disabled daemon runs psycopg's own
cursor untouched). A statement starts nothing under it, so its span is recorded as a leaf
(`record_span`: a row, no `Span` made current), the cheapest way a span can be.

A span carries the statement's *fingerprint*, never its values: rocketd's statements are
parameterised, and literals that were composed in anyway (numbers, quoted strings) are replaced
by `?`. Fingerprints are cached by statement: the kernel's statements are built once and kept
(bytes, whose hash Python keeps too), so a traced statement costs a dictionary lookup.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable
from time import perf_counter_ns
from typing import Any, Final

from psycopg import AsyncCursor, sql
from psycopg.abc import Params

from rocketd.tracing import record_span, recording_span

MAX_FINGERPRINT: Final = 1000
_CACHE_SIZE: Final = 2048
_LITERALS: Final = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b|\$\d+|%s|%\(\w+\)s")
_SPACE: Final = re.compile(r"\s+")
_QUERY: Final = ("db", "postgres", "query.execute")
_fingerprints: dict[str | bytes, str] = {}
# Composed statements are built once and cached by the kernel (engine/sql/compose.py): their
# fingerprint is kept by object identity (checked through a weak reference: ids are reused).
_composed: dict[int, tuple[weakref.ref[sql.Composable], str]] = {}


def fingerprint(statement: str | bytes) -> str:
    """`statement` with literals and placeholders as `?`, whitespace collapsed, capped in
    length."""
    known = _fingerprints.get(statement)
    if known is not None:
        return known
    text = statement.decode("utf-8", "replace") if isinstance(statement, bytes) else statement
    shape = _SPACE.sub(" ", _LITERALS.sub("?", text)).strip()[:MAX_FINGERPRINT]
    if len(_fingerprints) >= _CACHE_SIZE:
        _fingerprints.clear()
    _fingerprints[statement] = shape
    return shape


class TracedCursor(AsyncCursor[Any]):
    """psycopg's async cursor, plus a span per `execute`/`executemany` while a trace runs."""

    def _statement(self, query: Any) -> str:
        if isinstance(query, sql.Composable):
            known = _composed.get(id(query))
            if known is not None and known[0]() is query:
                return known[1]
            shape = fingerprint(query.as_string(self.connection))
            if len(_composed) >= _CACHE_SIZE:
                _composed.clear()
            _composed[id(query)] = (weakref.ref(query), shape)
            return shape
        if isinstance(query, str | bytes):
            return fingerprint(query)
        if isinstance(query, bytearray | memoryview):
            return fingerprint(bytes(query))
        return fingerprint(str(query))

    async def execute(
        self,
        query: Any,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> TracedCursor:
        parent = recording_span()
        if parent is None:
            await super().execute(query, params, prepare=prepare, binary=binary)
            return self
        metadata: dict[str, Any] = {"sql": self._statement(query)}
        started = perf_counter_ns()
        try:
            await super().execute(query, params, prepare=prepare, binary=binary)
        except BaseException as exc:
            record_span(parent, *_QUERY, started, metadata=metadata, error=exc)
            raise
        metadata["rows"] = self.rowcount
        record_span(parent, *_QUERY, started, metadata=metadata)
        return self

    async def executemany(
        self, query: Any, params_seq: Iterable[Params], *, returning: bool = False
    ) -> None:
        parent = recording_span()
        if parent is None:
            await super().executemany(query, params_seq, returning=returning)
            return
        metadata: dict[str, Any] = {"sql": self._statement(query), "many": True}
        started = perf_counter_ns()
        try:
            await super().executemany(query, params_seq, returning=returning)
        except BaseException as exc:
            record_span(parent, *_QUERY, started, metadata=metadata, error=exc)
            raise
        metadata["rows"] = self.rowcount
        record_span(parent, *_QUERY, started, metadata=metadata)
