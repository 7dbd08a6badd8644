"""Every module imports alone, and each helpers module lists its lesson API in `__all__` and the reference documents it."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
MODULES = sorted(
    f"{path.parent.name}.{path.stem}"
    for package in ("helpers", "coursetools")
    for path in (ROOT / package).glob("*.py")
    if path.stem != "__main__"
)


def test_every_module_imports_alone():
    def alone(module: str) -> tuple[str, str]:
        done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, cwd=ROOT)
        return module, done.stderr[-500:] if done.returncode else ""

    with ThreadPoolExecutor(2) as pool:
        failures = {module: err for module, err in pool.map(alone, MODULES) if err}
    assert not failures, failures


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("helpers.") and not m.endswith("__init__")])
def test_each_helpers_module_lists_its_lesson_api_and_documents_it(module):
    import importlib

    imported = importlib.import_module(module)
    names = getattr(imported, "__all__", None)
    assert names is not None, f"{module} has no __all__"
    missing = [name for name in names if not hasattr(imported, name)]
    assert not missing, missing
    reference = (ROOT / "helpers" / "README.md").read_text()
    assert all(f"`{name}`" in reference for name in names), "run: ./course publish"
