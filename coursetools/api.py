"""The lesson-facing API reference: every helpers module's `__all__`, each name's one-line docstring, the lessons using it."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from coursetools.structure import lesson_uses

ROOT = Path(__file__).resolve().parent.parent


def first_line(obj: object) -> str:
    """Return the first line of an object's own docstring, or a description of a constant's value."""
    if inspect.isfunction(obj) or inspect.isclass(obj):
        return (inspect.getdoc(obj) or "").splitlines()[0] if inspect.getdoc(obj) else ""
    return f"constant: `{obj!r}`" if isinstance(obj, int | float | str) else f"constant ({type(obj).__name__})"


def api_reference(root: Path = ROOT) -> str:
    """Return one Markdown table per helpers module with a lesson API: each exported name, what it does, which lessons use it."""
    uses = lesson_uses(root / "notebooks")
    blocks = []
    for path in sorted((root / "helpers").glob("*.py")):
        module = importlib.import_module(f"helpers.{path.stem}")
        names = getattr(module, "__all__", [])
        if path.stem.startswith("_") or not names:
            continue
        rows = [f"| `{name}` | {first_line(getattr(module, name)).replace('|', '/')} | "
                f"{', '.join(sorted(uses.get((module.__name__, name), []))) or '-'} |" for name in names]
        summary = (module.__doc__ or "").strip().splitlines()[0]
        blocks.append("\n".join([f"### `helpers.{path.stem}`", "", summary, "", "| name | what it does | lessons |",
                                 "|---|---|---|", *rows]))
    return "\n\n".join(blocks)
