"""Notebook runs under the tests: every exercise cell gets its solution, and checks and widgets run strict and static."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coursetools.exercises import SOLUTIONS, STRICT_ENV, exercise_ids
from helpers.widgets import STATIC_ENV

EXERCISE_TAG = "exercise"


def pytest_configure(config: pytest.Config) -> None:
    """Make kernels started by nbval reject wrong answers and draw widgets as static views."""
    os.environ[STRICT_ENV] = "1"
    os.environ[STATIC_ENV] = "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Replace the source of each notebook cell tagged "exercise" with its solution file."""
    root = Path(__file__).parent
    by_notebook: dict[str, list[pytest.Item]] = {}
    for item in items:
        if getattr(item, "cell", None) is not None:
            by_notebook.setdefault(str(item.fspath), []).append(item)
    for notebook_items in by_notebook.values():
        ids = exercise_ids([str(item.cell.get("source", "")) for item in notebook_items])
        for index, item in enumerate(notebook_items):
            if EXERCISE_TAG not in item.cell.get("metadata", {}).get("tags", []):
                continue
            if index not in ids:
                raise pytest.UsageError(f"{item.nodeid}: an exercise cell must start `name = ...` and a later cell call "
                                        'check("NN", name, ...)')
            solution = root / SOLUTIONS / f"{ids[index]}.py"
            if not solution.exists():
                raise pytest.UsageError(f"{item.nodeid} is an exercise without a solution file {solution}")
            item.cell.source = solution.read_text()
