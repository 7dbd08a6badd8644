"""./course run prints progress and results, not the log lines of a kernel's transport or of kernels it does not use."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import nbformat

from coursetools.lesson import KERNELS_NOTE, KERNELS_NOTE_LOGGER, not_kernels_note
from coursetools.runner import drop_progress_bars

ROOT = Path(__file__).resolve().parent.parent
TCP_NOTE = "Kernel is running over TCP without encryption"


def tiny_notebook(folder: Path) -> Path:
    """Write a two-cell notebook, 00_tiny.ipynb, into folder and return its path."""
    folder.mkdir(parents=True)
    cells = [nbformat.v4.new_code_cell('print("tiny ran")'), nbformat.v4.new_code_cell("import bitsandbytes")]
    path = folder / "00_tiny.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


def test_runner_output_has_no_transport_or_kernels_note(tmp_path):
    notebooks, build = tmp_path / "notebooks", tmp_path / "build"
    tiny_notebook(notebooks)
    env = {**os.environ, "COURSE_PROFILE": "cpu", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "coursetools", "run", "--notebooks", str(notebooks), "--build",
                           str(build)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "running 00_tiny.ipynb" in output
    assert TCP_NOTE not in output and KERNELS_NOTE not in output, output
    executed = nbformat.read(build / "notebooks" / "00_tiny.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "tiny ran\n"  # the kernel answered over its local sockets


def log_record(message: str) -> logging.LogRecord:
    """Return a warning record of bitsandbytes' CPU backend logger with this message."""
    return logging.LogRecord(KERNELS_NOTE_LOGGER, logging.WARNING, "ops.py", 252, message, None, None)


def test_only_the_kernels_note_is_dropped():
    assert not not_kernels_note(log_record(KERNELS_NOTE + ": %s. Please make sure you already `pip install kernels`"))
    assert not_kernels_note(log_record("any other bitsandbytes warning"))


def test_stored_notebook_keeps_outputs_but_library_progress_bars():
    bar = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "a", "version_major": 2, "version_minor": 0},
        "text/plain": "Converting and de-quantizing GGUF tensors...:   0%|          | 0/272 [00:00<?, ?it/s]"})
    slider = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "b", "version_major": 2, "version_minor": 0},
        "text/plain": "IntSlider(value=50)"})
    text = nbformat.v4.new_output("stream", name="stdout", text="batch 1: 50% of the bound\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[text, bar, slider])],
                                        metadata={"widgets": {"state": {"a": {}}}, "language_info": {"name": "python"}})
    drop_progress_bars(notebook)
    assert notebook.cells[0].outputs == [text, slider]
    assert list(notebook.metadata) == ["language_info"]


def test_every_course_command_drops_the_kernels_note(tmp_path):
    from coursetools.__main__ import main

    logger = logging.getLogger(KERNELS_NOTE_LOGGER)
    for installed in [f for f in logger.filters if f is not_kernels_note]:
        logger.removeFilter(installed)  # as in a fresh process: publish and doctor import bitsandbytes themselves
    assert main(["table", str(tmp_path)]) == 0
    assert not_kernels_note in logger.filters
