"""The Colab kit: badge and set-up cells stay current, and the set-up installs a course that runs, in a fresh venv."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from coursetools import badges

ROOT = Path(__file__).parent.parent


def test_every_notebook_has_a_current_badge_and_setup_cell():
    assert badges.main(["--check"]) == 0, "run: ./course badges"


def test_a_stale_badge_is_found_and_rewritten_keeping_the_lesson(tmp_path):
    path = tmp_path / "03_four_bit_weights.ipynb"
    shutil.copy(ROOT / "notebooks" / path.name, path)
    notebook = nbformat.read(path, as_version=4)
    notebook.cells[0].source = notebook.cells[0].source.replace("blob/v", "blob/main-v")
    lesson_cells = [c.source for c in notebook.cells[2:]]
    nbformat.write(notebook, path)
    assert not badges.is_current(path)
    badges.write(path)
    assert badges.is_current(path)
    assert [c.source for c in nbformat.read(path, as_version=4).cells[2:]] == lesson_cells


def test_setup_cell_does_nothing_outside_colab(monkeypatch):
    monkeypatch.delenv("COURSE_BOOTSTRAP_FROM", raising=False)
    cell = badges.generated_cells(ROOT / "notebooks" / "00_tour.ipynb")[1]
    namespace: dict = {}
    exec(cell.source, namespace)
    assert "bootstrap" not in namespace and "google.colab" not in sys.modules


def release_clone(tmp_path: Path) -> Path:
    """Return a git repository of the working tree, tagged like the release the set-up cell clones."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    source = tmp_path / "source"
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    _, tag = badges.release()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "release"], ["tag", tag]):
        subprocess.run(git + args, cwd=source, check=True)
    return source


def test_setup_cell_in_a_fresh_venv_installs_a_course_that_runs_lesson_00_and_bitsandbytes(tmp_path):
    source = release_clone(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COURSE_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(
        COURSE_BOOTSTRAP_FROM=str(source),
        COURSE_HOME=str(tmp_path / "home"),
        COURSE_PROFILE="cpu",
        COURSE_CACHE=str(tmp_path / "cache"),
        HF_HUB_OFFLINE="1",
        MPLBACKEND="Agg",
    )
    setup = badges.generated_cells(ROOT / "notebooks" / "03_four_bit_weights.ipynb")[1].source

    first = subprocess.run([python, "-c", setup], env=env, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "installed" in first.stdout and "No GPU in this runtime" in first.stdout

    build = tmp_path / "build"
    run = subprocess.run(
        [
            python,
            "-m",
            "coursetools",
            "run",
            "--notebooks",
            str(tmp_path / "home" / "notebooks"),
            "--build",
            str(build),
            "--pattern",
            "00_*.ipynb",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert sorted(json.loads((build / "runtimes.json").read_text())["seconds"]) == [
        "00_tour.ipynb",
    ]
    # lesson 03's bitsandbytes path, without running the whole lesson a second time (nbval runs it)
    nf4 = "from helpers.quantization import bitsandbytes_round_trip as r; import torch; w = torch.randn(64, 64); "
    nf4 += "print(float((r(w, 'nf4') - w).abs().mean()))"
    quantized = subprocess.run([python, "-c", nf4], env=env, cwd=tmp_path / "home", capture_output=True, text=True)
    assert quantized.returncode == 0 and 0 < float(quantized.stdout.split()[-1]) < 0.2, quantized.stderr[-2000:]
    for name in ("00_tour.ipynb",):
        executed = nbformat.read(build / "notebooks" / name, as_version=4)
        setup_output = "".join(o.get("text", "") for o in executed.cells[1].outputs)
        assert "course already installed" in setup_output, setup_output
        outputs = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.outputs]
        assert not [o for o in outputs if o.output_type == "error"]
