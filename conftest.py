"""Notebook runs under the tests: every exercise cell gets its solution, and checks and widgets run strict and static."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers.exercises import SOLUTIONS, STRICT_ENV
from helpers.widgets import STATIC_ENV

EXERCISE_TAG = "exercise"


def pytest_configure(config: pytest.Config) -> None:
    """Make kernels started by nbval reject wrong answers and draw widgets as static views."""
    os.environ[STRICT_ENV] = "1"
    os.environ[STATIC_ENV] = "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Replace the source of each notebook cell tagged "exercise" with its lesson's solution file."""
    root = Path(__file__).parent
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is None or EXERCISE_TAG not in cell.get("metadata", {}).get("tags", []):
            continue
        solution = root / SOLUTIONS / f"{Path(str(item.fspath)).name[:2]}.py"
        if not solution.exists():
            raise pytest.UsageError(f"{item.nodeid} is an exercise without a solution file {solution}")
        cell.source = solution.read_text()
