"""Every module imports alone, and each helpers module lists its lesson API in `__all__` and the reference documents it."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
MODULES = sorted(
    f"{path.parent.name}.{path.stem}"
    for package in ("helpers", "coursetools")
    for path in (ROOT / package).glob("*.py")
    if path.stem != "__main__"
)


# One interpreter loads the third-party libraries (the slow part), then forks a child per course module: each child
# starts with no course module loaded, so a module that needs another imported first still fails alone.
ALONE = """
import importlib, os, sys, traceback
import torch, transformers
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
assert not [m for m in sys.modules if m.split(".")[0] in ("helpers", "coursetools")], "a course module was preloaded"
for module in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(module)
        except BaseException:
            os.write(write, f"{module}: {traceback.format_exc()[-500:]}\\n".encode())
            os._exit(1)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        print(pipe.read(), end="")
    os.waitpid(pid, 0)
"""


def alone_failures(modules: list[str]) -> str:
    """The import errors of each module imported in a fresh fork with no course module loaded."""
    done = subprocess.run([sys.executable, "-c", ALONE, *modules], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_every_module_imports_alone():
    failures = alone_failures(MODULES)
    assert not failures, failures


def test_a_module_that_needs_another_imported_first_fails_alone(tmp_path, monkeypatch):
    (tmp_path / "needs_first.py").write_text("import helpers\nhelpers.timing.spread\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    assert "needs_first" in alone_failures(["needs_first"])
    assert "needs_first" not in alone_failures(["helpers.timing"])


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
