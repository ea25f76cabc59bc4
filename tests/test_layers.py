"""The package's folder tree is its architecture: layers that import only downward, with no cycles.

Every module under ``uivlm_helpers/`` belongs to the layer named by its first sub-package. A module may
import from its own layer and the layers below it, never from one above; no two modules import each
other, directly or around a loop; and every import of a package module sits at the module's top (a
function-level import is how cycles and upward imports hide). The checks read the source with ``ast``,
so they see imports inside functions that a plain ``import`` would never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from uivlm_helpers import LAYERS

PACKAGE = "uivlm_helpers"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / PACKAGE

#: Layer folder -> its position, bottom first (a tuple in LAYERS holds layers side by side).
POSITION = {name: index for index, layer in enumerate(LAYERS)
            for name in (layer if isinstance(layer, tuple) else (layer,))}


def module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def layer_of(module: str, package: str = PACKAGE) -> int | None:
    """The layer index of a package module (None for the package's own ``__init__``)."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    if parts[1] not in POSITION:
        raise AssertionError(f"{module}: not in a layer folder; expected one of {list(POSITION)} "
                             f"(add the new sub-package to uivlm_helpers.LAYERS in its place)")
    return POSITION[parts[1]]


def package_imports(root: Path, package: str) -> list[tuple[str, str, int, bool]]:
    """Every import of a package module: (importing module, imported module, line, inside a function).

    ``from X import name`` counts as importing ``X.name`` when that is a module, else ``X``.
    """
    modules = {module_name(p, root, package): p for p in root.rglob("*.py")}
    found = []
    for source, path in sorted(modules.items()):
        is_package = path.name == "__init__.py"
        here = source.split(".") if is_package else source.split(".")[:-1]

        def visit(node, in_function: bool):
            for child in ast.iter_child_nodes(node):
                nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                targets = []
                if isinstance(child, ast.Import):
                    targets = [alias.name for alias in child.names]
                elif isinstance(child, ast.ImportFrom):
                    if child.level:
                        base = here[:len(here) - (child.level - 1)]
                        target = ".".join(base + ([child.module] if child.module else []))
                    else:
                        target = child.module or ""
                    targets = [f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target
                               for alias in child.names]
                for target in targets:
                    if target == package or target.startswith(package + "."):
                        while target not in modules:   # a.b.name where a.b is the module
                            target = target.rsplit(".", 1)[0]
                        found.append((source, target, child.lineno, in_function))
                visit(child, nested)

        visit(ast.parse(path.read_text(), filename=str(path)), False)
    return found


def upward_imports(imports) -> list[str]:
    problems = []
    for source, target, line, _ in imports:
        low, high = layer_of(source), layer_of(target)
        if low is None:
            continue  # the package's __init__ only names the public API (loaded lazily)
        beside = high == low and source.split(".")[1] != target.split(".")[1]  # side by side in a tuple
        if high is None or high > low or beside:
            where = "the package's top-level facade" if high is None else f"layer {target.split('.')[1]!r}"
            problems.append(f"{source} (layer {source.split('.')[1]!r}, line {line}) imports {target} from {where}")
    return problems


def function_level_imports(imports) -> list[str]:
    return [f"{source} line {line}: imports {target} inside a function; import it at the module's top"
            for source, target, line, in_function in imports if in_function]


def import_cycles(imports) -> list[list[str]]:
    graph: dict[str, set[str]] = {}
    for source, target, _, _ in imports:
        if source != target:
            graph.setdefault(source, set()).add(target)
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return cycles


@pytest.fixture(scope="module")
def imports():
    return package_imports(PACKAGE_DIR, PACKAGE)


def test_every_module_sits_in_a_layer_folder():
    modules = [module_name(p, PACKAGE_DIR, PACKAGE) for p in PACKAGE_DIR.rglob("*.py")]
    assert len(modules) > 40
    for module in modules:
        layer_of(module)  # raises for a module outside the layer folders


def test_no_module_imports_from_a_higher_layer(imports):
    assert len(imports) > 100  # the scan sees the package's imports
    assert upward_imports(imports) == []


def test_no_import_cycles(imports):
    assert import_cycles(imports) == []


def test_package_modules_are_imported_at_module_top(imports):
    assert function_level_imports(imports) == []


def test_the_package_does_not_import_the_recipes():
    for path in PACKAGE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            assert not any(n == "recipes" or n.startswith("recipes.") for n in names), path


def test_the_checks_catch_violations(tmp_path):
    """A synthetic package with an upward import, a function-level import and a cycle is reported."""
    root = tmp_path / "pkg"
    files = {
        "__init__.py": "",
        "core/__init__.py": "",
        "core/coords.py": "from ..workbook.runner import main\n",          # upward
        "data/__init__.py": "",
        "data/a.py": "from . import b\n",                                   # a -> b -> a
        "data/b.py": "def f():\n    from .a import x\n    return x\n",      # function level, closes the cycle
        "workbook/__init__.py": "",
        "workbook/runner.py": "from ..core.coords import main\n",           # downward: fine
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    found = package_imports(root, "pkg")
    assert upward_imports(found) == ["pkg.core.coords (layer 'core', line 1) imports pkg.workbook.runner "
                                     "from layer 'workbook'"]
    assert function_level_imports(found) == ["pkg.data.b line 2: imports pkg.data.a inside a function; "
                                             "import it at the module's top"]
    assert sorted(import_cycles(found)) == [["pkg.core.coords", "pkg.workbook.runner", "pkg.core.coords"],
                                            ["pkg.data.a", "pkg.data.b", "pkg.data.a"]]


def lazy_imports_without_reason(root: Path) -> list[str]:
    """Function-level imports of other libraries that do not say why they are lazy.

    A heavy optional dependency may be imported where it is used; the import (or the comment line right
    above a run of such imports) says why with ``# lazy: <why>``.
    """
    problems = []
    for path in sorted(root.rglob("*.py")):
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for function in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for node in ast.walk(function):
                if not isinstance(node, (ast.Import, ast.ImportFrom)) or getattr(node, "level", 0):
                    continue
                start = node.lineno - 1
                while start > 0 and lines[start - 1].strip().startswith(("import ", "from ")):
                    start -= 1  # the top of a run of imports
                said = any("# lazy:" in line for line in lines[start - 1:node.end_lineno])
                if not said:
                    where = f"{path.relative_to(root.parent)}:{node.lineno}"
                    problems.append(f"{where}: {lines[node.lineno - 1].strip()}")
    return problems


def test_lazy_imports_say_why():
    assert lazy_imports_without_reason(PACKAGE_DIR) == []


def test_the_lazy_check_catches_an_unexplained_import(tmp_path):
    root = tmp_path / "pkg"
    root.mkdir()
    (root / "m.py").write_text("def f():\n    import json\n    return json\n\n\n"
                               "def g():\n    # lazy: selenium is slow to import\n"
                               "    import selenium\n    return selenium\n")
    assert lazy_imports_without_reason(root) == ["pkg/m.py:2: import json"]
