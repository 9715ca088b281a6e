"""The layout of tests/ itself (docs/architecture.md, "Layout of `tests/`"), checked on every import
(AST, no extra package).

A test module never imports another test module, nor `tests.conftest`: shared code lives in
`tests.support`, shared fixtures in the conftest.py of the narrowest folder. Folders of
tests/unit and tests/integration mirror the packages of `rocketd/`, and every folder is a package
(so two test modules may share a file name in different folders).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.support.paths import ROOT
from tests.support.upstream import NAMES, UPSTREAM_EXAMPLES, example_path, upstream_examples

TESTS = ROOT / "tests"
SUPPORT = "tests.support"

# Folders of a tier that test something other than a package of rocketd/.
NOT_MIRRORED = {Path("integration/docs")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> Iterator[str]:
    """Every module `source` imports, anywhere in it (function bodies included), as an absolute
    name; `from X import y` yields `X.y` too, since `y` may be a module."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)


def forbidden(imported: str) -> bool:
    """A module of tests/ that is not part of tests.support (test modules, conftests, tiers)."""
    if imported == SUPPORT or imported.startswith(SUPPORT + "."):
        return False
    return imported.startswith("tests.")


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    return sorted(
        {name for name in imported_modules(source, module, is_package) if forbidden(name)}
    )


def python_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_check_catches_each_kind_of_import_of_a_test_module() -> None:
    module = "tests.integration.capabilities.workflows.test_x"
    assert violations("from tests.integration.test_cli import rocketd", module)
    assert violations("import tests.e2e.test_two_instances", module)
    assert violations("from tests.conftest import dsn_for", module)
    assert violations("from tests.integration import test_cli", module)
    assert violations("def f():\n    from tests.integration.http import test_app_auth", module)
    assert violations("from .test_workflows_api import settings", module)
    assert violations("from ..rules import test_rules_api", module)
    assert violations("from . import conftest", "tests.unit", is_package=True)
    assert not violations("from tests.support.apps import AppClient, new_app", module)
    assert not violations("from tests.support import helpers", module)
    assert not violations("import json\nfrom rocketd.config import Settings", module)


def test_no_test_module_imports_another_test_module() -> None:
    found: dict[str, list[str]] = {}
    support_imports = 0
    files = python_files()
    for path in files:
        source = path.read_text()
        module = module_name(path)
        names = list(imported_modules(source, module, path.name == "__init__.py"))
        support_imports += sum(1 for n in names if n.startswith(SUPPORT + "."))
        bad = violations(source, module, path.name == "__init__.py")
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    # The walk must have seen the suite (and the imports it allows), or it proves nothing.
    assert len(files) > 100 and support_imports > 50, (len(files), support_imports)
    assert found == {}, "move shared code to tests/support/ (or a conftest.py): " + repr(found)


def test_every_test_folder_is_a_package() -> None:
    folders = {p.parent for p in python_files()}
    missing = sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").exists())
    assert missing == []


def test_unit_and_integration_folders_mirror_the_packages_of_rocketd() -> None:
    strays = []
    for tier in ("unit", "integration"):
        for folder in (TESTS / tier).rglob("*"):
            if not folder.is_dir() or folder.name == "__pycache__":
                continue
            relative = folder.relative_to(TESTS)
            if any(relative == n or n in relative.parents for n in NOT_MIRRORED):
                continue
            package = ROOT / "rocketd" / folder.relative_to(TESTS / tier)
            if not (package / "__init__.py").is_file():
                strays.append(str(relative))
    assert sorted(strays) == []


@upstream_examples
def test_the_upstream_examples_named_in_support_are_the_shared_folder_s_files() -> None:
    named = {example_path(name) for name in NAMES}  # fails, saying why, when the folder is absent
    assert named == set(UPSTREAM_EXAMPLES.glob("*.json"))
