"""Run the whole course headless: execute every notebook, keep executed copies and run times, print one results table."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from traitlets.config import Config

from coursetools.environment import environment_report
from coursetools.lesson import quiet_bitsandbytes_kernels_note
from coursetools.profiles import detect_profile_name
from coursetools.publish import merged_runtimes, plot_results, results_markdown
from coursetools.results import RESULTS_ENV, load_results
from helpers.widgets import STATIC_ENV

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PROGRESS_BAR = re.compile(r"\d+%\|")  # tqdm's text form: "desc:   0%|          | 0/272 [00:00<?, ?it/s]"
CELL_TIMEOUT_S = 3600  # one cell; lesson 08 compiles the 8B shape five times with tuning in one cell (estimated 20-27 min)


def kernel_transport(sockets: Path) -> Config:
    """Configure kernels to talk over local sockets in the folder `sockets` (IPC), where ZeroMQ has them (not Windows).

    Over TCP, ipykernel (kernelapp.py, init_sockets) logs "Kernel is running over TCP without encryption" to the
    terminal at every start: one line per notebook in `./course run`. The socket path is absolute because the kernel
    runs in the notebook's folder.
    """
    if os.name == "nt":
        return Config()
    return Config({"KernelManager": {"transport": "ipc", "ip": str(sockets / "kernel")}})


def is_progress_bar(output: dict) -> bool:
    """Tell whether an output is a library's live progress bar, which a stored notebook shows frozen at its first frame."""
    data = output.get("data", {})
    return WIDGET_VIEW in data and bool(PROGRESS_BAR.search("".join(data.get("text/plain", ""))))


def drop_progress_bars(notebook: nbformat.NotebookNode) -> None:
    """Remove live progress bars and saved widget state from notebook (tqdm.notebook ignores TQDM_DISABLE)."""
    notebook.metadata.pop("widgets", None)  # the state of bars drawn in an earlier live run, which no output shows
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [output for output in cell.outputs if not is_progress_bar(output)]


def execute_notebook(source: Path, target: Path, kernel: str = "python3") -> float:
    """Execute one notebook in its own folder, write the executed copy to target, return the seconds it took."""
    notebook = nbformat.read(source, as_version=4)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="course-kernel-") as sockets:
        client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name=kernel,
                                config=kernel_transport(Path(sockets)), resources={"metadata": {"path": str(source.parent)}})
        try:
            client.execute()
        finally:
            drop_progress_bars(notebook)
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, target)
    return time.perf_counter() - began


def run_course(notebooks: Path, build: Path, pattern: str = "[0-9]*.ipynb") -> str:
    """Execute the notebooks matching pattern into build/notebooks (widgets drawn static) and return the results table.

    The table goes to build/results.md, each notebook's run time to build/runtimes.json.
    """
    quiet_bitsandbytes_kernels_note()  # the stamp below imports bitsandbytes in this process
    results = build / "results"
    results.mkdir(parents=True, exist_ok=True)
    os.environ[RESULTS_ENV] = str(results.resolve())
    os.environ.setdefault(STATIC_ENV, "1")  # stored outputs must show in viewers that render no widgets
    os.environ.setdefault("TQDM_DISABLE", "1")  # tqdm's text bars on stderr; its notebook bars are dropped after the run
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # figures stored as images; Agg stores none
    stamp = environment_report(probe_hub=False).stamp(detect_profile_name())
    runtimes_path = build / "runtimes.json"
    # runs of a few notebooks at a time (--pattern) add up, each notebook with the stamp it ran under
    runtimes = merged_runtimes({"stamp": stamp, "seconds": {}}, runtimes_path)
    durations: dict[str, float] = runtimes["seconds"]
    for source in sorted(notebooks.glob(pattern)):
        print(f"running {source.name} ...", flush=True)
        durations[source.name] = execute_notebook(source, build / "notebooks" / source.name)
        runtimes["stamps"][source.name] = stamp
        print(f"  done in {durations[source.name]:.0f} s", flush=True)
        runtimes_path.write_text(json.dumps(runtimes, indent=2, sort_keys=True))
    lessons = load_results(results)
    table = results_markdown(lessons)
    timing = "\n".join(
        ["| notebook | run time (s) |", "|---|---|"] + [f"| {n} | {s:.0f} |" for n, s in durations.items()]
    )
    report = f"{table}\n\n{timing}\n"
    (build / "results.md").write_text(report)
    if lessons:
        plot_results(lessons, build / "results.png")
    return report
