"""Result tables, as aligned text and as HTML for Jupyter, and the error for a name outside its fixed set."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from html import escape
from typing import Any

__all__ = ["cell", "reason", "table"]


def one_of(kind: str, name: str, names: Collection[str]) -> str:
    """Return the name when it is one of names, else raise a ValueError that lists them sorted and says to choose one."""
    if name not in names:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {sorted(names)}")
    return name


def reason(err: BaseException) -> str:
    """Return an exception in one short line: its type and the first sentence of its message."""
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first.split('. ')[0][:300]}"


def cell(value: Any) -> str:
    """Return a value as a table cell: floats with three significant digits (1070, not 1.07e+03), others as text."""
    return f"{float(f'{value:.3g}'):g}" if isinstance(value, float) else str(value)


class Table(str):
    """An aligned text table (for print, the runner and tests) that Jupyter's `display` shows as HTML with the same cells."""

    html: str

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return str(self)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """Return rows under headers as aligned columns: text left, numbers right."""
    if any(len(row) != len(headers) for row in rows):
        raise ValueError(f"every row needs {len(headers)} cells, one per header: {list(headers)}")
    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int | float) for row in rows) and bool(rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True))

    out = Table("\n".join([line([str(h) for h in headers]), line(["-" * w for w in widths]), *(line(r) for r in text)]))
    align = ["right" if n else "left" for n in numeric]

    def html_row(tag: str, values: Sequence[str]) -> str:
        return "<tr>" + "".join(f'<{tag} style="text-align:{a}">{escape(v)}</{tag}>' for v, a in zip(values, align, strict=True)) + "</tr>"

    out.html = (f"<table><thead>{html_row('th', [str(h) for h in headers])}</thead>"
                f"<tbody>{''.join(html_row('td', r) for r in text)}</tbody></table>")
    return out
