"""JSON encoding (`rocketd.db.json_codec`): psycopg's dump function and `encode`, orjson with
integers beyond 64 bits written exactly, which the API's responses use too."""

from __future__ import annotations

import json
from decimal import Decimal

import orjson
import pytest
from psycopg.types.json import Jsonb, _JsonDumper

from rocketd.db import json_codec
from rocketd.http import responses


def test_installed_for_psycopg_when_rocketd_db_is_imported() -> None:
    assert _JsonDumper._dumps is json_codec.dumps


def test_plain_values_round_trip() -> None:
    value = {"a": [1, 2.5, None, True], "b": {"c": 'é\n"x"'}, "n": -(2**63)}
    assert json.loads(json_codec.dumps(value)) == value


def test_integers_beyond_64_bits_are_kept_exactly() -> None:
    assert json.loads(json_codec.dumps({"big": 10**30})) == {"big": 10**30}


def test_decimals_become_strings_and_keys_strings() -> None:
    assert json.loads(json_codec.dumps({1: Decimal("12.50"), "s": {3}})) == {
        "1": "12.50",
        "s": [3],
    }


def test_non_finite_floats_are_null_not_invalid_json() -> None:
    assert json_codec.dumps([float("nan"), float("inf")]) == b"[null,null]"


def test_unknown_objects_are_refused() -> None:
    with pytest.raises(TypeError):
        json_codec.dumps({"x": object()})


def test_jsonb_parameters_use_it() -> None:
    dumper = _JsonDumper(Jsonb)
    assert bytes(dumper.dump(Jsonb({"d": Decimal("1.5")}))) == b'{"d":"1.5"}'


def test_encode_writes_integers_beyond_64_bits_exactly() -> None:
    # jsonb keeps numbers as exact decimals: a stored 1e308 reads back as a 309-digit integer.
    value = {"default": 10**308, "list": [-(10**20), 2**64 - 1, 2**64], "ok": 1.5, "t": (10**19,)}
    encoded = json_codec.encode(value)
    assert json.loads(encoded) == {
        "default": 10**308,
        "list": [-(10**20), 2**64 - 1, 2**64],
        "ok": 1.5,
        "t": [10**19],
    }
    assert encoded.startswith(b'{"default":1000000000')


def test_encode_keeps_options_and_default_on_the_retry() -> None:
    encoded = json_codec.encode(
        {"b": Decimal("1.5"), "a": 10**30}, default=str, option=orjson.OPT_SORT_KEYS
    )
    assert encoded == b'{"a":1000000000000000000000000000000,"b":"1.5"}'


def test_responses_encode_big_integers_instead_of_failing() -> None:
    assert json.loads(responses.dumps({"data": {"default": 10**308}})) == {
        "data": {"default": 10**308}
    }
