"""Checks of the committed notebooks themselves (nbval executes them separately, without their stored outputs)."""

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9]*.ipynb"))


def test_every_lesson_is_present():
    assert [p.name[:2] for p in NOTEBOOKS] == ["00", "01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_carry_a_stamp_and_no_errors(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert "start_lesson" in code[0].source, "the first code cell must print the stamp"
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    if outputs:  # executed and committed: it must say where it ran
        assert code[0].outputs and "| torch " in code[0].outputs[0]["text"]
        assert all(cell.execution_count for cell in code), "stored outputs must come from one full run"
