"""psycopg's JSON dump function (`rocketd.db.json_codec`): orjson, with the standard library
for what orjson refuses."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from psycopg.types.json import Jsonb, _JsonDumper

from rocketd.db import json_codec


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
