"""List-query parsing (filters, operators, sort, paging, includes) and the SQL it composes,
without a database."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from multidict import MultiDict
from psycopg import sql

from rocketd.engine.read import query as query_module
from rocketd.engine.read.query import (
    FILTER_OPERATORS,
    MAX_LIST_VALUES,
    MAX_OFFSET,
    Filter,
    ListQuery,
    SortKey,
    parse_filter,
    parse_includes,
    parse_list_query,
)
from rocketd.engine.sql import compose as sc
from rocketd.errors import ApiError, InvalidPayload, UnknownField
from rocketd.metadata.model import Entity, Field, PrimaryKey, Relation
from rocketd.metadata.registry import Registry

POST = Entity(
    "post",
    "posts",
    PrimaryKey("id", "uuid", generated=True),
    (
        Field("id", "uuid"),
        Field("title", "string"),
        Field("views", "int"),
        Field("price", "decimal", precision=2),
        Field("published", "boolean"),
        Field("meta", "json"),
        Field("author_id", "uuid"),
    ),
    soft_delete=True,
)
COMMENT = Entity(
    "comment",
    "comments",
    PrimaryKey("id", "int", generated=True),
    (Field("id", "int"), Field("post_id", "uuid"), Field("body", "text")),
)
TAG = Entity(
    "tag", "tags", PrimaryKey("id", "uuid"), (Field("id", "uuid"), Field("name", "string"))
)
AUTHOR = Entity(
    "author", "authors", PrimaryKey("id", "uuid"), (Field("id", "uuid"), Field("name", "string"))
)
RELATIONS = (
    Relation("post_comments", "one_to_many", "post", "comment", target_key="post_id"),
    Relation(
        "post_tags",
        "many_to_many",
        "post",
        "tag",
        join_table="post_tags",
        source_join_key="post_id",
        target_join_key="tag_id",
        fetch="eager",
    ),
    Relation("author_posts", "one_to_many", "author", "post", target_key="author_id"),
)
REGISTRY = Registry(
    {e.name: e for e in (POST, COMMENT, TAG, AUTHOR)}, {r.name: r for r in RELATIONS}
)


def parse(params: dict[str, str] | MultiDict[str], **kwargs: Any) -> ListQuery:
    return parse_list_query(REGISTRY, POST, params, **kwargs)


def error(params: dict[str, str], kind: type[ApiError]) -> ApiError:
    with pytest.raises(kind) as info:
        parse(params)
    return info.value


# --- filters ----------------------------------------------------------------------------------------


def test_no_params_gives_defaults_ordered_by_pk_with_eager_includes() -> None:
    q = parse({})
    assert q.filters == ()
    assert q.sort == (SortKey("id"),)
    assert (q.page, q.per_page, q.offset) == (1, 25, 0)
    assert [i.name for i in q.includes] == ["post_tags"]  # fetch: eager


SUBSTRING = ("contains", "starts_with", "ends_with")


@pytest.mark.parametrize(
    "op", [o for o in FILTER_OPERATORS if o not in ("in", "not_in", *SUBSTRING)]
)
def test_every_single_value_operator_parses(op: str) -> None:
    field = "title" if op in ("like", "ilike") else "views"
    raw = "%abc%" if op in ("like", "ilike") else "5"
    (flt,) = parse({f"filter[{field}.{op}]": raw}).filters
    assert flt == Filter(POST.field_map[field], op, raw if field == "title" else 5)


def test_bare_filter_is_eq() -> None:
    (flt,) = parse({"filter[published]": "t"}).filters
    assert (flt.op, flt.value) == ("eq", True)


def test_in_lists_are_split_trimmed_and_coerced() -> None:
    (flt,) = parse({"filter[views.in]": " 1, 2 ,3"}).filters
    assert (flt.op, flt.value) == ("in", (1, 2, 3))
    (flt,) = parse({"filter[price.not_in]": "1.50,2"}).filters
    assert flt.value == (Decimal("1.50"), Decimal(2))


def test_empty_in_list_is_an_empty_tuple() -> None:
    (flt,) = parse({"filter[views.in]": ""}).filters
    assert flt.value == ()
    (flt,) = parse({"filter[title.not_in]": "  "}).filters
    assert flt.value == ()


def test_in_lists_are_capped() -> None:
    raw = ",".join(["1"] * (MAX_LIST_VALUES + 1))
    err = error({"filter[views.in]": raw}, InvalidPayload)
    assert err.message == f"Invalid filter value for views: at most {MAX_LIST_VALUES} values"
    assert len(parse({"filter[views.in]": ",".join(["1"] * MAX_LIST_VALUES)}).filters[0].value) == (
        MAX_LIST_VALUES
    )


def test_bad_item_in_a_list_is_reported() -> None:
    err = error({"filter[views.in]": "1,x"}, InvalidPayload)
    assert err.message == "Invalid filter value for views: 'x' must be an integer"
    assert err.details[0].field == "views" and err.details[0].rule == "type"


def test_unknown_operator_is_invalid_payload() -> None:
    err = error({"filter[views.between]": "1"}, InvalidPayload)
    assert err.code == "INVALID_PAYLOAD" and err.status == 400
    assert err.message.startswith("Unknown filter operator: between")


def test_unknown_filter_field() -> None:
    err = error({"filter[nope]": "1"}, UnknownField)
    assert (err.code, err.status, err.message) == (
        "UNKNOWN_FIELD",
        400,
        "Unknown filter field: nope",
    )


def test_relation_dot_field_is_an_unknown_field() -> None:
    err = error({"filter[post_comments.body]": "x"}, UnknownField)
    assert err.message == "Unknown filter field: post_comments"


def test_hidden_deleted_at_is_not_filterable_or_sortable() -> None:
    assert error({"filter[deleted_at.is_null]": "x"}, UnknownField).message == (
        "Unknown filter field: deleted_at"
    )
    assert error({"sort": "deleted_at"}, UnknownField).message == "Unknown sort field: deleted_at"


@pytest.mark.parametrize(
    "name",
    [
        "name;drop table x",
        'title"; --',
        "title'",
        "TITLE",
        "tïtle",
        "",
        "title ",
        " title",
        "id) OR (1=1",
    ],
)
def test_hostile_filter_names_are_unknown_fields(name: str) -> None:
    err = error({f"filter[{name}]": "1"}, UnknownField)
    assert err.message == f"Unknown filter field: {name.partition('.')[0]}"


def test_malformed_filter_key_is_rejected() -> None:
    assert error({"filter[title": "x"}, InvalidPayload).message.startswith(
        "Malformed filter parameter"
    )


def test_like_only_on_text_fields() -> None:
    err = error({"filter[views.like]": "1%"}, InvalidPayload)
    assert (
        err.message == "Invalid filter value for views: like applies only to string and text fields"
    )


def test_json_field_filter_is_invalid_payload() -> None:
    err = error({"filter[meta]": "{}"}, InvalidPayload)
    assert err.message.startswith("Invalid filter value for meta:")


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("filter[views]", "abc"),
        ("filter[views.gt]", "99999999999"),
        ("filter[id]", "not-a-uuid"),
        ("filter[price.gte]", "cheap"),
        ("filter[published]", "yes"),
    ],
)
def test_bad_filter_values_are_invalid_payload(key: str, raw: str) -> None:
    err = error({key: raw}, InvalidPayload)
    field = key[len("filter[") :].split(".")[0].rstrip("]")
    assert err.message.startswith(f"Invalid filter value for {field}: ")


def test_filters_are_in_canonical_order() -> None:
    a = parse({"filter[views.gt]": "1", "filter[title]": "x"}).filters
    b = parse({"filter[title]": "x", "filter[views.gt]": "1"}).filters
    assert a == b and [f.field.name for f in a] == ["title", "views"]


def test_repeated_keys_last_value_wins() -> None:
    params: MultiDict[str] = MultiDict(
        [("filter[views]", "1"), ("filter[views]", "2"), ("sort", "title"), ("sort", "-views")]
    )
    q = parse(params)
    assert [(f.op, f.value) for f in q.filters] == [("eq", 2)]
    assert q.sort == (SortKey("views", True), SortKey("id"))


def test_other_params_are_ignored() -> None:
    assert parse({"_": "123", "filters": "x"}) == parse({})


# --- sort --------------------------------------------------------------------------------------------


def test_multi_key_sort_with_pk_tie_breaker() -> None:
    q = parse({"sort": "-views, title,,-views"})
    assert q.sort == (SortKey("views", True), SortKey("title"), SortKey("id"))


def test_sort_by_pk_is_not_repeated() -> None:
    assert parse({"sort": "-id,title"}).sort == (SortKey("id", True), SortKey("title"))


def test_unknown_sort_field() -> None:
    assert error({"sort": "title,-nope"}, UnknownField).message == "Unknown sort field: nope"
    assert error({"sort": "title;drop"}, UnknownField).message == "Unknown sort field: title;drop"


# --- paging -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "per_page", "expected"),
    [
        ("2", "50", (2, 50)),
        ("0", "0", (1, 25)),
        ("-1", "-1", (1, 25)),
        ("abc", "x", (1, 25)),
        ("1.5", "2.5", (1, 25)),
        ("", "", (1, 25)),
        ("+2", " 5", (1, 25)),
        ("1", "1000000000", (1, 100)),
        ("3", "101", (3, 100)),
        ("1000000000", "10", (MAX_OFFSET // 10 + 1, 10)),
        ("9" * 40, "25", (MAX_OFFSET // 25 + 1, 25)),
        ("٣", "٣", (1, 25)),
    ],
)
def test_paging_edge_cases(page: str, per_page: str, expected: tuple[int, int]) -> None:
    q = parse({"page": page, "per_page": per_page})
    assert (q.page, q.per_page) == expected
    assert q.offset <= MAX_OFFSET


def test_paging_limits_are_configurable() -> None:
    q = parse({"per_page": "80"}, max_per_page=50, default_per_page=10)
    assert q.per_page == 50
    assert parse({}, max_per_page=50, default_per_page=10).per_page == 10


# --- includes ------------------------------------------------------------------------------------------


def test_includes_resolve_names_aliases_and_reverse() -> None:
    q = parse({"include": "comments, post_comments,tags,author"})
    by_name = {i.name: i for i in q.includes}
    assert list(by_name) == ["comments", "post_comments", "tags", "author", "post_tags"]
    assert by_name["comments"].ref.relation.name == "post_comments"
    assert by_name["comments"].ref.forward and by_name["comments"].target is COMMENT
    assert by_name["tags"].ref.relation.name == "post_tags" and by_name["tags"].target is TAG
    assert not by_name["author"].ref.forward and by_name["author"].target is AUTHOR
    # The eager relation is attached under its own name, once, even when asked for by name.
    assert [i.name for i in parse({"include": "post_tags"}).includes] == ["post_tags"]


def test_unknown_include_is_rejected_strictly() -> None:
    assert error({"include": "comments,bogus"}, UnknownField).message == "Unknown include: bogus"
    with pytest.raises(UnknownField):
        parse_includes(REGISTRY, POST, "comments;drop table x", strict=True)


def test_non_strict_includes_skip_unknown_names() -> None:
    specs = parse_includes(REGISTRY, POST, "bogus,comments", strict=False)
    assert [s.name for s in specs] == ["comments", "post_tags"]


def test_include_with_missing_key_column_is_unknown() -> None:
    broken = Relation("post_notes", "one_to_many", "post", "comment", target_key="missing")
    registry = REGISTRY.with_relation(broken)
    with pytest.raises(UnknownField):
        parse_includes(registry, POST, "post_notes")


# --- composed SQL ---------------------------------------------------------------------------------------


def test_condition_covers_every_filter_operator() -> None:
    # the substring operators are parsed into `ilike` patterns (test_substring_operators...)
    substring = {"contains", "starts_with", "ends_with"}
    rendered = {
        op: sc.render(sc.condition("views", op)) for op in FILTER_OPERATORS if op not in substring
    }
    assert rendered == {
        "eq": '"views" = %s',
        "neq": '"views" <> %s',
        "gt": '"views" > %s',
        "gte": '"views" >= %s',
        "lt": '"views" < %s',
        "lte": '"views" <= %s',
        "in": '"views" = ANY(%s)',
        "not_in": '"views" <> ALL(%s)',
        "like": '"views" LIKE %s',
        "ilike": '"views" ILIKE %s',
    }
    with pytest.raises(ValueError):
        sc.condition("views", "between")


def test_identifiers_outside_the_name_syntax_never_reach_sql() -> None:
    for name in ('a"b', "a;b", "A", "", "a" * 64, "1a"):
        with pytest.raises(ValueError):
            sc.ident(name)


def test_list_select_for_a_soft_delete_entity() -> None:
    statement = sc.build_select(
        POST,
        conditions=[sc.condition("views", "gte")],
        order=[("views", True), ("id", False)],
        limit=True,
        offset=True,
    )
    assert sc.render(statement) == (
        'SELECT "id", "title", "views", "price", "published", "meta", "author_id", "deleted_at"'
        ' FROM "posts" WHERE "deleted_at" IS NULL AND "views" >= %s'
        ' ORDER BY "views" DESC, "id" LIMIT %s OFFSET %s'
    )


def test_lookup_prefers_the_first_column() -> None:
    statement = sc.build_lookup(POST, ("title", "id"), for_update=True)
    assert sc.render(statement) == (
        'SELECT "id", "title", "views", "price", "published", "meta", "author_id", "deleted_at"'
        ' FROM "posts" WHERE ("title" = %s OR "id" = %s) AND "deleted_at" IS NULL'
        ' ORDER BY ("title" = %s) IS TRUE DESC LIMIT 1 FOR UPDATE'
    )


def test_write_builders() -> None:
    assert (
        sc.render(
            sc.build_insert(
                "posts", ("id", "title"), now_columns=("created_at",), returning=("id",)
            )
        )
        == 'INSERT INTO "posts" ("id", "title", "created_at") VALUES (%s, %s, now()) RETURNING "id"'
    )
    assert sc.render(
        sc.build_insert("post_tags", ("post_id", "tag_id"), rows=2, on_conflict_do_nothing=True)
    ) == (
        'INSERT INTO "post_tags" ("post_id", "tag_id") VALUES (%s, %s), (%s, %s)'
        " ON CONFLICT DO NOTHING"
    )
    assert sc.render(sc.build_insert("posts", ())) == 'INSERT INTO "posts" DEFAULT VALUES'
    assert sc.render(
        sc.build_update(
            "posts",
            ("title",),
            now_columns=("updated_at",),
            conditions=[sc.condition("id"), sc.live_condition(POST) or sc.condition("id")],
        )
    ) == (
        'UPDATE "posts" SET "title" = %s, "updated_at" = now()'
        ' WHERE "id" = %s AND "deleted_at" IS NULL'
    )
    assert sc.render(sc.build_delete("posts", [sc.condition("id", "in")])) == (
        'DELETE FROM "posts" WHERE "id" = ANY(%s)'
    )
    assert sc.render(sc.build_soft_delete("posts", [sc.condition("id")])) == (
        'UPDATE "posts" SET "deleted_at" = now() WHERE "id" = %s AND "deleted_at" IS NULL'
    )
    with pytest.raises(ValueError):
        sc.build_delete("posts", [])
    with pytest.raises(ValueError):
        sc.build_update("posts", ())


def test_entity_sql_is_computed_once_per_entity_object() -> None:
    assert sc.entity_sql(POST) is sc.entity_sql(POST)
    twin = Entity(POST.name, POST.table, POST.primary_key, POST.fields, soft_delete=True)
    assert sc.entity_sql(twin) is not sc.entity_sql(POST)


def test_statement_cache_renders_once_per_shape() -> None:
    cache = sc.StatementCache(max_size=1)
    calls: list[int] = []

    def build() -> sql.Composable:
        calls.append(1)
        return sc.condition("views")

    assert cache.render("a", None, build) == b'"views" = %s'
    cache.render("a", None, build)
    cache.render("b", None, build)  # over the bound: rendered, not kept
    cache.render("b", None, build)
    assert len(calls) == 3 and len(cache) == 1


def test_cached_parse_answers_the_same_query_for_the_same_parameters() -> None:
    params = MultiDict({"filter[title]": "x", "sort": "-title"})
    first = query_module.parse_list_query_cached(REGISTRY, POST, params)
    assert first == parse_list_query(REGISTRY, POST, params)
    assert query_module.parse_list_query_cached(REGISTRY, POST, MultiDict(params)) is first
    other = query_module.parse_list_query_cached(REGISTRY, POST, params, max_per_page=10)
    assert other is not first  # the caps are part of the key


def test_cached_parse_is_per_registry_and_never_remembers_errors() -> None:
    params = MultiDict({"sort": "title"})
    first = query_module.parse_list_query_cached(REGISTRY, POST, params)
    reloaded = Registry(dict(REGISTRY.entities), dict(REGISTRY.relations))
    assert query_module.parse_list_query_cached(reloaded, POST, params) is not first
    for _ in range(2):
        with pytest.raises(UnknownField):
            query_module.parse_list_query_cached(REGISTRY, POST, MultiDict({"sort": "nope"}))


def test_cached_parse_keeps_a_bounded_number_of_shapes() -> None:
    for n in range(query_module.PARSED_PER_ENTITY + 50):
        query_module.parse_list_query_cached(REGISTRY, TAG, MultiDict({"page": str(n + 1)}))
    assert len(query_module._PARSED.get(TAG)) == query_module.PARSED_PER_ENTITY


def test_substring_operators_become_escaped_ilike_patterns() -> None:
    cases = {
        "contains": "%50\\%\\_a\\\\b%",
        "starts_with": "50\\%\\_a\\\\b%",
        "ends_with": "%50\\%\\_a\\\\b",
    }
    for op, pattern in cases.items():
        found = parse_filter(POST, f"title.{op}", "50%_a\\b")
        assert (found.op, found.value) == ("ilike", pattern)
