"""Write planning without a database: validation, nested paths, limits, modes, child decisions."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from rocketd.engine.write import nested as nested_writes
from rocketd.engine.write.nested import child_steps
from rocketd.engine.write.plan import ChildWrite, RelationWrite, WritePlan
from rocketd.engine.write.writes import plan_create, plan_update
from rocketd.errors import InvalidPayload, ValidationFailed
from rocketd.metadata.model import Entity, Field, PrimaryKey, Relation, SlugConfig
from rocketd.metadata.registry import Registry

UUID_PK = PrimaryKey("id", "uuid", generated=True)


def _id() -> Field:
    return Field("id", "uuid", required=True)


INVOICE = Entity(
    "invoice",
    "invoices",
    UUID_PK,
    (
        _id(),
        Field("number", "string", required=True),
        Field("status", "string", default="draft", enum=("draft", "sent", "paid")),
        Field("total", "decimal", precision=2),
        Field("note", "text", required=True, nullable=True),
        Field("created_at", "timestamp", auto="create"),
        Field("updated_at", "timestamp", auto="update"),
    ),
)
LINE = Entity(
    "line",
    "lines",
    UUID_PK,
    (
        _id(),
        Field("invoice_id", "uuid", required=True),
        Field("description", "string", required=True),
        Field("qty", "int", default=1),
    ),
    soft_delete=True,
)
NOTE = Entity(
    "line_note",
    "line_notes",
    UUID_PK,
    (_id(), Field("line_id", "uuid", required=True), Field("text", "string", required=True)),
)
TAG = Entity(
    "tag",
    "tags",
    PrimaryKey("code", "string"),
    (Field("code", "string", required=True), Field("label", "string")),
)
CATEGORY = Entity(
    "category",
    "categories",
    UUID_PK,
    (_id(), Field("name", "string", required=True), Field("parent_id", "uuid")),
)
POST = Entity(
    "post",
    "posts",
    UUID_PK,
    (
        _id(),
        Field("title", "string", required=True),
        Field("slug", "string", required=True, unique=True),
    ),
    slug=SlugConfig("slug", "title", regenerate_on_update=True),
)
STATIC_POST = Entity(
    "static_post",
    "static_posts",
    UUID_PK,
    (
        _id(),
        Field("title", "string", required=True),
        Field("slug", "string", required=True, unique=True),
    ),
    slug=SlugConfig("slug", "title"),
)

WIDGET = Entity(
    "widget", "widgets", UUID_PK, (_id(), Field("size", "int", required=True, default=3))
)

REGISTRY = Registry(
    {e.name: e for e in (INVOICE, LINE, NOTE, TAG, CATEGORY, POST, STATIC_POST, WIDGET)},
    {
        r.name: r
        for r in (
            Relation("invoice_lines", "one_to_many", "invoice", "line", target_key="invoice_id"),
            Relation("line_notes", "one_to_many", "line", "line_note", target_key="line_id"),
            Relation(
                "invoice_tags",
                "many_to_many",
                "invoice",
                "tag",
                join_table="invoice_tags",
                source_join_key="invoice_id",
                target_join_key="tag_code",
                write_mode="append",
            ),
            Relation(
                "category_children",
                "one_to_many",
                "category",
                "category",
                target_key="parent_id",
            ),
        )
    },
)

A = str(uuid.uuid4())
B = str(uuid.uuid4())


def _details(exc: pytest.ExceptionInfo[ValidationFailed]) -> list[dict[str, str]]:
    return [d.to_json() for d in exc.value.details]


def _invalid(entity: Entity, body: dict[str, Any], *, update: bool = False) -> list[dict[str, str]]:
    plan = plan_update if update else plan_create
    with pytest.raises(ValidationFailed) as exc:
        plan(REGISTRY, entity, body)
    return _details(exc)


def _fields(details: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(d["field"], d["rule"]) for d in details]


# --- top-level fields ----------------------------------------------------------------------------


def test_unknown_keys_are_reported_alone_before_field_validation() -> None:
    details = _invalid(INVOICE, {"number": "", "status": "bogus", "colour": "red"})
    assert details == [
        {"field": "colour", "rule": "unknown", "message": "Unknown field or relation: colour"}
    ]


def test_required_and_enum_problems_are_collected_with_spec_messages() -> None:
    details = _invalid(INVOICE, {"number": "", "status": "bogus"})
    assert details == [
        {"field": "number", "rule": "required", "message": "number is required"},
        {"field": "status", "rule": "enum", "message": "status must be one of: draft, sent, paid"},
    ]


def test_wrong_types_are_422_type_alongside_other_problems() -> None:
    details = _invalid(INVOICE, {"total": "12.x", "status": 5})
    assert _fields(details) == [("number", "required"), ("status", "enum"), ("total", "type")]
    assert details[2]["message"] == "total must be a decimal number"


def test_absent_required_field_with_a_default_takes_the_default() -> None:
    plan = plan_create(REGISTRY, WIDGET, {})
    assert dict(plan.values) == {"size": 3}
    details = _invalid(WIDGET, {"size": None})
    assert details == [{"field": "size", "rule": "required", "message": "size is required"}]


def test_nullable_cancels_required() -> None:
    plan = plan_create(REGISTRY, INVOICE, {"number": "INV-1", "note": None})
    assert plan.values["note"] is None


def test_create_applies_defaults_and_ignores_generated_pk_and_auto_fields() -> None:
    body = {"id": A, "number": "INV-1", "created_at": "2020-01-01T00:00:00Z"}
    plan = plan_create(REGISTRY, INVOICE, body)
    assert dict(plan.values) == {"number": "INV-1", "status": "draft"}
    assert plan.operation == "create"


def test_values_are_coerced_in_the_plan() -> None:
    plan = plan_create(REGISTRY, INVOICE, {"number": "INV-1", "total": "19.90"})
    assert str(plan.values["total"]) == "19.90"


def test_update_ignores_pk_and_auto_fields_and_keeps_absent_fields_out() -> None:
    plan = plan_update(REGISTRY, INVOICE, {"id": A, "updated_at": "x", "status": "paid"})
    assert dict(plan.values) == {"status": "paid"}
    assert plan.operation == "update"


def test_update_setting_a_required_field_to_null_or_empty_is_422_required() -> None:
    details = _invalid(INVOICE, {"number": None}, update=True)
    assert details == [{"field": "number", "rule": "required", "message": "number is required"}]
    assert _fields(_invalid(INVOICE, {"number": ""}, update=True)) == [("number", "required")]


def test_update_does_not_require_absent_fields() -> None:
    assert plan_update(REGISTRY, INVOICE, {}).values == {}


def test_hidden_deleted_at_of_a_soft_delete_entity_is_ignored_not_unknown() -> None:
    plan = plan_update(REGISTRY, LINE, {"deleted_at": "2020-01-01T00:00:00Z", "qty": 2})
    assert dict(plan.values) == {"qty": 2}


def test_body_must_be_an_object() -> None:
    with pytest.raises(InvalidPayload):
        plan_create(REGISTRY, INVOICE, [])  # type: ignore[arg-type]


# --- nested writes ---------------------------------------------------------------------------------


def test_children_are_validated_with_indexed_paths() -> None:
    body = {
        "number": "INV-1",
        "invoice_lines": {"data": [{"description": "ok"}, {"qty": "many"}]},
    }
    details = _invalid(INVOICE, body)
    assert _fields(details) == [
        ("invoice_lines[1].description", "required"),
        ("invoice_lines[1].qty", "type"),
    ]
    assert details[0]["message"] == "invoice_lines[1].description is required"
    assert details[1]["message"] == "invoice_lines[1].qty must be an integer"


def test_unknown_keys_in_children_are_reported_alone() -> None:
    body = {"number": "", "invoice_lines": {"data": [{"description": "x", "colour": "red"}]}}
    assert _fields(_invalid(INVOICE, body)) == [("invoice_lines[0].colour", "unknown")]


def test_relation_key_may_be_a_target_alias() -> None:
    plan = plan_create(REGISTRY, INVOICE, {"number": "I", "line": {"data": [{"description": "a"}]}})
    (write,) = plan.relations
    assert (write.key, write.path, write.relation.name) == ("line", "line", "invoice_lines")


def test_reverse_relation_key_is_unknown_for_writes() -> None:
    body = {"description": "x", "invoice": {"data": []}}
    assert _fields(_invalid(LINE, body)) == [("invoice", "unknown")]


def test_child_fk_is_propagated_not_required_and_ignored_in_the_body() -> None:
    body = {"number": "I", "invoice_lines": {"data": [{"description": "a", "invoice_id": B}]}}
    plan = plan_create(REGISTRY, INVOICE, body)
    child = plan.relations[0].children[0]
    assert child.create is not None
    assert dict(child.create.values) == {"description": "a", "qty": 1}


def test_grandchildren_are_planned_with_full_paths() -> None:
    body = {
        "number": "I",
        "invoice_lines": {"data": [{"description": "a", "line_notes": {"data": [{"text": ""}]}}]},
    }
    details = _invalid(INVOICE, body)
    assert _fields(details) == [("invoice_lines[0].line_notes[0].text", "required")]


def _nested_categories(levels: int) -> dict[str, Any]:
    body: dict[str, Any] = {"name": f"level {levels}"}
    for level in range(levels - 1, -1, -1):
        body = {"name": f"level {level}", "category_children": {"data": [body]}}
    return body


def test_nesting_up_to_the_depth_limit_is_planned() -> None:
    plan = plan_create(REGISTRY, CATEGORY, _nested_categories(nested_writes.MAX_NESTING_DEPTH))
    depth = 0
    while plan.relations:
        depth += 1
        child = plan.relations[0].children[0].create
        assert child is not None
        plan = child
    assert depth == nested_writes.MAX_NESTING_DEPTH


def test_nesting_deeper_than_the_limit_is_422_naming_the_path() -> None:
    details = _invalid(CATEGORY, _nested_categories(nested_writes.MAX_NESTING_DEPTH + 1))
    path = ".".join(["category_children[0]"] * nested_writes.MAX_NESTING_DEPTH)
    assert _fields(details) == [(f"{path}.category_children", "depth")]


def test_total_nested_items_are_capped() -> None:
    items = [{"description": "x"}] * (nested_writes.MAX_NESTED_ITEMS + 1)
    details = _invalid(INVOICE, {"number": "I", "invoice_lines": {"data": items}})
    assert _fields(details) == [("invoice_lines", "limit")]


@pytest.mark.parametrize(
    ("value", "field", "rule"),
    [
        ([{"description": "x"}], "invoice_lines", "type"),
        ({"data": {"description": "x"}}, "invoice_lines.data", "type"),
        ({}, "invoice_lines.data", "type"),
        ({"data": ["x"]}, "invoice_lines[0]", "type"),
        ({"data": [], "_write_mode": "merge"}, "invoice_lines._write_mode", "enum"),
        ({"data": [], "_write_mode": ["diff"]}, "invoice_lines._write_mode", "enum"),
        ({"data": [], "mode": "diff"}, "invoice_lines.mode", "unknown"),
    ],
)
def test_malformed_envelopes_are_422(value: Any, field: str, rule: str) -> None:
    details = _invalid(INVOICE, {"number": "", "invoice_lines": value})
    assert _fields(details) == [(field, rule)]


def test_write_mode_comes_from_the_body_then_the_relation_then_diff() -> None:
    def mode(entity: Entity, body: dict[str, Any]) -> str:
        return plan_update(REGISTRY, entity, body).relations[0].mode

    assert mode(INVOICE, {"invoice_lines": {"data": []}}) == "diff"
    assert mode(INVOICE, {"invoice_lines": {"data": [], "_write_mode": "replace"}}) == "replace"
    assert mode(INVOICE, {"invoice_tags": {"data": []}}) == "append"
    assert mode(INVOICE, {"invoice_tags": {"data": [], "_write_mode": None}}) == "append"


def test_delete_counts_only_when_json_true() -> None:
    body = {
        "invoice_lines": {
            "data": [{"id": A, "_delete": True}, {"id": B, "_delete": "true", "qty": 3}]
        }
    }
    first, second = plan_update(REGISTRY, INVOICE, body).relations[0].children
    assert first.delete and first.update is None
    assert not second.delete
    assert second.update is not None and dict(second.update.values) == {"qty": 3}


def test_delete_without_pk_is_422_except_in_append_mode() -> None:
    body: dict[str, Any] = {"invoice_lines": {"data": [{"_delete": True}]}}
    assert _fields(_invalid(INVOICE, body, update=True)) == [("invoice_lines[0].id", "required")]
    body["invoice_lines"]["_write_mode"] = "append"
    plan_update(REGISTRY, INVOICE, body)


def test_child_with_pk_is_validated_as_an_update() -> None:
    body = {"invoice_lines": {"data": [{"id": A, "qty": 2}]}}
    child = plan_update(REGISTRY, INVOICE, body).relations[0].children[0]
    assert child.pk == uuid.UUID(A)
    assert child.update is not None and dict(child.update.values) == {"qty": 2}
    assert child.create is None  # generated PKs never come from the body


def test_the_same_child_twice_is_422() -> None:
    body = {"invoice_lines": {"data": [{"id": A, "qty": 2}, {"id": A.upper(), "_delete": True}]}}
    details = _invalid(INVOICE, body, update=True)
    assert details == [
        {
            "field": "invoice_lines[1]",
            "rule": "conflict",
            "message": "invoice_lines[1] names the same line as invoice_lines[0]",
        }
    ]


def test_child_pk_of_the_wrong_type_is_422() -> None:
    body = {"invoice_lines": {"data": [{"id": "nope"}]}}
    assert _fields(_invalid(INVOICE, body, update=True)) == [("invoice_lines[0].id", "type")]


# --- many-to-many ----------------------------------------------------------------------------------


def _links(body_items: list[dict[str, Any]], mode: str = "diff") -> RelationWrite:
    body = {"invoice_tags": {"data": body_items, "_write_mode": mode}}
    return plan_update(REGISTRY, INVOICE, body).relations[0]


def test_many_to_many_ids_come_from_the_target_pk_then_id_and_are_deduplicated() -> None:
    write = _links([{"code": "a", "label": "ignored"}, {"id": "b"}, {"code": "a"}, {"id": "b"}])
    assert [(link.index, link.target_id, link.unlink) for link in write.links] == [
        (0, "a", False),
        (1, "b", False),
    ]


def test_many_to_many_item_without_an_id_is_422() -> None:
    details = _invalid(INVOICE, {"invoice_tags": {"data": [{"label": "new"}]}}, update=True)
    assert _fields(details) == [("invoice_tags[0].code", "required")]


def test_many_to_many_same_id_linked_and_unlinked_is_422() -> None:
    body = {
        "invoice_tags": {
            "_write_mode": "diff",
            "data": [{"code": "a"}, {"code": "a", "_delete": True}],
        }
    }
    assert _fields(_invalid(INVOICE, body, update=True)) == [("invoice_tags[1]", "conflict")]


def test_many_to_many_append_drops_delete_marks_before_any_check() -> None:
    """This relation's default mode is append: `_delete` items are ignored there (spec)."""
    body = {"invoice_tags": {"data": [{"code": "a"}, {"code": "a", "_delete": True}]}}
    (write,) = plan_update(REGISTRY, INVOICE, body).relations
    assert [(link.target_id, link.unlink) for link in write.links] == [("a", False)]


