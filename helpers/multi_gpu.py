"""Several GPUs: run the placement script, read its results (live or stored), tabulate, plot and explain them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from helpers import parallel_decode
from helpers.parallel_decode import quartiles
from helpers.tables import one_of, table
from helpers.timing import compare

__all__ = ["RESULT_FILE", "explain", "gpu_link", "placement_script", "placements_table", "plot_placements",
           "run_placements", "stored_results"]

ROOT = Path(__file__).resolve().parent.parent
STORED_RUN = "gpu-x2"  # results/<run>/ holds the two-GPU measurements that other machines show
RESULT_FILE = "parallel-06.json"
PLACEMENT_NAMES = {"one-gpu": "one GPU", "pipeline": "pipeline split (device_map)", "tensor-parallel": "tensor parallel"}
LINK_KINDS = {"NV": "NVLink", "PIX": "PCIe, one switch", "PXB": "PCIe, several switches", "PHB": "PCIe, through the CPU",
              "NODE": "PCIe, across a NUMA node", "SYS": "PCIe, across CPU sockets"}


def gpu_link(topology: str | None = None) -> str:
    """Return how GPU 0 and GPU 1 are connected, read from `nvidia-smi topo -m` (e.g. "NV18 (NVLink, 18 links)")."""
    if topology is None:
        if torch.cuda.device_count() < 2:
            return "one GPU or none: no link between GPUs"
        if shutil.which("nvidia-smi") is None:
            return "unknown (nvidia-smi not found)"
        topology = subprocess.run(["nvidia-smi", "topo", "-m"], capture_output=True, text=True, check=False).stdout
    topology = re.sub(r"\x1b\[[0-9;]*m", "", topology)  # nvidia-smi underlines the header with escape codes
    rows = [line.split() for line in topology.splitlines() if line.strip()]
    header = next((i for i, row in enumerate(rows) if row[:2] == ["GPU0", "GPU1"]), None)
    gpu0 = next((row for row in rows[(header or 0) + 1 :] if row[0] == "GPU0"), None)
    if header is None or gpu0 is None:
        return "unknown (nvidia-smi topo -m gave no GPU matrix)"
    entry = gpu0[2]  # the row reads: GPU0, X (itself), then its link to GPU1
    if entry.startswith("NV"):
        return f"{entry} (NVLink, {entry[2:]} links)"
    return f"{entry} ({LINK_KINDS.get(entry, 'see nvidia-smi topo -m')})"


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
    """Run the placement script, show its last error lines if it fails, and return its JSON results."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(launch(placement, model, out, options=options), capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{placement} failed (exit {done.returncode}):\n" + "\n".join(done.stderr.splitlines()[-15:]))
    return json.loads(out.read_text())


def pooled_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge passes of one placement: timings pooled over every pass, the rest (tokens, memory) from the first pass."""
    merged = {**runs[0], "passes": len(runs)}
    for key in ("prefill_ms", "decode"):
        merged[key] = {size: quartiles([t for run in runs for t in run[key][size]["times"]]) for size in runs[0][key]}
    return merged


def run_placements(placements: list[str], model: str, folder: Path, options: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run each placement twice, in counterbalanced order (A B C, then C B A), and pool each one's two passes."""
    # each placement is its own process, so rounds cannot alternate: the reversed pass evens out session position
    runs: dict[str, list[dict[str, Any]]] = {one_of("placement", name, PLACEMENT_NAMES): [] for name in placements}
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


def interval_text(summary: dict[str, float]) -> str:
    """Return a summary's median with its quartiles, e.g. '41.2 [40.8, 41.9]'."""
    return f"{summary['median']:.3g} [{summary['q1']:.3g}, {summary['q3']:.3g}]"


def gpus_used(result: dict[str, Any]) -> list[dict[str, float]]:
    """Return the memory entries of the GPUs that hold weights in a placement's result."""
    return [m for m in result["memory"] if m["allocated_gib"] > 0.01]


def ratio_interval(a: dict[str, float], b: dict[str, float]) -> tuple[float, float, float]:
    """Return a/b for two summaries (median, q1, q3): the median ratio and the widest ratio their quartiles allow."""
    return a["median"] / b["median"], a["q1"] / b["q3"], a["q3"] / b["q1"]


