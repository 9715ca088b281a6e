"""The response envelopes: `data`, with `meta` only when it has something, and the warnings
convention (`meta.warnings: [{"code", "message"}]`)."""

from __future__ import annotations

import orjson
from aiohttp import web

from rocketd.errors import ApiWarning
from rocketd.http.responses import data, with_warnings


def body(response: web.Response) -> object:
    assert isinstance(response.body, bytes)
    return orjson.loads(response.body)


def test_meta_only_when_it_has_something() -> None:
    assert body(data({"a": 1})) == {"data": {"a": 1}}
    assert body(data({"a": 1}, 201, {})) == {"data": {"a": 1}}
    assert body(data([], meta={"migration": ["x"]})) == {"data": [], "meta": {"migration": ["x"]}}


def test_warnings_join_the_meta_in_one_shape() -> None:
    warned = with_warnings({"migration": ["n"]}, [ApiWarning("IMPORT_SKIPPED", "2 skipped")])
    assert warned == {
        "migration": ["n"],
        "warnings": [{"code": "IMPORT_SKIPPED", "message": "2 skipped"}],
    }
    assert with_warnings(None, []) == {}
    again = with_warnings(warned, [ApiWarning("IMPORT_IGNORED", "x")])
    assert [w["code"] for w in again["warnings"]] == ["IMPORT_SKIPPED", "IMPORT_IGNORED"]