# --- slugs -----------------------------------------------------------------------------------------


def test_slug_is_derived_from_the_source_on_create() -> None:
    plan = plan_create(REGISTRY, POST, {"title": "Crème Brûlée 2!"})
    assert plan.slug is not None
    assert (plan.slug.field, plan.slug.base) == ("slug", "creme-brulee-2")
    assert "slug" not in plan.values


def test_explicit_slug_is_stored_verbatim() -> None:
    plan = plan_create(REGISTRY, POST, {"title": "Hello", "slug": "My Own"})
    assert plan.slug is None
    assert plan.values["slug"] == "My Own"


def test_slug_that_cannot_be_derived_is_required() -> None:
    details = _invalid(POST, {"title": "!!!"})
    assert _fields(details) == [("slug", "required")]


def test_slug_is_regenerated_on_update_only_when_configured_and_source_given() -> None:
    assert plan_update(REGISTRY, POST, {"title": "New Title"}).slug is not None
    assert plan_update(REGISTRY, POST, {}).slug is None
    assert plan_update(REGISTRY, STATIC_POST, {"title": "New Title"}).slug is None


# --- child decisions against the current children (pure) ------------------------------------------


def _write(mode: str, children: list[ChildWrite], target: Entity = LINE) -> RelationWrite:
    relation = REGISTRY.relation("invoice_lines")
    assert relation is not None
    return RelationWrite("lines", "lines", relation, target, mode, children=tuple(children))


