"""Every COURSE_* environment variable the course reads, in one place (README's table lists the same)."""

from __future__ import annotations

import os

__all__ = ["SETTINGS", "setting"]

PROFILE = "COURSE_PROFILE"
CACHE = "COURSE_CACHE"
RESULTS_DIR = "COURSE_RESULTS_DIR"
STATIC = "COURSE_STATIC"
EXERCISES_STRICT = "COURSE_EXERCISES_STRICT"
HOME = "COURSE_HOME"
BOOTSTRAP_FROM = "COURSE_BOOTSTRAP_FROM"
VENV = "COURSE_VENV"
WHEELS = "COURSE_WHEELS"

SETTINGS = {
    PROFILE: "cpu, gpu or t4: the sizes lessons run at (default: detected from the machine)",
    CACHE: "converted and synthetic checkpoints (default ~/.cache/efficient-inference-course)",
    RESULTS_DIR: "where lessons record their results (default: the cache's results/ folder)",
    STATIC: "any value: widgets are drawn once as static views (the runner and the tests set it)",
    EXERCISES_STRICT: "any value: a wrong exercise answer raises an error (the tests set it)",
    HOME: "Colab set-up cell: where the course is cloned (default /content/efficient-inference-course)",
    BOOTSTRAP_FROM: "Colab set-up cell: a path or URL to clone from; set, it runs outside Colab too",
    VENV: "./course: the virtual environment it makes and uses (default .venv)",
    WHEELS: "./course: install from this offline bundle alone (made by ./course bundle DIR), not from the index",
}


def setting(name: str) -> str | None:
    """Return a COURSE_* variable's value, None when unset or empty."""
    if name not in SETTINGS:
        raise KeyError(f"{name} is not a course setting; they are {sorted(SETTINGS)}")
    return os.environ.get(name) or None
