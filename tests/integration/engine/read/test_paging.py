"""List paging for large tables over HTTP: `?total=false` (and `list_total: false`),
`has_more`, keyset cursors (`?after=`, `meta.next_cursor`) and the bad cursors they refuse."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.support.apps import AppClient, new_app

ROWS = 23


def item(**over: Any) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "name": "item",
        "table": "items",
        "primary_key": {"field": "id", "type": "int", "generated": True},
        "fields": [
            {"name": "id", "type": "int"},
            {"name": "category", "type": "string"},
            {"name": "price", "type": "float"},
            {"name": "at", "type": "timestamp"},
            {"name": "meta", "type": "json"},
        ],
        "indexes": [{"fields": ["category", "-price"]}],
    }
    entity.update(over)
    return entity


@pytest.fixture
async def app(client: Any) -> AppClient:
    app = await new_app(client)
    await app.ok("POST", "_admin/entities", item(), 201)
    for i in range(ROWS):
        body = {
            "category": "a" if i % 2 else "b",
            # repeated prices and NULLs: ties and NULLs must not lose or repeat rows
            "price": None if i % 5 == 0 else float(i % 4) + 0.1,
            "at": f"2026-01-01T00:00:{i:02d}.123456Z",
        }
        await app.ok("POST", "item", body, 201)
    return app


async def walk(app: AppClient, query: str) -> tuple[list[int], list[dict[str, Any]]]:
    """Every page of `query` by cursor: the ids in order and each page's meta."""
    ids: list[int] = []
    metas: list[dict[str, Any]] = []
    body = await app.ok("GET", f"item?{query}&total=false")
    while True:
        ids += [r["id"] for r in body["data"]]
        metas.append(body["meta"])
        cursor = body["meta"].get("next_cursor")
        if cursor is None:
            return ids, metas
        body = await app.ok("GET", f"item?{query}&after={cursor}")


async def test_total_false_answers_has_more_without_total(app: AppClient) -> None:
    body = await app.ok("GET", "item?per_page=10&total=false")
    assert "total" not in body["meta"]
    assert body["meta"]["has_more"] is True and body["meta"]["page"] == 1
    assert len(body["data"]) == 10
    last = await app.ok("GET", "item?per_page=10&page=3&total=false")
    assert last["meta"]["has_more"] is False and "next_cursor" not in last["meta"]
    assert len(last["data"]) == ROWS - 20
    # The contract's meta stays exactly as it was when the total is counted.
    counted = await app.ok("GET", "item?per_page=10")
    assert counted["meta"] == {"page": 1, "per_page": 10, "total": ROWS}


async def test_entity_default_skips_the_total(app: AppClient) -> None:
    await app.ok("PUT", "_admin/entities/item", item(list_total=False))
    body = await app.ok("GET", "item?per_page=5")
    assert "total" not in body["meta"] and body["meta"]["has_more"] is True
    asked = await app.ok("GET", "item?per_page=5&total=true")
    assert asked["meta"]["total"] == ROWS


@pytest.mark.parametrize(
    "sort", ["", "sort=-price", "sort=price,-at", "sort=category,-price", "sort=-at"]
)
async def test_cursor_walk_matches_offset_order(app: AppClient, sort: str) -> None:
    expected = [r["id"] for r in (await app.ok("GET", f"item?per_page=100&{sort}"))["data"]]
    ids, metas = await walk(app, f"per_page=4&{sort}")
    assert ids == expected
    assert all("page" not in m and "total" not in m for m in metas[1:])


async def test_cursor_walk_with_a_filter_and_a_count(app: AppClient) -> None:
    expected = [
        r["id"]
        for r in (await app.ok("GET", "item?per_page=100&filter[category]=a&sort=-price"))["data"]
    ]
    first = await app.ok("GET", "item?per_page=3&filter[category]=a&sort=-price&total=false")
    cursor = first["meta"]["next_cursor"]
    second = await app.ok(
        "GET", f"item?per_page=3&filter[category]=a&sort=-price&after={cursor}&total=true"
    )
    assert second["meta"]["total"] == len(expected)
    assert [r["id"] for r in first["data"] + second["data"]] == expected[:6]


async def test_rows_inserted_before_the_cursor_do_not_shift_the_next_page(
    app: AppClient,
) -> None:
    first = await app.ok("GET", "item?per_page=5&total=false")
    await app.ok("POST", "item", {"id": -1, "category": "z"}, 201)  # sorts before every page
    second = await app.ok("GET", f"item?per_page=5&after={first['meta']['next_cursor']}")
    assert second["data"][0]["id"] == first["data"][-1]["id"] + 1


async def bad_cursor(app: AppClient, query: str) -> dict[str, Any]:
    status, body = await app.call("GET", f"item?{query}")
    assert status == 400, body
    assert body["error"]["code"] == "INVALID_PAYLOAD"
    assert body["error"]["message"].startswith("Invalid cursor: ")
    return dict(body["error"])


async def test_bad_forged_and_mismatched_cursors_are_400(app: AppClient) -> None:
    cursor = (await app.ok("GET", "item?per_page=2&sort=-price&total=false"))["meta"]["next_cursor"]
    payload, tag = cursor.split(".")
    data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    forged = base64.urlsafe_b64encode(data.replace(b'"e":"item"', b'"e":"itex"')).rstrip(b"=")
    await bad_cursor(app, f"sort=-price&after={forged.decode()}.{tag}")
    await bad_cursor(app, "sort=-price&after=garbage")
    await bad_cursor(app, "sort=-price&after=" + "A" * 5000)
    await bad_cursor(app, f"sort=-price&after={payload}.")
    mismatched = await bad_cursor(app, f"sort=price&after={cursor}")
    assert "sort=-price" in mismatched["message"]
    await bad_cursor(app, f"sort=meta&after={cursor}")
    status, body = await app.call("GET", "item?total=maybe")
    assert status == 400 and body["error"]["code"] == "INVALID_PAYLOAD"


async def test_cursor_pages_with_includes(app: AppClient) -> None:
    """Pages with includes are encoded by rocketd, not PostgreSQL: the same cursors."""
    await app.ok(
        "POST",
        "_admin/entities",
        {
            "name": "tag",
            "table": "tags",
            "primary_key": {"field": "id", "type": "int", "generated": True},
            "fields": [{"name": "id", "type": "int"}, {"name": "item_id", "type": "int"}],
        },
        201,
    )
    relation = {
        "name": "item_tags",
        "type": "one_to_many",
        "source": "item",
        "target": "tag",
        "target_key": "item_id",
    }
    await app.ok("POST", "_admin/relations", relation, 201)
    expected = [r["id"] for r in (await app.ok("GET", "item?per_page=100&sort=-at"))["data"]]
    ids, metas = await walk(app, "per_page=6&sort=-at&include=item_tags")
    assert ids == expected
    assert len(metas) == 4 and metas[-1]["has_more"] is False
