"""`_events` rows as one `COPY ... FROM STDIN` payload in PostgreSQL's text format, built in one
pass: the EventFlusher runs in the request-serving process, so every microsecond spent per row
here is taken from requests (psycopg's `write_row` dumps each field through its adapters).

The text format: columns separated by tabs, rows ended by a newline, `\\N` for NULL, and a
backslash, tab, newline or carriage return inside a value written as `\\\\`, `\\t`, `\\n`, `\\r`.
The fast path writes values as they are where that is safe: ids are UUIDs (rocketd's own, or
checked when they come in), a span's source, component, action and status are rocketd's own names
(code, never a request's values), durations are integers, and orjson's JSON holds no control
character (only backslashes, doubled here). A text value that can come from outside (a span's
entity and record id, every column of a business event) is written as it is only when it is
printable and has no backslash; otherwise its row takes the path that escapes every value. The
duration, whole microseconds, is written as `<n>e-3` (milliseconds, exactly what `round(ms, 3)`
gave before).

PostgreSQL refuses a NUL character in text and jsonb (a `\\u0000` escape too), and UTF-8 has no
lone surrogates: one would make the whole batch fail, so such a character coming from a client
(a business event, a record id) is stored as U+FFFD or `?` instead (the escaping path), and
metadata orjson cannot write (keys that are not strings) is written with its keys as strings.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Sequence
from typing import Any, Final

import orjson

from rocketd.json_encoding import encode
from rocketd.tracing import COUNTER_BASE, SYSTEM, EventRow

# The stored columns, in the order of an `EventRow` (the rest of the tuple is not stored).
COLUMNS: Final = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "event_type",
    "source",
    "component",
    "action",
    "entity",
    "record_id",
    "user_id",
    "duration_ms",
    "status",
    "metadata",
)
# What the flusher copies: a row id first, then the row.
COPY_COLUMNS: Final = ("id", *COLUMNS)
NULL: Final = "\\N"
_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_REPLACEMENT: Final = "\ufffd"
_JSON_NUL: Final = "\\u0000"
_dumps: Final = orjson.dumps


class RowIds:
    """Time-ordered `_events.id` values (the column keeps its `gen_random_uuid()` default): the
    Unix time in milliseconds (48 bits) taken once per batch, a version-7 nibble and 26 random
    bits chosen per process (again in a forked child), then a 48-bit counter of the process
    (started between 2**44 and 2**44 + 2**40, so `hex()` writes it in 12 digits: a million rows
    a second would take about eight years to reach 2**48).
    Every batch's ids follow the previous ones in the primary key, so PostgreSQL adds them at the
    index's right edge instead of at a random page per row, and skips generating a random UUID
    per row: about a third less of its CPU per row (docs/benchmarks.md)."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.process = f"7{random.getrandbits(12):03x}-{0x8000 | random.getrandbits(14):04x}-"
        self.counter = itertools.count(COUNTER_BASE | random.getrandbits(40))

    def prefix(self) -> str:
        """The first 80 bits of this batch's ids (the counter fills the last 48)."""
        ms = time.time_ns() // 1_000_000
        return f"{(ms >> 16) & 0xFFFFFFFF:08x}-{ms & 0xFFFF:04x}-{self.process}"


ROW_IDS: Final = RowIds()


def copy_payload(rows: Sequence[EventRow]) -> bytes:
    """`rows` as the data of one text-format `COPY _events (COPY_COLUMNS) FROM STDIN`, each
    with a new time-ordered id."""
    prefix = ROW_IDS.prefix()
    counter = ROW_IDS.counter
    lines: list[str] = []
    append = lines.append
    for row in rows:
        (trace_id, span_id, parent, event_type, source, component, action, entity, record_id,
         user_id, duration_us, status, metadata, _) = row  # fmt: skip
        row_id = prefix + hex(next(counter))[2:]  # 12 digits (COUNTER_BASE)
        if event_type is SYSTEM:  # its names are rocketd's own: only these two come from outside
            if (entity is not None and not (entity.isprintable() and "\\" not in entity)) or (
                record_id is not None and not (record_id.isprintable() and "\\" not in record_id)
            ):
                append(escaped_line(row_id, row))
                continue
        elif not _plain(f"{event_type}{source}{component}{action}{entity}{record_id}{status}"):
            append(escaped_line(row_id, row))
            continue
        if metadata:
            try:
                meta = _dumps(metadata).decode()
            except TypeError:  # orjson's error (an integer beyond 64 bits, a key not a string)
                meta = _json(metadata)
            else:
                if "\\" in meta:
                    if _JSON_NUL in meta:
                        append(escaped_line(row_id, row))
                        continue
                    meta = meta.replace("\\", "\\\\")
        else:
            meta = "{}"
        append(
            f"{row_id}\t{trace_id}\t{span_id}\t{NULL if parent is None else parent}\t{event_type}\t"
            f"{source}\t{component}\t{action}\t{NULL if entity is None else entity}\t"
            f"{NULL if record_id is None else record_id}\t{NULL if user_id is None else user_id}\t"
            f"{NULL if duration_us is None else f'{duration_us}e-3'}\t"
            f"{NULL if status is None else status}\t{meta}\n"
        )
    return "".join(lines).encode("utf-8", "replace")  # "?" for a lone surrogate


def _plain(value: str) -> bool:
    """Whether `value` can be written as it is: no backslash, and printable (so no tab, newline
    or carriage return; other characters Python does not call printable take the escaping path
    too, which is merely slower)."""
    return value.isprintable() and "\\" not in value


def escaped_line(row_id: str, row: EventRow) -> str:
    """One row with every value escaped, NUL characters replaced: the path that never trusts a
    value."""
    row = _storable(row)
    values = [row_id, *(_text(value) for value in row[:10])]
    duration_us = row[10]
    values.append(NULL if duration_us is None else f"{int(duration_us)}e-3")
    values.append(_text(row[11]))
    values.append(_json(row[12]))
    return "\t".join(values) + "\n"


def _text(value: Any) -> str:
    return NULL if value is None else str(value).translate(_ESCAPES)


def _json(metadata: Any) -> str:
    """`metadata` as JSON in a COPY value: `rocketd.json_encoding` (integers beyond 64 bits,
    anything else as its `str`), backslashes doubled."""
    if not metadata:
        return "{}"
    try:
        text = encode(metadata, default=str).decode()
    except TypeError:  # orjson's error: a key that is not a string, a lone surrogate
        text = encode(_storable(metadata), default=str).decode()
    return text.replace("\\", "\\\\") if "\\" in text else text


def _storable(value: Any) -> Any:
    """`value` (a row, metadata, or a value in them) with every string as PostgreSQL stores it:
    NUL characters replaced by U+FFFD, lone surrogates by `?`; mapping keys as strings."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", _REPLACEMENT)
        return value.encode("utf-8", "replace").decode()
    if isinstance(value, dict):
        return {_storable(str(key)): _storable(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(_storable(item) for item in value)
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value
