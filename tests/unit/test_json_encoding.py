"""`rocketd.json_encoding.encode`: orjson, with integers beyond 64 bits written exactly (jsonb gives
a stored 1e308 back as a 309-digit integer), as the API's responses use it."""

from __future__ import annotations

import json
from decimal import Decimal

import orjson

from rocketd.http import responses
from rocketd.json_encoding import encode


def test_integers_beyond_64_bits_are_written_exactly() -> None:
    value = {"default": 10**308, "list": [-(10**20), 2**64 - 1, 2**64], "ok": 1.5, "t": (10**19,)}
    encoded = encode(value)
    assert json.loads(encoded) == {
        "default": 10**308,
        "list": [-(10**20), 2**64 - 1, 2**64],
        "ok": 1.5,
        "t": [10**19],
    }
    assert encoded.startswith(b'{"default":1000000000')


def test_options_and_default_apply_on_the_retry_too() -> None:
    encoded = encode({"b": Decimal("1.5"), "a": 10**30}, default=str, option=orjson.OPT_SORT_KEYS)
    assert encoded == b'{"a":1000000000000000000000000000000,"b":"1.5"}'


def test_responses_write_big_integers_instead_of_failing() -> None:
    assert json.loads(responses.dumps({"data": {"default": 10**308}})) == {
        "data": {"default": 10**308}
    }
