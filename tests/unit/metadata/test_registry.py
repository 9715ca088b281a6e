"""The Registry: building from stored rows, lookups, relation-name resolution and derived
registries."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rocketd.metadata import (
    EMPTY_REGISTRY,
    Entity,
    Registry,
    Relation,
    RelationRef,
    parse_entity,
    parse_relation,
)
from tests.support.upstream import NAMES, example, upstream_examples


def entity_json(name: str, *fields: str) -> dict[str, Any]:
    return {
        "name": name,
        "table": f"{name}s",
        "primary_key": {"field": "id", "type": "uuid", "generated": True},
        "fields": [{"name": "id", "type": "uuid"}] + [{"name": f, "type": "uuid"} for f in fields],
    }


def one_to_many(name: str, source: str, target: str, target_key: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "one_to_many",
        "source": source,
        "target": target,
        "source_key": "id",
        "target_key": target_key,
    }


def many_to_many(name: str, source: str, target: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "many_to_many",
        "source": source,
        "target": target,
        "join_table": name,
        "source_join_key": f"{source}_id",
        "target_join_key": f"{target}_id",
    }


def registry_of(entities: list[dict[str, Any]], relations: list[dict[str, Any]]) -> Registry:
    registry = Registry.build(
        [(e["name"], e) for e in entities], [(r["name"], r) for r in relations]
    )
    assert registry.problems == ()
    return registry


def blog() -> Registry:
    """post -> comment (1:N), post <-> tag (m:n), author -> post (1:N, named "posts"),
    employee -> employee (self, "reports")."""
    return registry_of(
        [
            entity_json("post", "author_id"),
            entity_json("comment", "post_id"),
            entity_json("tag"),
            entity_json("author"),
            entity_json("employee", "manager_id"),
        ],
        [
            one_to_many("post_comments", "post", "comment", "post_id"),
            many_to_many("post_tags", "post", "tag"),
            one_to_many("posts", "author", "post", "author_id"),
            one_to_many("reports", "employee", "employee", "manager_id"),
        ],
    )


def resolved(ref: RelationRef | None) -> tuple[str, bool] | None:
    return None if ref is None else (ref.relation.name, ref.forward)


# ------------------------------------------------------------------------------------ build


def test_build_parses_rows_given_as_objects_or_json_text() -> None:
    post = entity_json("post")
    registry = Registry.build(
        [("post", post), ("tag", json.dumps(entity_json("tag")))],
        [("post_tags", json.dumps(many_to_many("post_tags", "post", "tag")).encode())],
    )
    assert list(registry.entities) == ["post", "tag"]
    assert registry.entity("post") == parse_entity(post)
    relation = registry.relation("post_tags")
    assert relation is not None and relation.join_table == "post_tags"
    assert registry.problems == ()


def test_build_skips_invalid_rows_and_lists_them_without_raising() -> None:
    broken_field = entity_json("note")
    broken_field["fields"].append({"name": "size", "type": "huge"})
    registry = Registry.build(
        [
            ("post", entity_json("post")),
            ("note", broken_field),
            ("memo", "{not json"),
            ("list", ["not", "an", "object"]),
        ],
        [
            ("post_parts", one_to_many("post_parts", "post", "part", "post_id")),
            ("odd", {"name": "odd", "type": "sideways", "source": "post", "target": "post"}),
            ("lost", one_to_many("lost", "ghost", "phantom", "ghost_id")),
        ],
    )
    assert list(registry.entities) == ["post"]
    assert registry.relations == {}
    assert len(registry.problems) == 6
    note, memo, listed, odd, parts, lost = registry.problems
    assert note.startswith('entity "note" skipped: field "size": unknown type "huge"')
    assert memo.startswith('entity "memo" skipped: definition is not valid JSON (')
    assert listed == 'entity "list" skipped: definition is not a JSON object'
    assert parts == 'relation "post_parts" skipped: target entity not found: part'
    assert odd == 'relation "odd" skipped: invalid relation type: sideways'
    assert lost == (
        'relation "lost" skipped: source entity not found: ghost; target entity not found: phantom'
    )
    assert all("\n" not in problem for problem in registry.problems)


def test_build_uses_the_row_name_over_the_definition_name() -> None:
    registry = Registry.build([("article", entity_json("post"))], [])
    assert list(registry.entities) == ["article"]
    entity = registry.entity("article")
    assert entity is not None and entity.name == "article"


def test_registry_mappings_are_read_only() -> None:
    registry = blog()
    with pytest.raises(TypeError):
        registry.entities["x"] = registry.entities["post"]  # type: ignore[index]
    with pytest.raises(TypeError):
        registry.relations["x"] = registry.relations["posts"]  # type: ignore[index]


def test_registry_keeps_entities_and_relations_ordered_by_name() -> None:
    registry = blog()
    assert list(registry.entities) == ["author", "comment", "employee", "post", "tag"]
    assert list(registry.relations) == ["post_comments", "post_tags", "posts", "reports"]


def test_empty_registry_has_nothing() -> None:
    assert EMPTY_REGISTRY.entities == {} and EMPTY_REGISTRY.relations == {}
    assert EMPTY_REGISTRY.entity("post") is None
    assert EMPTY_REGISTRY.resolve("post", "tags") is None
    assert EMPTY_REGISTRY.relations_from("post") == ()


# ---------------------------------------------------------------------------------- lookups


def test_relations_from_and_to_are_ordered_by_name() -> None:
    registry = blog()
    assert [r.name for r in registry.relations_from("post")] == ["post_comments", "post_tags"]
    assert [r.name for r in registry.relations_to("post")] == ["posts"]
    assert [r.name for r in registry.relations_from("employee")] == ["reports"]
    assert [r.name for r in registry.relations_to("employee")] == ["reports"]
    assert registry.relations_from("tag") == ()


# ------------------------------------------------------------------------------- resolution


def test_rule_1_relation_name_resolves_from_both_ends() -> None:
    registry = blog()
    assert resolved(registry.resolve("post", "post_comments")) == ("post_comments", True)
    assert resolved(registry.resolve("comment", "post_comments")) == ("post_comments", False)
    assert resolved(registry.resolve("author", "posts")) == ("posts", True)
    assert resolved(registry.resolve("post", "posts")) == ("posts", False)


def test_rule_1_only_applies_to_relations_of_the_entity() -> None:
    assert blog().resolve("tag", "post_comments") is None


def test_rule_2_target_entity_name_is_a_forward_alias() -> None:
    registry = blog()
    assert resolved(registry.resolve("post", "comment")) == ("post_comments", True)
    assert resolved(registry.resolve("post", "tag")) == ("post_tags", True)


def test_rule_2_source_entity_name_is_a_reverse_alias() -> None:
    registry = blog()
    assert resolved(registry.resolve("comment", "post")) == ("post_comments", False)
    assert resolved(registry.resolve("tag", "post")) == ("post_tags", False)
    assert resolved(registry.resolve("post", "author")) == ("posts", False)


def test_rule_3_entity_prefixed_relation_name() -> None:
    registry = blog()
    assert resolved(registry.resolve("post", "tags")) == ("post_tags", True)
    assert resolved(registry.resolve("post", "comments")) == ("post_comments", True)
    assert registry.resolve("tag", "tags") is None


def test_rule_1_wins_over_rule_2_and_rule_2_over_rule_3() -> None:
    registry = registry_of(
        [entity_json("post", "tag_id"), entity_json("tag", "post_id"), entity_json("label", "p")],
        [
            # Named like the target entity of a different relation: rule 1 beats rule 2.
            one_to_many("tag", "post", "label", "p"),
            many_to_many("post_tag", "post", "tag"),
            # "post_" + "label" would be rule 3 for key "label"; rule 2 (post -> label) wins.
            many_to_many("post_label", "tag", "post"),
        ],
    )
    assert resolved(registry.resolve("post", "tag")) == ("tag", True)
    assert resolved(registry.resolve("post", "label")) == ("tag", True)


def test_ambiguous_alias_resolves_forward_first_then_by_relation_name() -> None:
    registry = registry_of(
        [entity_json("person", "mentor_id", "boss_id"), entity_json("team", "lead_id", "owner_id")],
        [
            one_to_many("z_leads", "person", "team", "lead_id"),
            one_to_many("a_owners", "person", "team", "owner_id"),
            one_to_many("m_staff", "team", "person", "boss_id"),
        ],
    )
    # Two forward candidates from person to team: the smallest name wins.
    assert resolved(registry.resolve("person", "team")) == ("a_owners", True)
    # From team, "person" is forward through m_staff and reverse through the others: forward wins.
    assert resolved(registry.resolve("team", "person")) == ("m_staff", True)
    # Building again from rows in another order gives the same answers.
    again = Registry.build(
        [(e.name, e.to_json()) for e in reversed(list(registry.entities.values()))],
        [(r.name, r.to_json()) for r in reversed(list(registry.relations.values()))],
    )
    assert resolved(again.resolve("person", "team")) == ("a_owners", True)
    assert resolved(again.resolve("team", "person")) == ("m_staff", True)


def test_reverse_alias_ties_are_broken_by_relation_name() -> None:
    registry = registry_of(
        [entity_json("person"), entity_json("team", "lead_id", "owner_id")],
        [
            one_to_many("z_leads", "person", "team", "lead_id"),
            one_to_many("a_owners", "person", "team", "owner_id"),
        ],
    )
    assert resolved(registry.resolve("team", "person")) == ("a_owners", False)


def test_self_relation_resolves_forward() -> None:
    registry = blog()
    assert resolved(registry.resolve("employee", "reports")) == ("reports", True)
    assert resolved(registry.resolve("employee", "employee")) == ("reports", True)
    assert resolved(registry.resolve("employee", "reports", for_write=True)) == ("reports", True)


def test_for_write_accepts_forward_relations_only() -> None:
    registry = blog()
    assert resolved(registry.resolve("post", "comments", for_write=True)) == ("post_comments", True)
    assert resolved(registry.resolve("post", "tag", for_write=True)) == ("post_tags", True)
    assert registry.resolve("comment", "post", for_write=True) is None
    assert registry.resolve("comment", "post_comments", for_write=True) is None
    assert registry.resolve("post", "posts", for_write=True) is None


def test_unknown_names_resolve_to_nothing() -> None:
    registry = blog()
    assert registry.resolve("post", "likes") is None
    assert registry.resolve("nobody", "post_comments") is None


# ----------------------------------------------------------------------- derived registries


def test_with_entity_adds_or_replaces_without_touching_the_original() -> None:
    registry = blog()
    grown = parse_entity(entity_json("post", "author_id", "editor_id"))
    changed = registry.with_entity(grown)
    assert changed.entity("post") == grown
    assert registry.entity("post") != grown
    added = registry.with_entity(parse_entity(entity_json("media")))
    assert "media" in added.entities and "media" not in registry.entities
    assert added.relations == registry.relations


def test_without_entity_drops_its_relations() -> None:
    registry = blog().without_entity("post")
    assert "post" not in registry.entities
    assert list(registry.relations) == ["reports"]
    assert registry.resolve("tag", "post") is None
    assert registry.relations_to("comment") == ()


def test_with_and_without_relation_rebuild_resolution() -> None:
    registry = blog()
    tag_posts = parse_relation(many_to_many("tag_posts", "tag", "post"))
    grown = registry.with_relation(tag_posts)
    assert resolved(grown.resolve("tag", "post")) == ("tag_posts", True)
    assert resolved(registry.resolve("tag", "post")) == ("post_tags", False)
    shrunk = registry.without_relation("post_tags")
    assert shrunk.resolve("post", "tags") is None
    assert [r.name for r in shrunk.relations_from("post")] == ["post_comments"]


def test_replacing_a_relation_keeps_one_entry() -> None:
    registry = blog()
    replaced = registry.with_relation(
        Relation(
            name="posts", type="one_to_one", source="author", target="post", target_key="author_id"
        )
    )
    assert len(replaced.relations) == len(registry.relations)
    assert replaced.relations["posts"].one_to_one


def test_derived_registries_carry_the_build_problems() -> None:
    registry = Registry.build([("post", entity_json("post")), ("bad", {})], [])
    assert len(registry.problems) == 1
    assert registry.with_entity(parse_entity(entity_json("tag"))).problems == registry.problems


def test_registries_with_the_same_metadata_are_equal() -> None:
    assert blog() == blog()
    entity: Entity = parse_entity(entity_json("media"))
    assert blog().with_entity(entity).without_entity("media") == blog()


@upstream_examples
@pytest.mark.parametrize("name", NAMES)
def test_upstream_examples_build_without_problems(name: str) -> None:
    document = example(name)
    registry = Registry.build(
        [(e["name"], json.dumps(e)) for e in document["entities"]],
        [(r["name"], r) for r in document["relations"]],
    )
    assert registry.problems == ()
    assert len(registry.entities) == len(document["entities"])
    assert len(registry.relations) == len(document["relations"])