def _plan(entity: Entity = LINE, operation: str = "update") -> WritePlan:
    return WritePlan(entity, "update" if operation == "update" else "create", {})


CURRENT = [uuid.UUID(A)]


def _steps(write: RelationWrite) -> list[tuple[str, str, Any]]:
    return [(s.action, s.path, s.pk) for s in child_steps(write, CURRENT)]


def test_diff_inserts_updates_and_deletes_current_children() -> None:
    new = ChildWrite(0, create=_plan(operation="create"))
    update = ChildWrite(1, uuid.UUID(A), update=_plan())
    assert _steps(_write("diff", [new, update])) == [
        ("insert", "lines[0]", None),
        ("update", "lines[1]", uuid.UUID(A)),
    ]
    assert _steps(_write("diff", [ChildWrite(0, A, delete=True)])) == [
        ("delete", "lines[0]", uuid.UUID(A))
    ]


@pytest.mark.parametrize("mode", ["diff", "replace"])
def test_updating_or_deleting_a_pk_that_is_not_a_current_child_is_422(mode: str) -> None:
    stranger = uuid.UUID(B)
    write = _write(
        mode, [ChildWrite(0, stranger, update=_plan()), ChildWrite(1, stranger, delete=True)]
    )
    with pytest.raises(ValidationFailed) as exc:
        child_steps(write, CURRENT)
    assert _fields(_details(exc)) == [("lines[0]", "not_child"), ("lines[1]", "not_child")]
    assert _details(exc)[0]["message"] == "lines[0] is not a child of this record"


