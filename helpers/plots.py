"""Small plotting helpers so lesson cells show a chart in one line."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt

from helpers.tables import cell

__all__ = ["bar_chart", "histogram", "interval_bars", "line_chart", "stacked_bars"]


def bar_chart(values: dict[str, float], title: str, unit: str) -> None:
    """Show one horizontal bar per entry, labelled with its value."""
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(values)))
    bars = ax.barh(list(values), list(values.values()))
    ax.bar_label(bars, labels=[cell(float(v)) for v in values.values()], padding=3)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title, loc="left")
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
    logx: bool = False, logy: bool = False, quartiles: dict[str, Sequence[tuple[float, float] | None]] | None = None,
) -> None:
    """Show one line per series against x, with quartiles as error bars where given; None values (e.g. out of memory) leave gaps."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, ys in series.items():
        bounds = (quartiles or {}).get(name) or [None] * len(ys)
        points = [(a, b, q or (b, b)) for a, b, q in zip(x, ys, bounds, strict=True) if b is not None]
        if points:
            xs, ms, qs = zip(*points, strict=True)
            errors = [[m - q[0] for m, q in zip(ms, qs, strict=True)], [q[1] - m for m, q in zip(ms, qs, strict=True)]]
            ax.errorbar(xs, ms, yerr=errors if quartiles else None, marker="o", capsize=3, label=name)
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


def interval_bars(values: dict[str, tuple[float, float, float]], title: str, unit: str,
                  lines: dict[str, float] | None = None, markers: tuple[str, dict[str, float]] | None = None,
                  log: bool = False) -> None:
    """Show one bar per entry at its median with its quartiles (low, high) as an error bar, lines and markers.

    log: a log axis, with a point per entry instead of a bar (a bar's length from a log axis's arbitrary left edge would
    misstate the ratios between entries).
    """
    names = list(values)
    medians = [values[n][0] for n in names]
    errors = [[m - values[n][1] for n, m in zip(names, medians, strict=True)],
              [values[n][2] - m for n, m in zip(names, medians, strict=True)]]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.5 * len(names)), layout="constrained")
    rows = list(range(len(names)))
    if log:
        ax.errorbar(medians, rows, xerr=errors, fmt="o", capsize=3, color="tab:blue", label="median, quartiles of the rounds")
        for row, median in zip(rows, medians, strict=True):
            ax.annotate(cell(float(median)), (median, row), textcoords="offset points", xytext=(0, 7), ha="center")
        ax.set_ylim(-0.6, len(names) - 0.4)  # room for the labels above the first point (the axis is inverted below)
    else:
        bars = ax.barh(rows, medians, xerr=errors, capsize=3, color="tab:blue", label="median, quartiles of the rounds")
        ax.bar_label(bars, labels=[cell(float(m)) for m in medians], padding=6)
    ax.set_yticks(rows, names)
    for (label, value), style in zip((lines or {}).items(), ("--", ":", "-."), strict=False):
        ax.axvline(value, color="black", linestyle=style, label=f"{label}: {cell(float(value))}")
    if markers:
        label, points = markers
        ax.scatter([points[n] for n in names], rows, marker="D", color="tab:orange", zorder=3, label=label)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_xscale("log" if log else "linear")
    ax.set_title(title, loc="left")
    fig.legend(loc="outside lower center", ncols=2)  # below the axes: it hides no bar, line or marker
    plt.show()


def stacked_bars(parts: dict[str, dict[str, float]], title: str, unit: str) -> None:
    """Show one horizontal bar per entry, split into its named parts (the same parts, in the same order, for every bar)."""
    names = list(parts)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(names)), layout="constrained")
    left = [0.0] * len(names)
    for part in parts[names[0]]:
        widths = [parts[n][part] for n in names]
        ax.barh(names, widths, left=left, label=part)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title, loc="left")
    fig.legend(loc="outside lower center", ncols=len(parts[names[0]]))  # below the axes: it hides no bar
    plt.show()
