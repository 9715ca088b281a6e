"""The dependency rules of docs/architecture.md, checked on every import (AST, no extra package).

Each module of `rocketd` may import only from the packages its layer allows; type-only imports
(`if TYPE_CHECKING:`) count like any other; and no two modules import each other, directly or
through others. A capability is reached from outside only through its package's `__init__`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGE = ROOT / "rocketd"

# Everyone may use these (they import nothing of rocketd but each other).
SHARED = (
    "rocketd.errors",
    "rocketd.logging",
    "rocketd.json_encoding",
    "rocketd.timestamps",
    "rocketd.tracing",
)

# layer (module prefix) -> the prefixes it may import, besides SHARED and itself.
# The first matching prefix (longest) decides a module's layer.
ALLOWED: dict[str, tuple[str, ...]] = {
    "rocketd.errors": (),
    "rocketd.logging": (),
    "rocketd.json_encoding": (),
    "rocketd.timestamps": (),
    "rocketd.tracing": (),
    "rocketd.expressions": (),
    "rocketd.config": ("rocketd.capabilities.*.settings",),
    "rocketd.systemd": (),
    "rocketd.data_dir": ("rocketd.db.embedded",),
    "rocketd.net": (),
    "rocketd.metadata": ("rocketd.expressions", "rocketd.config"),
    "rocketd.db": ("rocketd.metadata", "rocketd.expressions", "rocketd.config"),
    "rocketd.storage": ("rocketd.config",),
    "rocketd.auth": ("rocketd.db", "rocketd.config"),
    "rocketd.engine": (
        "rocketd.metadata",
        "rocketd.db",
        "rocketd.expressions",
        "rocketd.auth.principal",
        "rocketd.config",
    ),
    "rocketd.platform": (
        "rocketd.db",
        "rocketd.auth",
        "rocketd.config",
        "rocketd.metadata",
        "rocketd.storage",
    ),
    "rocketd.actors": (
        "rocketd.engine",
        "rocketd.auth",
        "rocketd.db",
        "rocketd.metadata",
        "rocketd.platform",
        "rocketd.config",
    ),
    "rocketd.services": (
        "rocketd.config",
        "rocketd.auth",
        "rocketd.actors",
        "rocketd.storage",
        "rocketd.extensions",
    ),
    "rocketd.extensions": (
        "rocketd.engine",
        "rocketd.actors",
        "rocketd.db",
        "rocketd.metadata",
        "rocketd.auth",
        "rocketd.config",
        "rocketd.services",
        "rocketd.storage",
    ),
    "rocketd.http": (
        "rocketd.net",
        "rocketd.engine",
        "rocketd.auth",
        "rocketd.platform",
        "rocketd.db",
        "rocketd.metadata",
        "rocketd.config",
        "rocketd.services",
        "rocketd.extensions",
        "rocketd.actors",
        "rocketd.storage",
    ),
    "rocketd.capabilities": (
        "rocketd.net",
        "rocketd.engine",
        "rocketd.metadata",
        "rocketd.db",
        "rocketd.auth",
        "rocketd.expressions",
        "rocketd.storage",
        "rocketd.platform",
        "rocketd.actors",
        "rocketd.extensions",
        "rocketd.config",
        "rocketd.services",
    ),
    "rocketd.admin": ("rocketd.http", "rocketd.services", "rocketd.extensions"),
    "rocketd.runtime": ("rocketd",),
    "rocketd.workers": ("rocketd",),
    "rocketd.cli": ("rocketd",),
    "rocketd.__main__": ("rocketd",),
    "rocketd": (),  # the package's own __init__
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, name: str) -> Iterator[tuple[str, int]]:
    """Every rocketd module `path` imports (type-only ones included), with its line."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("rocketd"):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if not module.startswith("rocketd"):
                continue
            for alias in node.names:
                full = f"{module}.{alias.name}"
                yield (full if full in ALL_MODULES else module), node.lineno


ALL_MODULES = modules()


def layer_of(name: str) -> str:
    best = ""
    for prefix in ALLOWED:
        if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return best


def _matches(target: str, pattern: str) -> bool:
    if "*" in pattern:
        head, _, tail = pattern.partition(".*.")
        if not target.startswith(head + "."):
            return False
        rest = target[len(head) + 1 :].split(".")
        return len(rest) >= 2 and ".".join(rest[1:]).startswith(tail)
    return target == pattern or target.startswith(pattern + ".")


def capability_of(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) >= 3 and parts[:2] == ["rocketd", "capabilities"]:
        return ".".join(parts[:3])
    return None


def edge_problem(importer: str, target: str) -> str | None:
    """Why `importer` may not import `target`, or None when the rules allow it."""
    layer = layer_of(importer)
    if not layer:
        return "no layer in the rules"
    own_capability = capability_of(importer)
    target_capability = capability_of(target)
    if target_capability and own_capability and target_capability != own_capability:
        if target != target_capability:
            return "reach another capability through its __init__"
        return None
    if target == "rocketd" or any(_matches(target, s) for s in SHARED) or _matches(target, layer):
        return None  # the package root only holds __version__
    if target.startswith("rocketd.http") and own_capability:
        return None if importer.endswith(".routes") else "only a capability's routes.py uses http"
    if any(_matches(target, allowed) for allowed in ALLOWED[layer]):
        return None
    return f"layer {layer} may not import it"


def violations() -> list[str]:
    found: list[str] = []
    for name, path in ALL_MODULES.items():
        for target, line in sorted(set(imports_of(path, name))):
            problem = edge_problem(name, target)
            if problem:
                found.append(f"{path.relative_to(ROOT)}:{line}: {name} -> {target} ({problem})")
    return found


def cycles() -> list[list[str]]:
    graph: dict[str, set[str]] = {name: set() for name in ALL_MODULES}
    for name, path in ALL_MODULES.items():
        for target, _ in imports_of(path, name):
            if target in graph and target != name:
                # importing `pkg.mod` also runs `pkg/__init__`; only the module edge matters here
                graph[name].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_every_import_follows_the_layer_rules() -> None:
    problems = violations()
    assert not problems, "imports against docs/architecture.md:\n" + "\n".join(problems)


def test_no_import_cycles_even_type_only() -> None:
    found = cycles()
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_kernel_names_no_capability() -> None:
    for name, path in ALL_MODULES.items():
        if not name.startswith("rocketd.engine"):
            continue
        for target, line in imports_of(path, name):
            assert not target.startswith(
                ("rocketd.capabilities", "rocketd.actors", "rocketd.http", "rocketd.extensions")
            ), f"{path.relative_to(ROOT)}:{line}: the kernel imports {target}"


@pytest.mark.parametrize(
    ("importer", "target", "allowed"),
    [
        ("rocketd.engine.records", "rocketd.capabilities.rules", False),
        ("rocketd.engine.records", "rocketd.http.app", False),
        ("rocketd.capabilities.rules.stages", "rocketd.capabilities.webhooks", True),
        ("rocketd.capabilities.rules.stages", "rocketd.capabilities.webhooks.outbox", False),
        ("rocketd.capabilities.rules.admin", "rocketd.http.crud", False),
        ("rocketd.capabilities.rules.routes", "rocketd.http.crud", True),
        ("rocketd.metadata.model", "rocketd.engine.records", False),
        ("rocketd.config.settings", "rocketd.capabilities.webhooks.settings", True),
    ],
)
def test_the_checker_itself_tells_allowed_from_forbidden(
    importer: str, target: str, allowed: bool
) -> None:
    """The rules above, applied to made-up edges: proves the check can fail."""
    assert (edge_problem(importer, target) is None) is allowed
