"""The shape of the code, read from its source: the import graph, its cycles and depth, and which names lessons use."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("helpers", "coursetools")
MAX_DEPTH = 5  # modules in the longest import chain inside helpers
MAX_LINES = 2600  # lines of helpers/*.py: issue 27 asked for "about 2,500"; issues 28-31 added measurements every lesson makes (the loop without a host wait, compile counts, the quartile tie rule, the planner mirroring from_pretrained), and one-lesson code moved into its lesson or coursetools to stay near it


def modules(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Return every module of the packages by dotted name ("helpers.timing", "coursetools.checks.lesson03")."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(source: str) -> set[str]:
    """Return every dotted name a source imports, anywhere in it: `a.b` for `import a.b`, `a.b` and `a.b.c` for `from a.b import c`."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def import_graph(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """Return, per module of the packages, every import of it that names a project module or package (top-level name)."""
    known = modules(root, packages)
    graph = {}
    for name, path in known.items():
        names = imported_names(path.read_text())
        graph[name] = {n for n in names if n in known and n != name} | {n for n in names if n.split(".")[0] == "notebooks"}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[str]:
    """Return the modules that reach themselves through the graph's imports."""

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph.get(start, ()))

    return [module for module in graph if reaches(module, module, {module})]


def forbidden_imports(graph: dict[str, set[str]], package: str = "helpers",
                      forbidden: tuple[str, ...] = ("coursetools", "notebooks")) -> dict[str, list[str]]:
    """Return each module of `package` that imports from a forbidden package, with what it imports."""
    return {
        module: sorted(bad)
        for module, imports in graph.items()
        if module.split(".")[0] == package
        for bad in [{n for n in imports if n.split(".")[0] in forbidden}]
        if bad
    }


def depth(graph: dict[str, set[str]], package: str = "helpers") -> int:
    """Return the modules in the longest import chain inside a package (1: a module that imports none of it)."""
    inside = {m: {n for n in graph[m] if n in graph and n.split(".")[0] == package and n != package}
              for m in graph if m.split(".")[0] == package}
    memo: dict[str, int] = {}

    def levels(module: str) -> int:
        if module not in memo:
            memo[module] = 1 + max((levels(n) for n in inside[module]), default=0)
        return memo[module]

    return max((levels(m) for m in inside), default=0)


def exported(root: Path = ROOT, package: str = "helpers") -> dict[str, list[str]]:
    """Return each module's `__all__`, read from its source, by dotted name."""
    names = {}
    for name, path in modules(root, (package,)).items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(getattr(t, "id", None) == "__all__" for t in targets):
                    names[name] = list(ast.literal_eval(node.value))
    return names


def lesson_uses(notebooks: Path = ROOT / "notebooks", package: str = "helpers") -> dict[tuple[str, str], list[str]]:
    """Return, per (module, name) a lesson's source imports from the package, the lesson ids that import it."""
    uses: dict[tuple[str, str], list[str]] = {}
    for path in sorted(notebooks.glob("[0-9][0-9]_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package:
                for alias in node.names:
                    lessons = uses.setdefault((node.module, alias.name), [])
                    if path.name[:2] not in lessons:
                        lessons.append(path.name[:2])
    return uses


def unused_exports(exports: dict[str, list[str]], uses: dict[tuple[str, str], list[str]]) -> list[str]:
    """Return the exported names (module.name) that no lesson imports."""
    return [f"{module}.{name}" for module, names in exports.items() for name in names if (module, name) not in uses]


def unexported_uses(exports: dict[str, list[str]], uses: dict[tuple[str, str], list[str]]) -> list[str]:
    """Return the names (module.name) a lesson imports that its module's `__all__` does not list."""
    return [f"{module}.{name}" for module, name in uses if name not in exports.get(module, [])]


def line_count(root: Path = ROOT, package: str = "helpers") -> int:
    """Return the lines of a package's modules."""
    return sum(len(path.read_text().splitlines()) for path in modules(root, (package,)).values())
