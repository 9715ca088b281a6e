"""The admin UI's static tree: one digest over every file, the index names it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from rocketd.admin.serving import (
    ASSET_ROOT_MARK,
    CONTENT_SECURITY_POLICY,
    IMMUTABLE,
    NOT_CACHED,
    add_routes,
    load_static_tree,
)


def make_tree(root: Path, script: str) -> None:
    (root / "lib").mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(f'<script src="{ASSET_ROOT_MARK}/app.js"></script>')
    (root / "app.js").write_text(script)
    (root / "lib" / "ui.js").write_text("export const x = 1;")


def test_index_names_the_digest_and_is_not_an_asset(tmp_path: Path) -> None:
    make_tree(tmp_path, "import './lib/ui.js';")
    tree = load_static_tree(tmp_path)
    assert tree.index_html == f'<script src="/admin/static/{tree.digest}/app.js"></script>'.encode()
    assert sorted(tree.files) == ["app.js", "lib/ui.js"]


def test_any_changed_file_changes_the_digest(tmp_path: Path) -> None:
    make_tree(tmp_path, "import './lib/ui.js';")
    first = load_static_tree(tmp_path).digest
    assert load_static_tree(tmp_path).digest == first  # stable across loads
    (tmp_path / "lib" / "ui.js").write_text("export const x = 2;")
    assert load_static_tree(tmp_path).digest != first


def test_the_packaged_tree_has_the_entry_points() -> None:
    tree = load_static_tree()
    assert {"app.js", "style.css", "vendor/preact.js", "vendor/htm.js"} <= set(tree.files)
    assert b"/admin/static/" + tree.digest.encode() + b"/app.js" in tree.index_html


async def test_routes_answer_pages_assets_and_misses(tmp_path: Path, aiohttp_client: Any) -> None:
    make_tree(tmp_path, "import './lib/ui.js';")
    tree = load_static_tree(tmp_path)
    app = web.Application()
    add_routes(app, tree)
    client = await aiohttp_client(app)
    for path in ("/admin", "/admin/", "/admin/apps/shop/data/invoice?sort=-number"):
        resp = await client.get(path)
        assert resp.status == 200 and await resp.read() == tree.index_html, path
        assert resp.headers["Cache-Control"] == NOT_CACHED
        assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    resp = await client.get(f"/admin/static/{tree.digest}/lib/ui.js")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/javascript")
    assert resp.headers["Cache-Control"] == IMMUTABLE
    for miss in (
        f"/admin/static/{tree.digest}/index.html",  # the template is not an asset
        f"/admin/static/{tree.digest}/../serving.py",
        "/admin/static/0000000000000000/app.js",  # another release's digest
        "/admin/static/not-hex/app.js",  # never the index under static/
    ):
        assert (await client.get(miss)).status == 404, miss
