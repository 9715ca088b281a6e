"""HTTP conditional and byte-range requests for bodies rocketd streams itself (files of a storage
backend without local files). Pure: no I/O, so every case is unit-tested.

The answers match what aiohttp's `FileResponse` gives for local files (a Range header it cannot
parse, several ranges, or a start past the end: 416 with `Content-Range: bytes */{size}`), except
that the suffix range `bytes=-0` is unsatisfiable (RFC 9110 14.1.2) instead of the whole file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from aiohttp import web

_RANGE: Final = re.compile(r"^bytes=(\d*)-(\d*)$", re.ASCII | re.IGNORECASE)


class Unsatisfiable(Exception):
    """The Range cannot be served: answer 416 with `Content-Range: bytes */{size}`."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # exclusive

    @property
    def length(self) -> int:
        return self.end - self.start

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end - 1}/{size}"


def requested_range(header: str | None, size: int) -> ByteRange | None:
    """The one byte range a `Range` header asks for, clipped to `size`; None without a header."""
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        raise Unsatisfiable(header)
    first, last = match.groups()
    if not first:
        if not last:
            raise Unsatisfiable(header)
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable(header)
        return ByteRange(max(0, size - suffix), size)
    start = int(first)
    end = size if not last else int(last) + 1
    if last and end <= start:
        raise Unsatisfiable(header)
    if start >= size:
        raise Unsatisfiable(header)
    return ByteRange(start, min(end, size))


def _matches(etag: str, values: tuple[str, ...]) -> bool:
    return "*" in values or etag in values


def _etags(request: web.BaseRequest, header: str, *, weak: bool) -> tuple[str, ...] | None:
    parsed = getattr(request, header)
    if parsed is None:
        return None
    return tuple(e.value for e in parsed if weak or not e.is_weak)


def precondition_failed(request: web.BaseRequest, etag: str, last_modified: datetime) -> bool:
    """`If-Match` names none of our tags, or `If-Unmodified-Since` is older than the file."""
    wanted = _etags(request, "if_match", weak=False)
    if wanted is not None:
        return not _matches(etag, wanted)
    since = request.if_unmodified_since
    return since is not None and int(last_modified.timestamp()) > since.timestamp()


def not_modified(request: web.BaseRequest, etag: str, last_modified: datetime) -> bool:
    """`If-None-Match` names our tag, or (without it) `If-Modified-Since` is not older."""
    wanted = _etags(request, "if_none_match", weak=True)
    if wanted is not None:
        return _matches(etag, wanted)
    since = request.if_modified_since
    return since is not None and int(last_modified.timestamp()) <= since.timestamp()


def range_applies(request: web.BaseRequest, etag: str, last_modified: datetime) -> bool:
    """Without `If-Range`, or when it names this version (our strong tag, or a date not older
    than the file), a Range is served; otherwise the whole file is sent with 200."""
    raw = request.headers.get("If-Range")
    if raw is None:
        return True
    raw = raw.strip()
    if raw.startswith(('"', "W/")):
        return raw == f'"{etag}"'
    since = request.if_range
    return since is not None and int(last_modified.timestamp()) <= since.timestamp()
