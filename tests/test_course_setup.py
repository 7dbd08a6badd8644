"""./course makes its venv only with a Python it can use, says what to install otherwise, and repairs a half-made venv.

Each test runs the script against a fake interpreter (COURSE_PYTHON) and a venv in a temporary folder: no real installs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# a Python 3.12 that succeeds at everything: "-m venv DIR" makes DIR a venv whose python is this script again
WORKING_PYTHON = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/calls.log"
case "$1 $2" in
    "-m venv") mkdir -p "$3/bin" && touch "$3/pyvenv.cfg" && cp "$0" "$3/bin/python" ;;
    "-c import sys"*) echo 3.12 ;;
esac
"""


def fake(path: Path, script: str) -> Path:
    """Write an executable script at path and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    path.chmod(0o755)
    return path


def course(tmp_path: Path, python: Path) -> subprocess.CompletedProcess:
    """Run ./course doctor with python as COURSE_PYTHON and tmp_path/venv as its venv."""
    env = {**os.environ, "COURSE_PYTHON": str(python), "COURSE_VENV": str(tmp_path / "venv")}
    env.pop("COURSE_WHEELS", None)
    return subprocess.run([str(ROOT / "course"), "doctor"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_an_old_python_is_refused_with_what_to_do(tmp_path):
    done = course(tmp_path, fake(tmp_path / "bin" / "python3", "#!/bin/sh\necho 3.9\n"))
    assert done.returncode == 1
    assert "needs Python 3.11 or later" in done.stderr and "is 3.9" in done.stderr
    assert "COURSE_PYTHON" in done.stderr
    assert not (tmp_path / "venv").exists()


def test_a_python_without_ensurepip_is_refused_with_the_package_to_install(tmp_path):
    # a real Python whose ensurepip is missing, as on Debian and Ubuntu without python3-venv
    fake(tmp_path / "shadow" / "ensurepip" / "__init__.py", 'raise ImportError("No module named ensurepip")\n')
    python = fake(tmp_path / "bin" / "python3", f'#!/bin/sh\nPYTHONPATH="{tmp_path / "shadow"}" exec "{sys.executable}" "$@"\n')
    done = course(tmp_path, python)
    assert done.returncode == 1
    assert "cannot make a virtual environment with pip" in done.stderr
    assert "apt install python3-venv" in done.stderr
    assert not (tmp_path / "venv").exists()


def test_a_half_made_venv_is_removed_and_made_again(tmp_path):
    fake(tmp_path / "venv" / "bin" / "python", "#!/bin/sh\necho 'No module named pip' >&2\nexit 1\n")
    (tmp_path / "venv" / "pyvenv.cfg").touch()
    done = course(tmp_path, fake(tmp_path / "bin" / "python3", WORKING_PYTHON))
    assert done.returncode == 0, done.stderr
    assert "half-made (no working pip inside): removing it and making it again" in done.stdout
    assert "-m venv" in (tmp_path / "bin" / "calls.log").read_text()
    calls = (tmp_path / "venv" / "bin" / "calls.log").read_text()
    assert "-m pip install" in calls and "-m coursetools doctor" in calls
    assert (tmp_path / "venv" / ".course-installed").exists()


def test_a_folder_that_is_no_venv_is_left_alone(tmp_path):
    fake(tmp_path / "venv" / "notes.txt", "mine\n")
    done = course(tmp_path, fake(tmp_path / "bin" / "python3", WORKING_PYTHON))
    assert done.returncode == 1
    assert "is no virtual environment" in done.stderr
    assert (tmp_path / "venv" / "notes.txt").read_text() == "mine\n"


def test_the_script_asks_for_the_python_pyproject_requires():
    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert re.search(r"^MIN_PYTHON=(\S+)", (ROOT / "course").read_text(), re.MULTILINE).group(1) == required.lstrip(">=")
