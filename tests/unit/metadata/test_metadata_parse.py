"""Entity and relation definitions: parsing, every validation rule, cross-checks against a registry,
round trips, and the upstream example schemas."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from rocketd.metadata import (
    NO_DEFAULT,
    Entity,
    MetadataError,
    Registry,
    entity_problems_in,
    parse_entity,
    parse_relation,
    relation_problems_in,
)
from tests.support.upstream import NAMES, example, upstream_examples


def entity_json(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "post",
        "table": "posts",
        "primary_key": {"field": "id", "type": "uuid", "generated": True},
        "fields": [
            {"name": "id", "type": "uuid", "required": True},
            {"name": "title", "type": "string", "required": True},
        ],
    }
    data.update(overrides)
    return data


def with_field(field: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    data = entity_json(**overrides)
    data["fields"] = [*data["fields"], field]
    return data


def relation_json(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "post_comments",
        "type": "one_to_many",
        "source": "post",
        "target": "comment",
        "source_key": "id",
        "target_key": "post_id",
        "ownership": "source",
        "on_delete": "cascade",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def many_to_many_json(**overrides: Any) -> dict[str, Any]:
    base = {
        "name": "post_tags",
        "type": "many_to_many",
        "source": "post",
        "target": "tag",
        "target_key": None,
        "join_table": "post_tags",
        "source_join_key": "post_id",
        "target_join_key": "tag_id",
        "ownership": "none",
        "on_delete": "detach",
    }
    base.update(overrides)
    return relation_json(**base)


def entity_problems(data: object) -> list[str]:
    with pytest.raises(MetadataError) as caught:
        parse_entity(data)
    return [d.message for d in caught.value.details]


def relation_problems(data: object) -> list[str]:
    with pytest.raises(MetadataError) as caught:
        parse_relation(data)
    return [d.message for d in caught.value.details]


# ----------------------------------------------------------------------------- happy paths


def test_parses_the_spec_example_entity() -> None:
    entity = parse_entity(
        {
            "name": "post",
            "table": "posts",
            "primary_key": {"field": "id", "type": "uuid", "generated": True},
            "soft_delete": True,
            "slug": {"field": "slug", "source": "title", "regenerate_on_update": False},
            "fields": [
                {"name": "id", "type": "uuid", "required": True},
                {"name": "title", "type": "string", "required": True},
                {"name": "slug", "type": "string", "required": True, "unique": True},
                {
                    "name": "status",
                    "type": "string",
                    "default": "draft",
                    "enum": ["draft", "review", "published"],
                },
                {"name": "price", "type": "decimal", "precision": 2},
                {"name": "cover", "type": "file"},
                {"name": "created_at", "type": "timestamp", "auto": "create"},
                {"name": "updated_at", "type": "timestamp", "auto": "update"},
            ],
        }
    )
    assert entity.name == "post"
    assert entity.soft_delete is True
    assert entity.slug is not None and entity.slug.source == "title"
    assert entity.field_map["status"].enum == ("draft", "review", "published")
    assert entity.field_map["status"].default == "draft"
    assert entity.field_map["price"].precision == 2
    assert entity.field_map["cover"].default is NO_DEFAULT
    assert entity.field_map["updated_at"].auto == "update"
    assert [f.name for f in entity.fields][:2] == ["id", "title"]


def test_blank_and_null_optional_values_mean_not_set() -> None:
    entity = parse_entity(
        with_field(
            {"name": "note", "type": "text", "required": None, "auto": "", "enum": None},
            slug=None,
            soft_delete=None,
        )
    )
    note = entity.field_map["note"]
    assert (note.required, note.auto, note.enum) == (False, None, ())
    assert entity.slug is None and entity.soft_delete is False


def test_null_default_is_kept_as_sql_null() -> None:
    entity = parse_entity(with_field({"name": "note", "type": "text", "default": None}))
    assert entity.field_map["note"].default is None
    assert entity.field_map["note"].has_default


def test_primary_key_type_is_inferred_from_the_field_when_left_out() -> None:
    data = entity_json(
        primary_key={"field": "code"}, fields=[{"name": "code", "type": "text", "required": True}]
    )
    assert parse_entity(data).primary_key.type == "string"
    data["fields"] = [{"name": "code", "type": "bigint"}]
    assert parse_entity(data).primary_key.type == "bigint"


def test_relation_defaults_come_from_the_model() -> None:
    relation = parse_relation(
        {
            "name": "post_comments",
            "type": "one_to_many",
            "source": "post",
            "target": "comment",
            "target_key": "post_id",
        }
    )
    assert (relation.source_key, relation.ownership, relation.on_delete) == (
        "id",
        "source",
        "detach",
    )
    assert (relation.fetch, relation.write_mode) == ("lazy", "diff")


def test_blank_strings_from_the_admin_ui_are_ignored_in_relations() -> None:
    relation = parse_relation(relation_json(join_table="", source_join_key="", fetch=""))
    assert relation.join_table is None and relation.source_join_key is None
    assert relation.fetch == "lazy"


# ------------------------------------------------------------------------------- round trips

ROUND_TRIP_ENTITIES = [
    entity_json(),
    entity_json(
        name="order_line",
        table="order_lines",
        soft_delete=True,
        primary_key={"field": "line_no", "type": "bigint", "generated": True},
        fields=[
            {"name": "line_no", "type": "bigint", "required": True},
            {"name": "qty", "type": "int", "default": 1},
            {"name": "weight", "type": "float", "default": 0.5, "nullable": True},
            {"name": "price", "type": "decimal", "precision": 4, "default": "12.5000"},
            {"name": "paid", "type": "boolean", "default": False},
            {"name": "meta", "type": "json", "default": {"tags": [1, 2]}},
            {"name": "kind", "type": "string", "enum": ["a", "b"], "default": "b"},
            {"name": "ref", "type": "uuid", "default": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"},
            {"name": "due", "type": "date", "default": "2026-02-22"},
            {"name": "at", "type": "timestamp", "default": "2026-02-22T10:15:30Z"},
            {"name": "made", "type": "timestamp", "auto": "create"},
            {"name": "deleted_at", "type": "timestamp"},
        ],
    ),
    entity_json(
        name="tag",
        table="tags",
        primary_key={"field": "code", "type": "string", "generated": False},
        slug={"field": "slug", "source": "label", "regenerate_on_update": True},
        fields=[
            {"name": "code", "type": "string", "required": True, "unique": True},
            {"name": "label", "type": "text"},
            {"name": "slug", "type": "text", "unique": True},
        ],
    ),
]


@pytest.mark.parametrize("data", ROUND_TRIP_ENTITIES, ids=lambda d: d["name"])
def test_entity_round_trips_through_to_json(data: dict[str, Any]) -> None:
    entity = parse_entity(data)
    assert parse_entity(entity.to_json()) == entity
    assert parse_entity(json.loads(json.dumps(entity.to_json()))) == entity


ROUND_TRIP_RELATIONS = [
    relation_json(),
    relation_json(
        name="author_profile",
        type="one_to_one",
        source="author",
        target="profile",
        target_key="author_id",
        ownership="target",
        on_delete="set_null",
        fetch="eager",
        write_mode="replace",
    ),
    many_to_many_json(write_mode="append", on_delete="restrict", target_key="id"),
]


@pytest.mark.parametrize("data", ROUND_TRIP_RELATIONS, ids=lambda d: d["name"])
def test_relation_round_trips_through_to_json(data: dict[str, Any]) -> None:
    relation = parse_relation(data)
    assert parse_relation(relation.to_json()) == relation


# --------------------------------------------------------------------- entity validation rules


@pytest.mark.parametrize("data", [None, [], "post", 3])
def test_entity_that_is_not_an_object_is_rejected(data: object) -> None:
    assert entity_problems(data) == ["entity definition must be a JSON object"]


def test_missing_required_entity_keys_use_the_spec_messages() -> None:
    problems = entity_problems({"name": "", "fields": []})
    assert problems == [
        "entity name is required",
        "table name is required",
        "entity must have at least one field",
        "primary key field is required",
    ]


@pytest.mark.parametrize(
    ("overrides", "path", "text"),
    [
        ({"name": "Post"}, "name", 'entity name "Post" is invalid'),
        ({"name": "1post"}, "name", 'entity name "1post" is invalid'),
        ({"table": "my-posts"}, "table", 'table name "my-posts" is invalid'),
        ({"table": "p" * 64}, "table", "is invalid"),
    ],
)
def test_names_must_be_lowercase_identifiers(
    overrides: dict[str, Any], path: str, text: str
) -> None:
    with pytest.raises(MetadataError) as caught:
        parse_entity(entity_json(**overrides))
    (detail,) = caught.value.details
    assert detail.field == path
    assert text in detail.message
    assert "lowercase letters" in detail.message


def test_longest_allowed_name_is_63_characters() -> None:
    assert parse_entity(entity_json(table="t" * 63)).table == "t" * 63


def test_invalid_field_name_is_reported_with_its_path() -> None:
    with pytest.raises(MetadataError) as caught:
        parse_entity(with_field({"name": "Title Text", "type": "string"}))
    assert caught.value.details[0].field == "fields[2].name"
    assert 'field name "Title Text" is invalid' in caught.value.message


def test_unknown_field_type_lists_the_allowed_types() -> None:
    with pytest.raises(MetadataError) as caught:
        parse_entity(with_field({"name": "age", "type": "number"}))
    (detail,) = caught.value.details
    assert detail.field == "fields[2].type"
    assert detail.message.startswith('field "age": unknown type "number" (allowed: bigint, boolean')


def test_field_without_name_or_type_is_reported() -> None:
    problems = entity_problems(with_field({"unique": True}))
    assert problems[0] == "fields[2]: field name is required"
    assert problems[1].startswith("fields[2]: type is required")


def test_field_that_is_not_an_object_is_reported() -> None:
    assert entity_problems(with_field("title")) == [  # type: ignore[arg-type]
        "fields[2] must be an object with at least name and type"
    ]


def test_duplicate_field_names_are_rejected() -> None:
    assert entity_problems(with_field({"name": "title", "type": "text"})) == [
        'duplicate field name "title"'
    ]


def test_unknown_keys_are_rejected_with_a_suggestion() -> None:
    data = with_field({"name": "body", "type": "text", "requierd": True}, softdelete=True)
    data["primary_key"]["generate"] = True
    problems = entity_problems(data)
    assert problems[0].startswith('unknown key "softdelete" in entity (did you mean "soft_delete"?')
    assert problems[1].startswith(
        'unknown key "requierd" in field "body" (did you mean "required"?'
    )
    assert problems[2].startswith(
        'unknown key "generate" in primary_key (did you mean "generated"?'
    )


def test_unknown_key_without_a_close_match_lists_the_allowed_keys() -> None:
    (problem,) = entity_problems(entity_json(colour="red"))
    assert problem == (
        'unknown key "colour" in entity (allowed keys: fields, indexes, list_total, name, '
        "primary_key, slug, soft_delete, table)"
    )


def test_primary_key_field_must_be_one_of_the_fields() -> None:
    assert entity_problems(entity_json(primary_key={"field": "uid"})) == [
        "primary key field uid not found in fields"
    ]


@pytest.mark.parametrize(
    ("pk", "field_type", "message"),
    [
        ({"type": "serial"}, "uuid", 'primary key type "serial" is invalid'),
        ({"type": "uuid"}, "int", 'primary key type "uuid" needs field "id" to be of type uuid'),
        ({"type": "int"}, "uuid", 'primary key type "int" needs field "id" to be of type bigint'),
        ({"type": "string"}, "int", 'needs field "id" to be of type string or text, not int'),
        ({}, "float", 'primary key field "id" has type float'),
        ({"type": "string", "generated": True}, "string", 'of type "string" cannot be generated'),
        ({"type": "uuid", "generated": "yes"}, "uuid", "primary_key.generated must be true or"),
    ],
)
def test_primary_key_type_must_fit_its_field(
    pk: dict[str, Any], field_type: str, message: str
) -> None:
    data = entity_json(
        primary_key={"field": "id", **pk}, fields=[{"name": "id", "type": field_type}]
    )
    (problem,) = entity_problems(data)
    assert message in problem


@pytest.mark.parametrize("pk_type", ["int", "integer", "bigint"])
@pytest.mark.parametrize("field_type", ["int", "integer", "bigint"])
def test_integer_primary_key_types_are_interchangeable(pk_type: str, field_type: str) -> None:
    data = entity_json(
        primary_key={"field": "id", "type": pk_type, "generated": True},
        fields=[{"name": "id", "type": field_type}],
    )
    assert parse_entity(data).primary_key.generated is True


def test_primary_key_must_be_an_object() -> None:
    assert entity_problems(entity_json(primary_key="id")) == [
        "primary_key must be an object (keys: field, generated, type)"
    ]


@pytest.mark.parametrize("key", ["required", "unique", "nullable"])
def test_field_flags_must_be_booleans(key: str) -> None:
    assert entity_problems(with_field({"name": "body", "type": "text", key: "true"})) == [
        f"fields[2].{key} must be true or false"
    ]


def test_entity_flags_must_be_booleans() -> None:
    assert entity_problems(entity_json(soft_delete=1)) == ["soft_delete must be true or false"]


@pytest.mark.parametrize(
    ("field", "message"),
    [
        (
            {"type": "timestamp", "auto": "always"},
            'auto must be "create" or "update", not "always"',
        ),
        ({"type": "date", "auto": "create"}, "auto applies to timestamp fields only"),
        ({"type": "string", "auto": True}, "fields[2].auto must be a string"),
    ],
)
def test_auto_is_create_or_update_on_timestamps_only(field: dict[str, Any], message: str) -> None:
    (problem,) = entity_problems(with_field({"name": "stamp", **field}))
    assert message in problem


@pytest.mark.parametrize(
    ("enum", "message"),
    [
        ("a,b", "enum must be a list of strings"),
        (["a", 1], "enum must be a list of strings"),
        (["a", True], "enum must be a list of strings"),
        (["a", "b", "a"], 'enum lists "a" more than once'),
    ],
)
def test_enum_is_a_list_of_distinct_strings(enum: object, message: str) -> None:
    (problem,) = entity_problems(with_field({"name": "kind", "type": "string", "enum": enum}))
    assert problem == f'field "kind": {message}'


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ({"type": "decimal", "precision": 19}, "precision must be a whole number from 0 to 18"),
        ({"type": "decimal", "precision": -1}, "precision must be a whole number from 0 to 18"),
        ({"type": "decimal", "precision": 2.5}, "precision must be a whole number from 0 to 18"),
        ({"type": "decimal", "precision": True}, "precision must be a whole number from 0 to 18"),
        ({"type": "float", "precision": 2}, "precision applies to decimal fields only"),
    ],
)
def test_precision_is_0_to_18_on_decimals_only(field: dict[str, Any], message: str) -> None:
    (problem,) = entity_problems(with_field({"name": "amount", **field}))
    assert problem == f'field "amount": {message}'


def test_zero_precision_is_accepted_on_any_type() -> None:
    entity = parse_entity(with_field({"name": "amount", "type": "float", "precision": 0}))
    assert entity.field_map["amount"].precision == 0


@pytest.mark.parametrize(
    ("field_type", "default", "message"),
    [
        ("string", 5, "default must be a string"),
        ("text", True, "default must be a string"),
        ("int", 1.5, "default must be a whole number"),
        ("int", True, "default must be a whole number"),
        ("int", "ten", "default must be a whole number"),
        ("int", 2**31, f"default {2**31} is out of range for int"),
        ("bigint", 2**63, f"default {2**63} is out of range for bigint"),
        ("float", "fast", "default must be a number"),
        ("float", False, "default must be a number"),
        ("float", "1e999", "default must be a finite number"),
        ("decimal", "12,50", "default must be a number"),
        ("boolean", 1, "default must be true or false"),
        ("boolean", "yes", "default must be true or false"),
        ("uuid", "not-a-uuid", 'default "not-a-uuid" is not a valid UUID'),
        ("uuid", 7, "default must be a string holding a uuid"),
        ("timestamp", "now", 'default "now" is not an ISO 8601 timestamp'),
        ("date", "22/02/2026", 'default "22/02/2026" is not an ISO 8601 date'),
    ],
)
def test_default_must_match_the_field_type(field_type: str, default: object, message: str) -> None:
    (problem,) = entity_problems(
        with_field({"name": "value", "type": field_type, "default": default})
    )
    assert problem.startswith(f'field "value": {message}')


@pytest.mark.parametrize(
    ("field_type", "default", "precision", "message"),
    [
        # An integer too large for a double (it reaches the parser from files and from jsonb).
        ("float", 10**400, None, "default must be a finite number"),
        ("decimal", "1e20", 2, "default must have at most 16 digits before the decimal point"),
        ("decimal", 1e20, 2, "default must have at most 16 digits before the decimal point"),
        ("decimal", "1e5000", None, "default is out of range for a decimal"),
    ],
)
def test_a_numeric_default_must_fit_the_column(
    field_type: str, default: object, precision: int | None, message: str
) -> None:
    field: dict[str, Any] = {"name": "value", "type": field_type, "default": default}
    if precision is not None:
        field["precision"] = precision
    (problem,) = entity_problems(with_field(field))
    assert problem == f'field "value": {message}'


def test_the_largest_finite_numbers_are_valid_defaults() -> None:
    data = entity_json()
    data["fields"] += [
        {"name": "big", "type": "float", "default": 1e308},
        {"name": "huge", "type": "float", "default": 10**308},  # jsonb gives 1e308 back so
        {"name": "wide", "type": "decimal", "precision": 2, "default": "9999999999999999.99"},
    ]
    entity = parse_entity(data)
    assert entity.field_map["big"].default == 1e308
    assert entity.field_map["huge"].default == 10**308


@pytest.mark.parametrize(
    ("field_type", "default", "stored"),
    [
        ("int", "42", 42),
        ("int", 3.0, 3),
        ("bigint", "-7", -7),
        ("float", "0.25", 0.25),
        ("float", "3", 3),
        ("decimal", "12.50", "12.50"),
        ("decimal", 12.5, 12.5),
        ("boolean", "true", True),
        ("boolean", "False", False),
        ("json", [1, "two"], [1, "two"]),
        ("file", {"id": "x"}, {"id": "x"}),
    ],
)
def test_defaults_spelled_as_text_by_the_admin_ui_are_stored_typed(
    field_type: str, default: object, stored: object
) -> None:
    entity = parse_entity(with_field({"name": "value", "type": field_type, "default": default}))
    value = entity.field_map["value"].default
    assert value == stored and type(value) is type(stored)


def test_default_must_be_one_of_the_enum_values() -> None:
    (problem,) = entity_problems(
        with_field({"name": "status", "type": "string", "enum": ["open"], "default": "closed"})
    )
    assert problem == 'field "status": default "closed" is not one of its enum'


def test_default_is_compared_with_the_enum_as_text() -> None:
    entity = parse_entity(
        with_field({"name": "level", "type": "int", "enum": ["1", "2"], "default": 2})
    )
    assert entity.field_map["level"].default == 2


def test_an_integral_float_default_matches_its_enum_as_a_body_value_does() -> None:
    """`2.0` is `"2"` to enum checks, whether it is a default or a value in a body (issue 14:
    the default used to be compared as `"2.0"` and refused)."""
    entity = parse_entity(
        with_field({"name": "level", "type": "decimal", "enum": ["1", "2"], "default": 2.0})
    )
    assert entity.field_map["level"].enum == ("1", "2")


def test_deleted_at_must_be_a_nullable_timestamp() -> None:
    problems = entity_problems(with_field({"name": "deleted_at", "type": "date", "required": True}))
    assert problems == [
        'field "deleted_at" must be of type timestamp (soft delete writes it)',
        'field "deleted_at" cannot be required: it is null on every live record',
    ]


@pytest.mark.parametrize(
    ("slug", "message", "path"),
    [
        ({"field": "handle"}, 'slug field "handle" not found in fields', "slug.field"),
        ({"field": "title"}, 'slug field "title" must have unique: true', "slug.field"),
        ({"field": "rank"}, 'slug field "rank" must be of type string or text', "slug.field"),
        (
            {"field": "slug", "source": "name"},
            'slug source field "name" not found in fields',
            "slug.source",
        ),
        ({"source": "title"}, "slug field is required", "slug.field"),
        (
            {"field": "slug", "regenerate_on_update": "no"},
            "slug.regenerate_on_update must be true or false",
            "slug.regenerate_on_update",
        ),
        ("slug", "slug must be an object (keys: field, regenerate_on_update, source)", "slug"),
    ],
)
def test_slug_rules_use_the_spec_messages(slug: object, message: str, path: str) -> None:
    data = entity_json(slug=slug)
    data["fields"] += [
        {"name": "slug", "type": "string", "unique": True},
        {"name": "rank", "type": "int", "unique": True},
    ]
    with pytest.raises(MetadataError) as caught:
        parse_entity(data)
    assert [(d.message, d.field) for d in caught.value.details] == [(message, path)]


def test_every_problem_is_reported_at_once() -> None:
    data = {
        "name": "Bad Name",
        "primary_key": {"field": "id", "type": "uuid"},
        "slug": {"field": "title"},
        "fields": [
            {"name": "id", "type": "uuid"},
            {"name": "title", "type": "strng"},
            {"name": "count", "type": "int", "default": "many", "requred": True},
        ],
    }
    with pytest.raises(MetadataError) as caught:
        parse_entity(data)
    error = caught.value
    assert error.status == 422 and error.code == "VALIDATION_FAILED"
    assert [d.field for d in error.details] == [
        "name",
        "table",
        "fields[1].type",
        "fields[2].requred",
        "fields[2].default",
        "slug.field",
    ]
    assert error.message == "; ".join(d.message for d in error.details)
    assert error.to_json()["error"]["details"][0] == {
        "message": 'entity name "Bad Name" is invalid: use 1 to 63 lowercase letters, digits or'
        ' "_", starting with a letter',
        "field": "name",
    }


def test_metadata_error_accepts_plain_messages() -> None:
    error = MetadataError(["first problem", "second problem"])
    assert error.message == "first problem; second problem"
    assert [d.to_json() for d in error.details] == [
        {"message": "first problem"},
        {"message": "second problem"},
    ]


def test_parse_entity_does_not_modify_its_input() -> None:
    data = with_field({"name": "n", "type": "int", "default": "4"})
    before = copy.deepcopy(data)
    parse_entity(data)
    assert data == before


# ------------------------------------------------------------------- relation validation rules


@pytest.mark.parametrize("data", [None, ["x"], "post_tags"])
def test_relation_that_is_not_an_object_is_rejected(data: object) -> None:
    assert relation_problems(data) == ["relation definition must be a JSON object"]


def test_missing_relation_keys_use_the_spec_messages() -> None:
    assert relation_problems({"name": "", "type": "one_to_many", "target_key": "x"}) == [
        "relation name is required",
        "source and target are required",
    ]


def test_relation_type_must_be_known() -> None:
    assert relation_problems(relation_json(type="many_to_one")) == [
        "invalid relation type: many_to_one"
    ]
    assert relation_problems(relation_json(type=None)) == [
        "relation type is required (one of many_to_many, one_to_many, one_to_one)"
    ]


def test_many_to_many_requires_join_table_and_join_keys() -> None:
    data = many_to_many_json(join_table=None, source_join_key=None, target_join_key=None)
    assert relation_problems(data) == [
        "join_table is required for many_to_many relations",
        "source_join_key is required for many_to_many relations",
        "target_join_key is required for many_to_many relations",
    ]


def test_many_to_many_join_keys_must_differ() -> None:
    assert relation_problems(many_to_many_json(target_join_key="post_id")) == [
        "source_join_key and target_join_key must be different columns"
    ]


@pytest.mark.parametrize("rel_type", ["one_to_many", "one_to_one"])
def test_one_to_many_and_one_to_one_require_target_key(rel_type: str) -> None:
    assert relation_problems(relation_json(type=rel_type, target_key=None)) == [
        f"target_key is required for {rel_type} relations"
    ]


def test_self_relation_needs_distinct_keys() -> None:
    data = relation_json(
        name="employee_reports", source="employee", target="employee", target_key="id"
    )
    assert relation_problems(data) == [
        "a relation from an entity to itself needs a target_key other than its source_key"
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ownership", "parent"),
        ("on_delete", "nullify"),
        ("fetch", "always"),
        ("write_mode", "merge"),
    ],
)
def test_relation_choices_come_from_the_model_sets(key: str, value: str) -> None:
    (problem,) = relation_problems(relation_json(**{key: value}))
    assert problem.startswith(f'invalid {key} "{value}" (allowed: ')


@pytest.mark.parametrize(
    ("overrides", "path", "message"),
    [
        ({"name": "Post-Comments"}, "name", 'relation name "Post-Comments" is invalid'),
        ({"source": "Post"}, "source", 'source entity name "Post" is invalid'),
        ({"target_key": "post id"}, "target_key", 'target_key column name "post id" is invalid'),
        ({"source_key": 5}, "source_key", "source_key must be a string"),
    ],
)
def test_relation_names_and_columns_must_be_identifiers(
    overrides: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(MetadataError) as caught:
        parse_relation(relation_json(**overrides))
    (detail,) = caught.value.details
    assert (detail.field, detail.message.startswith(message)) == (path, True)


def test_relation_join_table_name_is_checked() -> None:
    (problem,) = relation_problems(many_to_many_json(join_table="Post Tags"))
    assert problem.startswith('join table name "Post Tags" is invalid')


def test_unknown_relation_keys_are_rejected() -> None:
    (problem,) = relation_problems(relation_json(on_delet="cascade"))
    assert problem.startswith('unknown key "on_delet" in relation (did you mean "on_delete"?')


# ------------------------------------------------------------- cross-checks against a registry


def entity_of(name: str, table: str, *fields: str) -> Entity:
    return parse_entity(
        {
            "name": name,
            "table": table,
            "primary_key": {"field": "id", "type": "uuid", "generated": True},
            "fields": [{"name": "id", "type": "uuid"}]
            + [{"name": f, "type": "uuid"} for f in fields],
        }
    )


def blog() -> Registry:
    post = entity_of("post", "posts", "author_id")
    comment = entity_of("comment", "comments", "post_id")
    tag = entity_of("tag", "tags")
    registry = Registry({e.name: e for e in (post, comment, tag)})
    registry = registry.with_relation(parse_relation(relation_json()))
    return registry.with_relation(parse_relation(many_to_many_json()))


@pytest.mark.parametrize("name", ["auth"])
def test_entity_names_that_are_routes_are_reserved(name: str) -> None:
    problems = entity_problems_in(blog(), entity_of(name, "things"))
    assert problems == [
        f'entity name "{name}" is reserved: /api/{{app}}/{name} is a route of its own;'
        " choose another name"
    ]


def test_reserved_names_starting_with_underscore_are_reported_even_unparsed() -> None:
    entity = Entity(
        name="_files",
        table="files_table",
        primary_key=entity_of("x", "xs").primary_key,
        fields=entity_of("x", "xs").fields,
    )
    assert entity_problems_in(blog(), entity)[0].startswith('entity name "_files" is reserved')


def test_system_table_names_are_refused() -> None:
    assert entity_problems_in(blog(), entity_of("stat", "pg_stats")) == [
        'table "pg_stats" is reserved for system tables (names starting with "_" or "pg_")'
    ]


def test_table_of_another_entity_or_join_table_is_refused() -> None:
    assert entity_problems_in(blog(), entity_of("article", "posts")) == [
        'table "posts" is already used by entity "post"'
    ]
    assert entity_problems_in(blog(), entity_of("post_tag", "post_tags")) == [
        'table "post_tags" is the join table of relation "post_tags"'
    ]


def test_replacing_an_entity_may_keep_its_own_table() -> None:
    assert (
        entity_problems_in(blog(), entity_of("post", "posts", "author_id"), replacing="post") == []
    )


def test_replacing_an_entity_may_not_drop_a_relation_key_field() -> None:
    assert entity_problems_in(blog(), entity_of("comment", "comments"), replacing="comment") == [
        'field "post_id" is used by relation "post_comments" (target_key);'
        " keep the field or change the relation first"
    ]


def test_replacing_an_entity_may_not_drop_a_source_key_field() -> None:
    post = parse_entity(
        {
            "name": "post",
            "table": "posts",
            "primary_key": {"field": "uid", "type": "uuid"},
            "fields": [{"name": "uid", "type": "uuid"}],
        }
    )
    problems = entity_problems_in(blog(), post, replacing="post")
    assert problems == [
        'field "id" is used by relation "post_comments" (source_key);'
        " keep the field or change the relation first",
        'field "id" is used by relation "post_tags" (source_key);'
        " keep the field or change the relation first",
    ]


def test_an_entity_with_relations_cannot_be_renamed() -> None:
    problems = entity_problems_in(blog(), entity_of("article", "posts"), replacing="post")
    assert problems == [
        'entity "post" cannot be renamed: relation "post_comments" refers to it',
        'entity "post" cannot be renamed: relation "post_tags" refers to it',
    ]


def test_a_new_field_may_not_shadow_a_relation_of_the_entity() -> None:
    post = entity_of("post", "posts", "author_id", "post_comments")
    (problem,) = entity_problems_in(blog(), post, replacing="post")
    assert problem.startswith('relation "post_comments" has the same name as a field')


def test_relation_entities_must_exist() -> None:
    relation = parse_relation(relation_json(source="blog", target="note"))
    assert relation_problems_in(blog(), relation) == [
        "source entity not found: blog",
        "target entity not found: note",
    ]


def test_relation_key_fields_must_exist_on_the_right_entity() -> None:
    relation = parse_relation(
        relation_json(name="post_notes", source_key="uid", target_key="article_id")
    )
    assert relation_problems_in(blog(), relation) == [
        'source_key "uid" is not a field of entity "post"',
        'target_key "article_id" is not a field of entity "comment"',
    ]


def test_many_to_many_source_key_must_exist_but_target_key_is_ignored() -> None:
    relation = parse_relation(
        many_to_many_json(
            name="post_labels", join_table="post_labels", source_key="uid", target_key="nope"
        )
    )
    assert relation_problems_in(blog(), relation) == [
        'source_key "uid" is not a field of entity "post"'
    ]


def test_join_table_may_not_be_an_entity_or_system_table() -> None:
    on_entity = parse_relation(many_to_many_json(name="post_tagging", join_table="comments"))
    assert relation_problems_in(blog(), on_entity) == [
        'join table "comments" is the table of entity "comment"'
    ]
    system = parse_relation(many_to_many_json(name="post_tagging", join_table="pg_tags"))
    assert relation_problems_in(blog(), system) == [
        'join table "pg_tags" is reserved for system tables (names starting with "_" or "pg_")'
    ]


def test_join_table_may_be_shared_only_with_the_same_layout() -> None:
    mirrored = parse_relation(
        many_to_many_json(
            name="tag_posts",
            source="tag",
            target="post",
            source_join_key="tag_id",
            target_join_key="post_id",
        )
    )
    assert relation_problems_in(blog(), mirrored) == []
    clashing = parse_relation(
        many_to_many_json(
            name="tag_posts",
            source="tag",
            target="post",
            source_join_key="post_id",
            target_join_key="tag_id",
        )
    )
    assert relation_problems_in(blog(), clashing) == [
        'join table "post_tags" is already used by relation "post_tags" with different join keys'
    ]


def test_replacing_a_relation_ignores_its_old_version() -> None:
    changed = parse_relation(many_to_many_json(source_join_key="article_id"))
    assert relation_problems_in(blog(), changed, replacing="post_tags") == []


def test_relation_name_may_not_equal_a_field_of_its_source() -> None:
    relation = parse_relation(relation_json(name="author_id"))
    assert relation_problems_in(blog(), relation) == [
        'relation "author_id" has the same name as a field of its source entity "post":'
        " a write body could not tell them apart; rename one of them"
    ]


# ---------------------------------------------------------------------- upstream example files


@upstream_examples
@pytest.mark.parametrize("name", NAMES)
def test_upstream_example_metadata_parses_and_cross_checks_cleanly(name: str) -> None:
    document = example(name)
    entities = [parse_entity(item) for item in document["entities"]]
    relations = [parse_relation(item) for item in document["relations"]]
    registry = Registry({e.name: e for e in entities}, {r.name: r for r in relations})
    for entity in entities:
        assert parse_entity(entity.to_json()) == entity
        assert entity_problems_in(registry, entity, replacing=entity.name) == []
    for relation in relations:
        assert parse_relation(relation.to_json()) == relation
        assert relation_problems_in(registry, relation, replacing=relation.name) == []
    # Building empty-handed, one item at a time, as an import does, finds nothing either.
    growing = Registry()
    for entity in entities:
        assert entity_problems_in(growing, entity) == []
        growing = growing.with_entity(entity)
    for relation in relations:
        assert relation_problems_in(growing, relation) == []
        growing = growing.with_relation(relation)
    assert growing == registry


def many_fields(count: int) -> list[dict[str, Any]]:
    return [{"name": "id", "type": "uuid"}] + [
        {"name": f"f{n}", "type": "int"} for n in range(count - 1)
    ]


def test_an_entity_may_have_as_many_columns_as_postgresql_allows() -> None:
    assert len(parse_entity(entity_json(fields=many_fields(1600))).fields) == 1600
    declared = [*many_fields(1599), {"name": "deleted_at", "type": "timestamp"}]
    parse_entity(entity_json(fields=declared, soft_delete=True))


def test_more_columns_than_postgresql_allows_are_refused() -> None:
    assert entity_problems(entity_json(fields=many_fields(1601))) == [
        "too many fields: the table would have 1601 columns (1601 fields); PostgreSQL allows"
        " at most 1600"
    ]
    assert entity_problems(entity_json(fields=many_fields(1600), soft_delete=True)) == [
        "too many fields: the table would have 1601 columns (1600 fields plus the deleted_at"
        " column of soft delete); PostgreSQL allows at most 1600"
    ]
