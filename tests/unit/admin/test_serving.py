"""The admin UI's static tree: one digest over every file, the index names it."""

from __future__ import annotations

from pathlib import Path

from rocketd.admin.serving import ASSET_ROOT_MARK, load_static_tree


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
