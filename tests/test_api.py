"""The shape of the code: every module imports alone, nothing imports in a cycle, lessons see only helpers' API."""

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
MODULES = sorted(
    f"{path.parent.name}.{path.stem}"
    for package in ("helpers", "coursetools")
    for path in (ROOT / package).glob("*.py")
    if path.stem != "__main__"
)


def project_imports(module: str) -> set[str]:
    """Return the project modules a module imports anywhere in its file (top level or inside functions)."""
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    found = set()
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {n for n in names if n in MODULES}
    return found - {module}


def test_no_module_imports_in_a_cycle():
    graph = {module: project_imports(module) for module in MODULES}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph[start])

    cycles = [module for module in MODULES if reaches(module, module, {module})]
    assert not cycles, {m: sorted(graph[m]) for m in cycles}


def test_helpers_never_import_the_build_tooling():
    offenders = {m: sorted(i) for m in MODULES if m.startswith("helpers.") for i in [project_imports(m)]
                 if any(n.startswith("coursetools") for n in i)}
    assert not offenders, offenders


def test_every_module_imports_alone():
    def alone(module: str) -> tuple[str, str]:
        done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, cwd=ROOT)
        return module, done.stderr[-500:] if done.returncode else ""

    with ThreadPoolExecutor(2) as pool:
        failures = {module: err for module, err in pool.map(alone, MODULES) if err}
    assert not failures, failures


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("helpers.") and not m.endswith("__init__")])
def test_each_helpers_module_lists_its_lesson_api_and_documents_it(module):
    import importlib

    imported = importlib.import_module(module)
    names = getattr(imported, "__all__", None)
    assert names, f"{module} has no __all__"
    missing = [name for name in names if not hasattr(imported, name)]
    assert not missing, missing
    reference = (ROOT / "helpers" / "README.md").read_text()
    assert all(f"`{name}`" in reference for name in names), "run: ./course publish"
