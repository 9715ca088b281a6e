"""The pure part of the schema diff: how two items' JSON differ, and how a section's items are
sorted into groups from the import's decisions."""

from __future__ import annotations

from typing import Any, Literal

from rocketd.capabilities.schema_io.diff import Entry, compare, json_changes, same_json, summary
from rocketd.capabilities.schema_io.document import Decision


def test_json_equality_tells_booleans_from_numbers() -> None:
    assert same_json({"a": [1, {"b": True}]}, {"a": [1.0, {"b": True}]})
    assert not same_json(True, 1)
    assert not same_json({"a": 0}, {"a": False})
    assert not same_json([1, 2], [2, 1])
    assert not same_json({"a": 1}, {"a": 1, "b": None})


def test_fields_pair_by_name_and_attributes_differ_one_by_one() -> None:
    old = {"name": "t", "fields": [{"name": "a", "type": "int"}, {"name": "b", "type": "text"}]}
    new = {
        "name": "t",
        "fields": [{"name": "b", "type": "text", "indexed": True}, {"name": "a", "type": "bigint"}],
    }
    assert json_changes(old, new) == [
        {"path": "fields[a].type", "old": "int", "new": "bigint"},
        {"path": "fields[b].indexed", "old": None, "new": True},
    ]
    assert json_changes(old, old) == []


def test_a_field_only_on_one_side_is_a_change_of_the_whole_field() -> None:
    old = {"fields": [{"name": "a", "type": "int"}]}
    new = {"fields": [{"name": "a", "type": "int"}, {"name": "b", "type": "text"}]}
    assert json_changes(old, new) == [
        {"path": "fields[b]", "old": None, "new": {"name": "b", "type": "text"}}
    ]
    assert json_changes(new, old) == [
        {"path": "fields[b]", "old": {"name": "b", "type": "text"}, "new": None}
    ]


def test_indexes_pair_by_their_fields() -> None:
    old = {
        "indexes": [{"fields": ["a", "-b"], "unique": False}, {"fields": ["c"], "unique": False}]
    }
    new = {"indexes": [{"fields": ["a", "-b"], "unique": True}, {"fields": ["d"], "unique": False}]}
    assert json_changes(old, new) == [
        {"path": "indexes[a,-b].unique", "old": False, "new": True},
        {"path": "indexes[c]", "old": {"fields": ["c"], "unique": False}, "new": None},
        {"path": "indexes[d]", "old": None, "new": {"fields": ["d"], "unique": False}},
    ]
    # Declared on one side only: the whole list.
    assert json_changes({}, new) == [{"path": "indexes", "old": None, "new": new["indexes"]}]


def test_arrays_that_cannot_be_paired_compare_whole() -> None:
    old = {"roles": ["a", "b"], "steps": [{"id": "x", "to": 1}], "twins": [{"name": "n"}] * 2}
    new = {"roles": ["b", "a"], "steps": [{"id": "x", "to": 2}], "twins": [{"name": "n"}]}
    assert json_changes(old, new) == [
        {"path": "roles", "old": ["a", "b"], "new": ["b", "a"]},
        {"path": "steps[x].to", "old": 1, "new": 2},
        {"path": "twins", "old": [{"name": "n"}] * 2, "new": [{"name": "n"}]},
    ]


Action = Literal["create", "skip", "ignore"]


def proposed(key: Any, action: Action, value: Any, why: str = "", at: str = "k[0]") -> Entry:
    decision = Decision(at, value, action, why, key)
    return Entry(key, str(key), value, decision)


def test_sections_sort_items_by_what_import_does_with_them() -> None:
    stored = [
        Entry(("a",), "a", {"v": 1}),
        Entry(("b",), "b", {"v": 1}),
        Entry(("gone",), "gone", {"v": 0}),
        Entry(None, "unreadable", {"v": 0}),
    ]
    groups = compare(
        [
            proposed(("a",), "skip", {"v": 1}, "already in the app", "k[0]"),
            proposed(("b",), "skip", {"v": 2}, "already in the app", "k[1]"),
            proposed(("new",), "create", {"v": 3}, at="k[2]"),
            proposed(("new",), "skip", {"v": 4}, "earlier in the document", "k[3]"),
            proposed(None, "ignore", {}, "no entity", "k[4]"),
        ],
        stored,
    )
    assert groups == {
        "added": [{"key": "('new',)", "at": "k[2]", "import": "create", "item": {"v": 3}}],
        "changed": [
            {
                "key": "('b',)",
                "at": "k[1]",
                "import": "skip",
                "changes": [{"path": "v", "old": 1, "new": 2}],
            }
        ],
        "unchanged": [{"key": "('a',)", "at": "k[0]", "import": "skip"}],
        "only_in_app": [
            {"key": "gone", "item": {"v": 0}},
            {"key": "unreadable", "item": {"v": 0}},
        ],
        "left_out": [
            {
                "key": "('new',)",
                "at": "k[3]",
                "import": "skip",
                "reason": "earlier in the document",
            },
            {"key": "None", "at": "k[4]", "import": "ignore", "reason": "no entity"},
        ],
    }


def test_an_upsert_over_a_stored_item_is_an_update_and_pairs_with_an_equal_one() -> None:
    stored = [Entry(("p",), "p", {"roles": ["x"]}), Entry(("p",), "p", {"roles": ["y"]})]
    same = compare([proposed(("p",), "create", {"roles": ["y"]})], stored)
    assert same["unchanged"] == [{"key": "('p',)", "at": "k[0]", "import": "update"}]
    other = compare([proposed(("p",), "skip", {"roles": ["z"]}, "already in the app")], stored)
    (changed,) = other["changed"]  # compared with the first when none is equal
    assert changed["changes"] == [{"path": "roles", "old": ["x"], "new": ["z"]}]
    assert same["only_in_app"] == other["only_in_app"] == []


def test_summary_counts_groups_actions_and_sections() -> None:
    entities = compare([proposed(("a",), "create", {})], [Entry(("b",), "b", {})])
    configs = compare([proposed(("c",), "create", {"x": 1})], [Entry(("c",), "c", {"x": 2})])
    counted = summary({"entities": entities, "ui_configs": configs}, records=3)
    assert counted == {
        "added": 1,
        "changed": 1,
        "unchanged": 0,
        "only_in_app": 1,
        "left_out": 0,
        "import": {"create": 1, "update": 1, "skip": 0, "ignore": 0},
        "records": 3,
        "sections": {
            "entities": {"added": 1, "changed": 0, "unchanged": 0, "only_in_app": 1, "left_out": 0},
            "ui_configs": {
                "added": 0,
                "changed": 1,
                "unchanged": 0,
                "only_in_app": 0,
                "left_out": 0,
            },
        },
    }
