"""The COPY text encoding's fast path writes exactly what escaping every value would, and every
row gets a new time-ordered id."""

from __future__ import annotations

import uuid
from typing import Any

from rocketd.capabilities.events.copy_text import copy_payload, escaped_line
from rocketd.tracing import BUSINESS, SYSTEM, EventRow

TRACE = "6f1c3b9e-8d2a-4c1e-9f3a-2b7d5e8c1a40"
USER = "0b5f2f0e-1c7a-4d43-8a8e-8f1f0d6c9b21"


def row(event_type: str, record_id: str | None, metadata: dict[str, Any]) -> EventRow:
    return (TRACE, f"{TRACE[:-4]}0001", None, event_type, "engine", "handler", "record.get",
            "order", record_id, USER, 1500, "ok", metadata, 0)  # fmt: skip


def escaped(payload: bytes, rows: list[EventRow]) -> bytes:
    """What escaping every value of `rows` gives, with the ids `payload` gave them."""
    ids = [line[:36] for line in payload.decode().splitlines()]
    return "".join(escaped_line(i, r) for i, r in zip(ids, rows, strict=True)).encode()


def test_plain_rows_are_written_as_escaping_would() -> None:
    rows = [
        row(SYSTEM, None, {}),
        row(SYSTEM, "42", {"sql": 'select "a" from "t" where x = ?', "rows": 1}),
        row(BUSINESS, "é 日本", {"nested": {"list": [1, 2.5, None, True]}}),
    ]
    payload = copy_payload(rows)
    assert payload == escaped(payload, rows)
    assert payload.count(b"\n") == 3 and b"1500e-3" in payload and b'\\\\"a\\\\"' in payload


def test_a_row_with_a_backslash_is_escaped_alone() -> None:
    plain = row(SYSTEM, "1", {"k": "v"})
    slashed = row(SYSTEM, "a\\nb", {})
    payload = copy_payload([plain, slashed, plain])
    assert payload == escaped(payload, [plain, slashed, plain])
    assert b"a\\\\nb" in payload


def test_a_business_event_s_names_are_checked_too() -> None:
    event = (*row(BUSINESS, None, {})[:6], "order\\placed", *row(BUSINESS, None, {})[7:])
    payload = copy_payload([event])  # type: ignore[list-item]
    assert payload == escaped(payload, [event])  # type: ignore[list-item]
    assert b"order\\\\placed" in payload


def test_row_ids_are_uuids_that_only_grow() -> None:
    rows = [row(SYSTEM, str(n), {}) for n in range(50)]
    ids = [
        uuid.UUID(line[:36])
        for payload in (copy_payload(rows), copy_payload(rows))
        for line in payload.decode().splitlines()
    ]
    assert len(set(ids)) == 100 and ids == sorted(ids)
    assert {i.version for i in ids} == {7}
