"""Range and conditional-request decisions for streamed file bodies (rocketd.http.ranges)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import make_mocked_request

from rocketd.http.ranges import (
    ByteRange,
    Unsatisfiable,
    not_modified,
    precondition_failed,
    range_applies,
    requested_range,
)

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-0", ByteRange(0, 1)),  # first byte
        ("bytes=999-999", ByteRange(999, 1000)),  # last byte
        ("bytes=100-199", ByteRange(100, 200)),
        ("bytes=500-", ByteRange(500, 1000)),
        ("bytes=900-5000", ByteRange(900, 1000)),  # end clipped to the size
        ("bytes=-1", ByteRange(999, 1000)),  # suffix
        ("bytes=-300", ByteRange(700, 1000)),
        ("bytes=-5000", ByteRange(0, 1000)),  # suffix longer than the file: all of it
        ("BYTES=1-2", ByteRange(1, 3)),
    ],
)
def test_requested_range(header: str | None, expected: ByteRange | None) -> None:
    assert requested_range(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    ["bytes=1000-", "bytes=1000-1001", "bytes=5-4", "bytes=-0", "bytes=-", "bytes=0-1,5-6",
     "items=0-1", "bytes=a-b"],
)  # fmt: skip
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        requested_range(header, SIZE)


def test_any_range_of_an_empty_file_is_unsatisfiable() -> None:
    for header in ("bytes=0-", "bytes=-1", "bytes=0-0"):
        with pytest.raises(Unsatisfiable):
            requested_range(header, 0)


def test_content_range_text() -> None:
    assert ByteRange(0, 1).content_range(SIZE) == "bytes 0-0/1000"
    assert ByteRange(700, 1000).content_range(SIZE) == "bytes 700-999/1000"


MODIFIED = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
ETAG = "abc-3e8"


def _request(**headers: str) -> object:
    return make_mocked_request("GET", "/", headers=headers)


def test_conditional_requests() -> None:
    assert not_modified(_request(**{"If-None-Match": f'"{ETAG}"'}), ETAG, MODIFIED)
    assert not_modified(_request(**{"If-None-Match": f'W/"{ETAG}"'}), ETAG, MODIFIED)
    assert not_modified(_request(**{"If-None-Match": "*"}), ETAG, MODIFIED)
    assert not not_modified(_request(**{"If-None-Match": '"other"'}), ETAG, MODIFIED)
    # The date has second precision: the upload's own second counts as "not modified since".
    same_second = "Fri, 02 Jan 2026 03:04:05 GMT"
    assert not_modified(_request(**{"If-Modified-Since": same_second}), ETAG, MODIFIED)
    earlier = "Fri, 02 Jan 2026 03:04:04 GMT"
    assert not not_modified(_request(**{"If-Modified-Since": earlier}), ETAG, MODIFIED)
    # If-None-Match wins over If-Modified-Since.
    both = {"If-None-Match": '"other"', "If-Modified-Since": same_second}
    assert not not_modified(_request(**both), ETAG, MODIFIED)
    assert not not_modified(_request(), ETAG, MODIFIED)

    assert precondition_failed(_request(**{"If-Match": '"other"'}), ETAG, MODIFIED)
    assert precondition_failed(_request(**{"If-Match": f'W/"{ETAG}"'}), ETAG, MODIFIED)
    assert not precondition_failed(_request(**{"If-Match": f'"{ETAG}"'}), ETAG, MODIFIED)
    assert precondition_failed(_request(**{"If-Unmodified-Since": earlier}), ETAG, MODIFIED)
    assert not precondition_failed(_request(), ETAG, MODIFIED)


def test_if_range() -> None:
    assert range_applies(_request(), ETAG, MODIFIED)
    assert range_applies(_request(**{"If-Range": f'"{ETAG}"'}), ETAG, MODIFIED)
    assert not range_applies(_request(**{"If-Range": '"other"'}), ETAG, MODIFIED)
    assert not range_applies(_request(**{"If-Range": f'W/"{ETAG}"'}), ETAG, MODIFIED)
    later = "Sat, 03 Jan 2026 00:00:00 GMT"
    assert range_applies(_request(**{"If-Range": later}), ETAG, MODIFIED)
    earlier = "Thu, 01 Jan 2026 00:00:00 GMT"
    assert not range_applies(_request(**{"If-Range": earlier}), ETAG, MODIFIED)
