"""Lesson 06's placement runs: launch helpers.parallel_decode per placement, stamp and pool its results, read stored ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from coursetools.settings import STAMP
from helpers import parallel_decode
from helpers.parallel_decode import PLACEMENTS, quartiles
from helpers.tables import one_of

ROOT = Path(__file__).resolve().parent.parent
STORED_RUN = "gpu-x2"  # results/<run>/ holds the two-GPU measurements that other machines show
RESULT_FILE = "parallel-06.json"


def placement_script() -> ModuleType:
    """Return the placement module, helpers.parallel_decode, so a lesson can show its code."""
    return parallel_decode


def launch(placement: str, model: str, out: Path, gpus: int = 2, options: tuple[str, ...] = ()) -> list[str]:
    """Return the command that runs the placement module: python -m for one process, torchrun -m for tensor parallel."""
    script = ["-m", parallel_decode.__name__, "--model", str(model), "--placement", placement, "--out", str(out), *options]
    if placement == "tensor-parallel":
        return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(gpus), *script]
    return [sys.executable, *script]


def run_placement(placement: str, model: str, out: Path, options: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run the placement module, show its last error lines if it fails, and return its results with the lesson's stamp."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(launch(placement, model, out, options=options), capture_output=True, text=True, env=env)
    if done.returncode != 0:
        lines = done.stderr.splitlines()  # torchrun's summary ends stderr: keep the processes' own errors too
        causes = [line for line in lines if "terminate" in line or "Error:" in line][:10]
        raise RuntimeError(f"{placement} failed (exit {done.returncode}):\n" + "\n".join(causes + lines[-15:]))
    return {**json.loads(out.read_text()), "stamp": os.environ.get(STAMP, "no lesson started: no stamp")}


def pooled_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge passes of one placement: timings pooled over every pass, the rest (tokens, memory) from the first pass."""
    merged = {**runs[0], "passes": len(runs)}
    for key in ("prefill_ms", "decode"):
        merged[key] = {size: quartiles([t for run in runs for t in run[key][size]["times"]]) for size in runs[0][key]}
    return merged


def run_placements(placements: list[str], model: str, folder: Path, options: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run each placement twice, in counterbalanced order (A B C, then C B A), and pool each one's two passes."""
    # each placement is its own process, so rounds cannot alternate: the reversed pass evens out session position
    runs: dict[str, list[dict[str, Any]]] = {one_of("placement", name, PLACEMENTS): [] for name in placements}
    for index, order in enumerate((placements, placements[::-1])):
        for name in order:
            runs[name].append(run_placement(name, model, folder / f"{name}-{index}.json", options))
    return {name: pooled_runs(passes) for name, passes in runs.items()}


def stored_results(run: str = STORED_RUN, root: Path = ROOT) -> dict[str, Any]:
    """Return the stored two-GPU results of lesson 06, with an error that says how to make them when missing."""
    path = root / "results" / run / RESULT_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run lesson 06 on a machine with 2 GPUs and publish it as {run}")
    return json.loads(path.read_text())
