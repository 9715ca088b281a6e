"""AppSettingsSection without a database: the dataclass is the schema (keys, types, defaults),
what `problems` says about a body, what is stored, and how a stored value is read back."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from rocketd.engine.app_settings import AppSettingsSection, between, body_problems


@dataclass(frozen=True)
class Paging:
    default_per_page: int = 25
    strict: bool = False
    label: str = "page"
    ratio: float = 0.5
    tags: tuple[str, ...] = ()


PAGING = AppSettingsSection("paging", Paging(), checks={"default_per_page": between(1, 500)})


def test_defaults_and_keys() -> None:
    assert PAGING.keys == ("default_per_page", "strict", "label", "ratio", "tags")
    assert PAGING.value(None) == Paging()
    assert PAGING.to_json(Paging()) == {
        "default_per_page": 25, "strict": False, "label": "page", "ratio": 0.5, "tags": [],
    }  # fmt: skip


def test_problems_name_the_key() -> None:
    found = PAGING.problems(
        {"default_per_page": 0, "strict": 1, "ratio": float("inf"), "tags": [1], "x": 2}
    )
    assert [(d.field, d.rule) for d in found] == [
        ("x", "unknown"),
        ("default_per_page", "invalid"),
        ("strict", "type"),
        ("ratio", "type"),
        ("tags", "type"),
    ]
    assert found[1].message == "paging.default_per_page must be between 1 and 500"
    assert PAGING.problems({"default_per_page": 40.0, "ratio": 1, "tags": ["a"]}) == []
    assert [d.field for d in body_problems([PAGING], {"paging": {}, "other": {}})] == ["other"]


def test_only_set_keys_are_stored_and_null_resets() -> None:
    stored = PAGING.overrides(None, {"default_per_page": 40.0, "tags": ["a"]})
    assert stored == {"default_per_page": 40, "tags": ["a"]}
    assert PAGING.overrides({**stored, "gone": 1}, {"tags": None}) == {"default_per_page": 40}
    assert PAGING.value(stored) == Paging(default_per_page=40, tags=("a",))


def test_a_stored_value_no_longer_valid_falls_back_to_the_default() -> None:
    assert PAGING.value({"default_per_page": 9999, "strict": True, "old": 1}) == Paging(strict=True)


def test_the_declaration_is_checked() -> None:
    @dataclass(frozen=True)
    class Bad:
        when: dict[str, int] | None = None

    with pytest.raises(TypeError):
        AppSettingsSection("bad", Bad())
    with pytest.raises(ValueError):
        AppSettingsSection("paging", Paging(), checks={"nope": between(0, 1)})
