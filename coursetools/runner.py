"""Run the whole course headless: execute every notebook, keep executed copies and run times, print one results table."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from traitlets.config import Config

from coursetools.environment import environment_report
from coursetools.lesson import quiet_bitsandbytes_kernels_note
from coursetools.profiles import detect_profile_name
from coursetools.publish import plot_results, results_markdown
from coursetools.results import RESULTS_ENV, load_results
from helpers.widgets import STATIC_ENV

CELL_TIMEOUT_S = 1800


def kernel_transport(sockets: Path) -> Config:
    """Configure kernels to talk over local sockets in the folder `sockets` (IPC), where ZeroMQ has them (not Windows).

    Over TCP, ipykernel (kernelapp.py, init_sockets) logs "Kernel is running over TCP without encryption" to the
    terminal at every start: one line per notebook in `./course run`. The socket path is absolute because the kernel
    runs in the notebook's folder.
    """
    if os.name == "nt":
        return Config()
    return Config({"KernelManager": {"transport": "ipc", "ip": str(sockets / "kernel")}})


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
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # figures stored as images; Agg stores none
    stamp = environment_report(probe_hub=False).stamp(detect_profile_name())
    runtimes_path = build / "runtimes.json"
    previous = json.loads(runtimes_path.read_text()) if runtimes_path.exists() else {}
    # runs of a few notebooks at a time (--pattern) add up while machine, versions and profile stay the same
    same_setup = previous.get("stamp", "").rsplit(" | ", 1)[0] == stamp.rsplit(" | ", 1)[0]
    durations: dict[str, float] = previous.get("seconds", {}) if same_setup else {}
    for source in sorted(notebooks.glob(pattern)):
        print(f"running {source.name} ...", flush=True)
        durations[source.name] = execute_notebook(source, build / "notebooks" / source.name)
        print(f"  done in {durations[source.name]:.0f} s", flush=True)
        runtimes_path.write_text(json.dumps({"stamp": stamp, "seconds": durations}, indent=2, sort_keys=True))
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