def placement_rows(placements: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Return headers and one row per placement: prefill per prompt length, decode per batch, weights and peak per GPU."""
    first = next(iter(placements.values()))
    lengths, batches = list(first["prefill_ms"]), list(first["decode"])
    headers = ["placement", *[f"prefill {n} ms" for n in lengths], *[f"decode b{b} tok/s/seq" for b in batches],
               "weights per GPU GiB", "peak per GPU GiB"]
    rows = []
    for name, result in placements.items():
        used = gpus_used(result)
        rows.append([
            PLACEMENT_NAMES[name],
            *[interval_text(result["prefill_ms"][n]) for n in lengths],
            *[interval_text(result["decode"][b]) for b in batches],
            " / ".join(f"{m['allocated_gib']:.1f}" for m in used),
            " / ".join(f"{m['peak_gib']:.1f}" for m in used),
        ])
    return headers, rows


def placements_table(placements: dict[str, dict[str, Any]]) -> str:
    """Return the placement comparison as aligned text."""
    return table(*placement_rows(placements))


def decode_bound(result: dict[str, Any], bandwidth: float) -> float:
    """Return the batch-1 decode bound of a placement: the busiest GPU must read its share of the weights per token."""
    shares = [m["allocated_gib"] * 2**30 for m in gpus_used(result)]
    per_token = max(shares) if result["placement"] == "tensor-parallel" else sum(shares)  # a pipeline's GPUs take turns
    return bandwidth / per_token


def prefill_lines(label: str, result: dict[str, Any], one: dict[str, Any], lengths: tuple[str, ...]) -> list[str]:
    """Return one verdict per prompt length on a placement's prefill against one GPU's, decided by their quartiles."""
    # a smaller time is faster, so the ratio is one GPU's time over the placement's
    return [f"{label} vs one GPU, prefill of {n} tokens: "
            + compare(ratio_interval(one["prefill_ms"][n], result["prefill_ms"][n])) for n in lengths]


def explain(placements: dict[str, dict[str, Any]], bandwidth: float, link: str) -> str:
    """Return the lesson's reading of the placement table, every direction decided by the measured intervals."""
    one, pipe, tp = (placements[k] for k in ("one-gpu", "pipeline", "tensor-parallel"))
    batch = next(iter(one["decode"]))
    lengths = list(one["prefill_ms"])
    lines = []
    for result in (one, pipe, tp):
        bound = decode_bound(result, bandwidth)
        rate = result["decode"][batch]["median"]
        lines.append(f"{PLACEMENT_NAMES[result['placement']]}: batch-{batch} decode {rate:.1f} tok/s = "
                     f"{100 * rate / bound:.0f}% of its bandwidth bound {bound:.0f} tok/s")
    pipeline = ratio_interval(pipe["decode"][batch], one["decode"][batch])
    why = {
        True: "; both read all the weights per token, one GPU after the other; the extra time (copies between the "
        "GPUs, or accelerate's hooks on every submodule) is not measured apart here",
        False: "; the GPUs take turns, so the second GPU adds memory, not speed",
    }
    lines.append("pipeline vs one GPU, decode: " + compare(pipeline) + ("" if pipeline[1] > 1 else why[pipeline[2] < 1]))
    lines += prefill_lines("pipeline", pipe, one, (lengths[0], lengths[-1]))
    lines.append("tensor parallel vs one GPU, decode: " + compare(ratio_interval(tp["decode"][batch], one["decode"][batch])))
    lines += prefill_lines("tensor parallel", tp, one, (lengths[0], lengths[-1]))
    reduce = tp["allreduce"]
    reduce_ms = reduce["per_token"] * reduce["decode"]["us"] / 1e3
    tp_step, one_step = 1e3 / tp["decode"][batch]["median"], 1e3 / one["decode"][batch]["median"]
    lines.append(f"a decode step takes {tp_step:.1f} ms tensor parallel vs {one_step:.1f} ms on one GPU; its "
                 f"{reduce['per_token']} all-reduces over {link} ({reduce['decode']['us']:.0f} us each for "
                 f"{reduce['decode']['bytes']} bytes) account for {reduce_ms:.1f} ms of it")
    if tp_step - one_step > reduce_ms:
        lines.append(f"the other {tp_step - one_step - reduce_ms:.1f} ms over one GPU is not the all-reduces; this run "
                     "does not measure where it goes (each process launches as many kernels per step as one GPU "
                     "does: a torch.profiler trace of a step would show whether the GPUs wait for the host)")
    return "\n".join(lines)


def plot_placements(placements: dict[str, dict[str, Any]], title: str) -> None:
    """Draw prefill time against prompt length and decode speed against batch, one line per placement."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    for name, result in placements.items():
        for ax, key in ((left, "prefill_ms"), (right, "decode")):  # prompt lengths, then batches
            ax.plot([int(n) for n in result[key]], [v["median"] for v in result[key].values()], "o-", label=PLACEMENT_NAMES[name])
    left.set(xscale="log", yscale="log", xlabel="prompt tokens", ylabel="prefill ms (lower is better)")
    right.set(xscale="log", xlabel="batch", ylabel="decode tok/s per sequence")
    left.legend(frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    plt.show()

