"""Every COURSE_* environment variable the course reads, in one place (README's table lists the same)."""

from __future__ import annotations

from helpers.cache import CACHE_ENV as CACHE
from helpers.widgets import STATIC_ENV as STATIC

PROFILE = "COURSE_PROFILE"
STAMP = "COURSE_STAMP"
RESULTS_DIR = "COURSE_RESULTS_DIR"
EXERCISES_STRICT = "COURSE_EXERCISES_STRICT"
HOME = "COURSE_HOME"
BOOTSTRAP_FROM = "COURSE_BOOTSTRAP_FROM"
VENV = "COURSE_VENV"
PYTHON = "COURSE_PYTHON"
WHEELS = "COURSE_WHEELS"

SETTINGS = {
    PROFILE: "cpu, gpu or t4: the sizes lessons run at (default: detected from the machine)",
    CACHE: "converted and synthetic checkpoints (default ~/.cache/efficient-inference-course)",
    RESULTS_DIR: "where lessons record their results (default: the cache's results/ folder)",
    STATIC: "any value: widgets are drawn once as static views (the runner and the tests set it)",
    STAMP: "set by each lesson: its stamp, which the placement runs it starts record in their results",
    EXERCISES_STRICT: "any value: a wrong exercise answer raises an error (the tests set it)",
    HOME: "Colab set-up cell: where the course is cloned (default /content/efficient-inference-course)",
    BOOTSTRAP_FROM: "Colab set-up cell: a path or URL to clone from; set, it runs outside Colab too",
    VENV: "./course: the virtual environment it makes and uses (default .venv)",
    PYTHON: "./course: the Python 3.11+ that makes that environment (default python3)",
    WHEELS: "./course: install from this offline bundle alone (made by ./course bundle DIR), not from the index",
}
