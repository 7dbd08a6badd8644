"""Run the whole course headless: execute every notebook, keep executed copies, print one results table."""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from helpers.results import RESULTS_ENV, load_results, plot_results, results_table

CELL_TIMEOUT_S = 1800


def execute_notebook(source: Path, target: Path, kernel: str = "python3") -> float:
    """Execute one notebook in its own folder, write the executed copy to target, return the seconds it took."""
    notebook = nbformat.read(source, as_version=4)
    client = NotebookClient(
        notebook, timeout=CELL_TIMEOUT_S, kernel_name=kernel, resources={"metadata": {"path": str(source.parent)}}
    )
    began = time.perf_counter()
    try:
        client.execute()
    finally:
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, target)
    return time.perf_counter() - began


def run_course(notebooks: Path, build: Path, pattern: str = "[0-9]*.ipynb") -> str:
    """Execute the notebooks matching pattern into build/notebooks and return the results table (also written to build)."""
    results = build / "results"
    results.mkdir(parents=True, exist_ok=True)
    os.environ[RESULTS_ENV] = str(results.resolve())
    durations = {}
    for source in sorted(notebooks.glob(pattern)):
        print(f"running {source.name} ...", flush=True)
        durations[source.name] = execute_notebook(source, build / "notebooks" / source.name)
        print(f"  done in {durations[source.name]:.0f} s", flush=True)
    lessons = load_results(results)
    table = results_table(lessons)
    timing = "\n".join(
        ["| notebook | run time (s) |", "|---|---|"] + [f"| {n} | {s:.0f} |" for n, s in durations.items()]
    )
    report = f"{table}\n\n{timing}\n"
    (build / "results.md").write_text(report)
    if lessons:
        plot_results(lessons, build / "results.png")
    return report