def test_replace_deletes_missing_children_first_and_honours_delete() -> None:
    other = uuid.uuid4()
    write = _write(
        "replace", [ChildWrite(0, create=_plan(operation="create")), ChildWrite(1, A, delete=True)]
    )
    steps = [(s.action, s.pk) for s in child_steps(write, [uuid.UUID(A), other])]
    assert steps == [("delete", other), ("delete", uuid.UUID(A)), ("insert", None)]


def test_append_only_inserts_items_without_pk() -> None:
    write = _write(
        "append",
        [
            ChildWrite(0, uuid.UUID(A), update=_plan()),
            ChildWrite(1, uuid.UUID(B)),
            ChildWrite(2, A, delete=True),
            ChildWrite(3, create=_plan(operation="create")),
        ],
    )
    assert _steps(write) == [("insert", "lines[3]", None)]


def test_client_supplied_pk_that_is_not_a_child_is_a_new_child() -> None:
    tag_plan = WritePlan(TAG, "create", {"code": "x"})
    write = _write(
        "diff", [ChildWrite(0, "x", update=WritePlan(TAG, "update", {}), create=tag_plan)], TAG
    )
    assert [(s.action, s.plan) for s in child_steps(write, ["y"])] == [("insert", tag_plan)]


def test_client_supplied_pk_that_cannot_be_created_reports_why() -> None:
    from rocketd.errors import ErrorDetail

    problem = ErrorDetail("lines[0].label is required", "lines[0].label", "required")
    write = _write("diff", [ChildWrite(0, "x", create_problems=(problem,))], TAG)
    with pytest.raises(ValidationFailed) as exc:
        child_steps(write, [])
    assert exc.value.details == [problem]
