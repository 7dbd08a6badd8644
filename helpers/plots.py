"""Small plotting helpers so lesson cells show a chart in one line."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt

__all__ = ["bar_chart", "histogram", "line_chart"]


def bar_chart(values: dict[str, float], title: str, unit: str, log: bool = False) -> None:
    """Show one horizontal bar per entry, labelled with its value."""
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(values)))
    bars = ax.barh(list(values), list(values.values()))
    ax.bar_label(bars, labels=[f"{v:.3g}" for v in values.values()], padding=3)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title, loc="left")
    if log:
        ax.set_xscale("log")
    fig.tight_layout()
    plt.show()


def histogram(values: Sequence[float], title: str, unit: str, bins: int | str = "auto") -> None:
    """Show how many values fall in each range of `unit`, one bar per range."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(list(values), bins=bins, edgecolor="white")
    ax.set(xlabel=unit, ylabel="count")
    ax.set_title(title, loc="left")
    fig.tight_layout()
    plt.show()


def line_chart(
    x: Sequence[float], series: dict[str, Sequence[float | None]], title: str, xlabel: str, ylabel: str,
    logx: bool = False, logy: bool = False,
) -> None:
    """Show one line per series against x; None values (e.g. out of memory) leave gaps."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, ys in series.items():
        points = [(a, b) for a, b in zip(x, ys, strict=True) if b is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title, loc="left")
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    plt.show()
