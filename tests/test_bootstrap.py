"""The Colab set-up's pure parts: version floors, what gets installed next to a given torch, the clone-failure message."""

from pathlib import Path

import pytest

from colab import badges, bootstrap
from coursetools.compat import fits_torch, torchao_problem, version_tuple

ROOT = Path(__file__).parent.parent


def test_version_tuple_reads_release_numbers_and_refuses_what_is_no_version():
    assert version_tuple("2.11.0+cu128") == (2, 11, 0) and version_tuple("2.6.0rc1") == (2, 6, 0)
    assert version_tuple("2.9.1") < (2, 11) <= version_tuple("2.11.0") and version_tuple("2.10") < (2, 11)
    with pytest.raises(ValueError, match="not a version"):
        version_tuple("latest")


def test_library_floors_on_torch():
    assert fits_torch("torchao", "2.11.0+cu128") and not fits_torch("torchao", "2.10.0+cu126")
    assert fits_torch("bitsandbytes", "2.4.0") and not fits_torch("bitsandbytes", "2.3.1")
    assert fits_torch("transformers", "2.5.1") and not fits_torch("transformers", "2.4.1")
    assert fits_torch("gguf", "1.0.0")  # no floor


def test_torchao_problem_names_what_lesson_08_needs_and_what_is_here():
    assert torchao_problem("2.11.0+cpu", "0.18.0") is None
    old_torch = torchao_problem("2.9.0+cu126", None)
    assert "torch >= 2.11" in old_torch and "torch 2.9.0+cu126" in old_torch
    assert "not installed" in torchao_problem("2.11.0", None)
    assert "0.16.0 is too old" in torchao_problem("2.11.0", "0.16.0")
    assert torchao_problem(None, "0.18.0") == "torch is not installed"


def decided(torch: str | None, **present: str) -> tuple[dict[str, str], list[bootstrap.Step], list[str]]:
    """Return the pinned requirements of the plan for a runtime with this torch and these packages, its steps and lines."""
    steps, lines = bootstrap.plan(ROOT, {**present, **({"torch": torch} if torch else {})})
    wanted = dict(a.split("==") for step in steps for a in step.arguments if "==" in a)
    return wanted, steps, lines


def test_a_recent_torch_is_kept_and_every_course_library_pinned():
    pinned = bootstrap.pins(ROOT)
    wanted, steps, lines = decided("2.11.0+cu128", numpy="2.0.2", bitsandbytes="0.45.0")
    assert wanted["torch"] == "2.11.0+cu128" and lines[0] == "keeping this runtime's torch 2.11.0+cu128"
    for name in ("bitsandbytes", "torchao", "transformers", "accelerate", "onnxruntime", "optimum", "gguf"):
        assert wanted[name] == pinned[name]
    assert not set(wanted) & set(bootstrap.RUNTIME_OWNED) - {"torch"}
    assert f"bitsandbytes 0.45.0 by {pinned['bitsandbytes']}" in lines[-1] and "torchao" in lines[1]
    assert [step.arguments[:2] for step in steps] == [("--no-deps", "-e"), ("torch==2.11.0+cu128", f"transformers=={pinned['transformers']}"), ("--no-deps", "-r")]


def test_a_runtime_library_is_kept_when_present_and_installed_when_missing():
    _, steps, lines = decided("2.11.0+cu128", nbformat="5.10.0")
    libraries = steps[1].arguments
    assert "nbformat" not in libraries and "ipykernel" in libraries  # Colab's nbformat stays; a lacking kernel comes
    assert "ipykernel (any version pyproject allows)" in " ".join(lines) and "nbformat (" not in " ".join(lines)


def test_an_old_torch_is_kept_too_and_torchao_left_out():
    wanted, _, lines = decided("2.6.0+cpu")
    assert wanted["torch"] == "2.6.0+cpu" and "torchao" not in wanted and "bitsandbytes" in wanted
    assert lines[0] == "keeping this runtime's torch 2.6.0+cpu"
    assert "not installing, too new for torch 2.6.0+cpu: torchao" in lines[1] and "torch >= 2.11" in lines[1]
    older, _, lines = decided("2.3.1")
    assert "bitsandbytes" not in older and "expect lessons to fail" in lines[0]  # below pyproject.toml's torch>=2.6


def test_a_runtime_without_torch_gets_the_full_pin_set():
    wanted, steps, lines = decided(None)
    assert steps[0].arguments == ("-c", str(ROOT / "requirements" / "pins.txt"), "-e", str(ROOT)) and not wanted
    assert lines[0].startswith("no torch in this runtime")


def test_release_comes_from_pyproject_and_reaches_badge_and_setup_cell(tmp_path):
    repository, tag = bootstrap.course_release(ROOT)
    assert repository.startswith("https://github.com/") and tag.startswith("v")
    other = tmp_path / "pyproject.toml"
    other.write_text('[project]\nversion = "9.1"\n[project.urls]\nRepository = "https://github.com/x/y"\n')
    assert bootstrap.course_release(tmp_path) == ("https://github.com/x/y", "v9.1")
    badge, setup = badges.generated_cells(ROOT / "notebooks" / "00_tour.ipynb")
    where = repository.removeprefix("https://github.com/")
    assert f"github/{where}/blob/{tag}/notebooks/00_tour.ipynb" in badge.source
    assert f'"{repository}.git"' in setup.source and f'"--branch", "{tag}"' in setup.source
    assert "from colab.bootstrap import bootstrap" in setup.source


def test_clone_failure_says_what_to_do():
    message = bootstrap.clone_failure("https://github.com/x/y.git", "v0.2.0", "fatal: Remote branch v0.2.0 not found\n")
    assert message.startswith("could not clone the course at v0.2.0 from https://github.com/x/y.git:")
    assert "fatal: Remote branch v0.2.0 not found" in message
    assert "COURSE_BOOTSTRAP_FROM" in message and "COURSE_HOME" in message


def test_a_failed_clone_in_the_setup_cell_raises_that_message(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_BOOTSTRAP_FROM", str(tmp_path / "nothing here"))
    monkeypatch.setenv("COURSE_HOME", str(tmp_path / "home"))
    setup = badges.generated_cells(ROOT / "notebooks" / "00_tour.ipynb")[1].source
    with pytest.raises(RuntimeError) as failure:
        exec(setup, {})
    _, tag = bootstrap.course_release(ROOT)
    assert str(failure.value).startswith(f"could not clone the course at {tag} from {tmp_path / 'nothing here'}:")
    assert "COURSE_BOOTSTRAP_FROM to a path or URL" in str(failure.value) and "fatal:" in str(failure.value)
