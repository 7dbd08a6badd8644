"""Checks of the committed notebooks themselves (nbval executes them separately, without their stored outputs)."""

import re
from pathlib import Path

import jupytext
import nbformat
import pytest

from colab.badges import KERNELSPEC
from colab.bootstrap import pins
from coursetools.compat import STAMPED, stamped_versions, unpinned
from coursetools.exercises import exercise_ids
from coursetools.syllabus import SYLLABUS

ROOT = Path(__file__).parent.parent
NOTEBOOKS = [ROOT / "notebooks" / f"{record.stem}.ipynb" for record in SYLLABUS]


def test_every_lesson_in_the_syllabus_has_its_notebook_source_and_solution_and_nothing_else_is_a_lesson():
    assert sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")) == sorted(NOTEBOOKS)
    for record in SYLLABUS:
        assert (ROOT / "notebooks" / f"{record.stem}.py").exists(), f"{record.stem}: no paired .py source"
        assert (ROOT / "workshop" / "solutions" / f"{record.id}.py").exists(), f"{record.stem}: no solution"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_and_its_plain_text_source_are_in_sync(path):
    notebook = nbformat.read(path, as_version=4)
    source = jupytext.read(path.with_suffix(".py"))
    shown = [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in notebook.cells]
    edited = [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in source.cells]
    assert shown == edited, (
        f"{path.name} and {path.with_suffix('.py').name} differ: after editing the .py, run "
        f"`.venv/bin/jupytext --update --to ipynb {path.with_suffix('.py').relative_to(ROOT)}` (keeps outputs)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_carry_a_stamp_and_no_errors(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    setup, lesson = code[0], code[1]
    assert "colab-setup" in setup.metadata.get("tags", []), "the first code cell must be the Colab set-up cell"
    assert "start_lesson" in lesson.source, "the first lesson cell must print the stamp"
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    if outputs:  # executed and committed: its first output must say where it ran
        assert not setup.outputs, "outside Colab the set-up cell prints nothing"
        assert lesson.outputs and "| torch " in lesson.outputs[0]["text"]
        assert all(cell.execution_count for cell in code), "stored outputs must come from one full run"


def stored_versions(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """Return the library versions a notebook's stored outputs name: its stamp's, and lesson 00's machine report's."""
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    return stamped_versions("\n".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_ran_on_the_pinned_versions(path):
    notebook = nbformat.read(path, as_version=4)
    if not any(cell.get("outputs") for cell in notebook.cells):
        return  # not executed: nothing stored to disagree with the pins
    found = stored_versions(notebook)
    assert {"torch", "transformers", "bitsandbytes"} <= {name for name, _ in found}, f"{path.name}: no full stamp"
    assert unpinned(found, pins(ROOT)) == [], (
        f"{path.name}: its stored outputs ran on other versions than requirements/pins.txt: pin the versions of the "
        "stored run, or run the lessons again on the pinned ones (README: Refreshing the stored runs)"
    )


def test_the_stored_outputs_name_every_library_the_pins_must_share():
    named = {name for path in NOTEBOOKS for name, _ in stored_versions(nbformat.read(path, as_version=4))}
    # torchao joined the stamp after the stored run: its version is checked from the next run on
    assert set(STAMPED) - {"torchao"} <= named, named


def test_the_readme_names_the_pinned_versions():
    versions = (ROOT / "README.md").read_text().split("### One set of versions")[1].split("###")[0]
    assert [name for name in STAMPED if f"{name} {pins(ROOT)[name]}" not in versions] == []


def test_a_stored_version_other_than_the_pin_is_caught():
    pinned = {"torch": "2.11.0", "transformers": "5.17.0", "accelerate": "1.15.0", "bitsandbytes": "0.50.2", "torchao": "0.18.0"}
    stamp = ("Lesson 01 | NVIDIA H200 (sm 9.0) | 140 GiB | torch 2.11.0+cu130 | transformers 5.23.0 | bitsandbytes 0.50.2 | "
             "torchao 0.18.0 | profile gpu | 2026-11-26\n")
    report = "bitsandbytes         works\ntorch                2.13.0+cpu\naccelerate           1.15.0\n"
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("", outputs=[nbformat.v4.new_output("stream", text=stamp + report)])]
    assert unpinned(stored_versions(notebook), pinned) == [
        "torch 2.13.0+cpu (pinned 2.11.0)", "transformers 5.23.0 (pinned 5.17.0)"]
    assert unpinned(stamped_versions(stamp.replace("5.23.0", "5.17.0")), pinned) == []
    assert unpinned([("torchao", "0.17.0")], pinned) == ["torchao 0.17.0 (pinned 0.18.0)"]


EXERCISE_KINDS = ("", "-call", "-predict")  # the lesson's first exercise, write-the-call, predict-then-measure


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_lesson_has_its_exercises_each_with_a_later_check_and_a_solution(path):
    cells = nbformat.read(path, as_version=4).cells
    tagged = [i for i, cell in enumerate(cells) if "exercise" in cell.metadata.get("tags", [])]
    ids = exercise_ids([cell.source for cell in cells])
    assert set(tagged) <= set(ids), "every exercise cell starts `name = ...` and a later cell checks that name"
    assert sorted(ids[i] for i in tagged) == sorted(path.name[:2] + kind for kind in EXERCISE_KINDS)
    for index in tagged:
        assert cells[index].source.split("=")[1].strip().startswith("..."), "the learner's cell starts unanswered"
        assert (ROOT / "workshop" / "solutions" / f"{ids[index]}.py").exists()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_names_the_python3_kernel(path):
    assert nbformat.read(path, as_version=4).metadata.get("kernelspec") == KERNELSPEC


def load_hints(path: Path) -> dict[str, Path]:
    """Return each `%load` path the notebook's Markdown cells name, by exercise id, resolved from the notebook's folder."""
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"]
    found = re.findall(r"`%load (\.\./workshop/solutions/([0-9]{2}(?:-call|-predict)?)\.py)`", "\n".join(cells))
    return {exercise: (path.parent / relative).resolve() for relative, exercise in found}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_exercise_says_how_to_load_its_solution_from_the_notebooks_folder(path):
    hints = load_hints(path)
    assert sorted(hints) == sorted(path.name[:2] + kind for kind in EXERCISE_KINDS)
    assert all(solution.is_file() for solution in hints.values())


def test_the_load_hint_check_finds_a_missing_hint_and_a_wrong_folder(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("`%load ../workshop/solutions/00.py`")])
    nbformat.write(notebook, tmp_path / "00_x.ipynb")
    hints = load_hints(tmp_path / "00_x.ipynb")
    assert sorted(hints) == ["00"] != sorted("00" + kind for kind in EXERCISE_KINDS)
    assert not hints["00"].is_file()  # from tmp_path, ../workshop is no course folder
