"""Headline results: each lesson records a few numbers (put the unit in the name) for the course's tables and plot."""

from __future__ import annotations

import json
import os
from pathlib import Path

from helpers.cache import cache_dir
from helpers.settings import RESULTS_DIR as RESULTS_ENV

__all__ = ["load_results", "plot_results", "record", "results_dir"]


def results_dir() -> Path:
    """Return where lessons write their results (COURSE_RESULTS_DIR, else the cache's results folder)."""
    folder = Path(os.environ.get(RESULTS_ENV) or cache_dir() / "results")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def record(lesson: str, stamp: str, **values: float | str) -> Path:
    """Add headline values (name=value; put the unit in the name) to a lesson's results file and return its path."""
    path = results_dir() / f"{lesson}.json"
    data = json.loads(path.read_text()) if path.exists() else {"lesson": lesson, "values": {}}
    data["stamp"] = stamp
    data["values"].update(values)
    path.write_text(json.dumps(data, indent=2, sort_keys=True))
    return path


def load_results(folder: Path | None = None) -> list[dict]:
    """Return every lesson's recorded results (files named by lesson number), ordered by lesson."""
    folder = folder or results_dir()
    return [json.loads(path.read_text()) for path in sorted(folder.glob("[0-9]*.json"))]


def plot_results(results: list[dict], path: Path) -> Path:
    """Draw each lesson's positive numeric results as log-scale bars (one panel a lesson) into path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = [
        (
            r["lesson"],
            {k: v for k, v in r["values"].items() if isinstance(v, int | float) and not isinstance(v, bool) and v > 0},
        )
        for r in results
    ]
    numeric = [(lesson, values) for lesson, values in numeric if values]
    fig, axes = plt.subplots(len(numeric), 1, figsize=(8, 1.2 + 0.4 * sum(len(v) for _, v in numeric)), squeeze=False)
    for ax, (lesson, values) in zip(axes[:, 0], numeric, strict=True):
        ax.barh(list(values), list(values.values()))
        ax.set_title(f"lesson {lesson}", loc="left")
        ax.set_xscale("log")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
