"""Aligned plain-text tables for results printed in lessons, and the error for a name outside its fixed set."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

__all__ = ["table"]


def one_of(kind: str, name: str, names: Collection[str]) -> str:
    """Return the name when it is one of names, else raise a ValueError that lists them sorted and says to choose one."""
    if name not in names:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {sorted(names)}")
    return name


def cell(value: Any) -> str:
    """Return a value as a table cell: floats with three significant digits, everything else as text."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Return rows under headers as aligned columns: text left, numbers right."""
    if any(len(row) != len(headers) for row in rows):
        raise ValueError(f"every row needs {len(headers)} cells, one per header: {list(headers)}")
    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int | float) for row in rows) and bool(rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True))

    return "\n".join([line([str(h) for h in headers]), line(["-" * w for w in widths]), *(line(r) for r in text)])
