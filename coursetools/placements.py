"""Lesson 06's placement runs: launch helpers.parallel_decode per placement, pool and store the results, read them back,
and tabulate, plot and explain them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

from coursetools.settings import STAMP
from helpers import parallel_decode
from helpers.decoding import OVERHEAD_BOUND_SHARE
from helpers.limits import decode_bound_tokens_per_s
from helpers.parallel_decode import PLACEMENTS, quartiles
from helpers.tables import one_of, table
from helpers.timing import compare, verdict

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 900  # one placement process, its compiles included; a hung collective fails here, not at the cell limit
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
    try:
        done = subprocess.run(launch(placement, model, out, options=options), capture_output=True, text=True, env=env,
                              timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as late:
        raise RuntimeError(f"{placement} ran past {RUN_TIMEOUT_S} s and was stopped (a collective one process never "
                           f"joined would do this); its last output:\n{(late.stderr or b'')[-2000:]!r}") from None
    if done.returncode != 0:
        lines = done.stderr.splitlines()  # torchrun's summary ends stderr: keep the processes' own errors too
        causes = [line for line in lines if "terminate" in line or "Error:" in line][:10]
        raise RuntimeError(f"{placement} failed (exit {done.returncode}):\n" + "\n".join(causes + lines[-15:]))
    return {**json.loads(out.read_text()), "stamp": os.environ.get(STAMP, "no lesson started: no stamp")}


def pooled_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge passes of one placement: timings (the loop's too) pooled over every pass, the rest from the first pass."""
    merged = {**runs[0], "passes": len(runs)}
    for key in ("prefill_ms", "decode"):
        merged[key] = {size: quartiles([t for run in runs for t in run[key][size]["times"]]) for size in runs[0][key]}
    loops = [run.get("loop") for run in runs]
    if not all(loops):
        merged.pop("loop", None)  # a run made before the static-cache loop: none to pool
    elif all(loop["tok_s"] for loop in loops):  # every pass timed it: its rounds pooled, its events summed
        merged["loop"] = {**loops[0], "tok_s": quartiles([t for loop in loops for t in loop["tok_s"]["times"]]),
                          "events": dict(sum((Counter(loop["events"]) for loop in loops), Counter()))}
    else:  # a pass that did not compile: its error stands, and says whether another pass compiled
        failed = [i for i, loop in enumerate(loops) if loop["error"]]
        note = "" if len(failed) == len(loops) else f" in pass {failed[0] + 1} of {len(loops)}; another compiled"
        merged["loop"] = {**loops[failed[0]], "error": loops[failed[0]]["error"] + note}
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


PLACEMENT_NAMES = {"one-gpu": "one GPU", "pipeline": "pipeline split (device_map)", "tensor-parallel": "tensor parallel"}


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
    headers = ["placement", *[f"prefill {n} ms" for n in lengths], *[f"generate b{b} tok/s/seq" for b in batches],
               "static-cache loop b1 tok/s", "weights per GPU GiB", "peak per GPU GiB"]
    rows = []
    for name, result in placements.items():
        used = gpus_used(result)
        rows.append([PLACEMENT_NAMES[name], *[interval_text(result["prefill_ms"][n]) for n in lengths],
                     *[interval_text(result["decode"][b]) for b in batches], loop_text(result),
                     " / ".join(f"{m['allocated_gib']:.1f}" for m in used), " / ".join(f"{m['peak_gib']:.1f}" for m in used)])
    return headers, rows


def loop_text(result: dict[str, Any]) -> str:
    """Return a placement's static-cache loop speed with its quartiles, or why there is none."""
    loop = result.get("loop")
    if not loop:
        return "not in this run"
    if loop["error"]:
        return "did not compile whole"
    return interval_text(loop["tok_s"]) + ("" if loop["compile_mode"] != "none" else " (eager)")


def loop_lines(placements: dict[str, dict[str, Any]], bandwidth: float, link: str) -> list[str]:
    """Return the static-cache loop's reading: each placement's share of its bound or its error, and one eager step."""
    loops = {name: result.get("loop") for name, result in placements.items()}
    if not all(loops.values()):
        return ["static-cache loop: not in this run (it predates it), so every decode verdict above is eager "
                "`generate`'s, overhead-bound where its share of the bound is below a fifth"]
    lines = []
    for name, loop in loops.items():
        label, step = f"{PLACEMENT_NAMES[name]}, static-cache loop", loop["eager_step"]
        lines.append(f"{label}, one eager step (profiled): {step['wall_ms']:.1f} ms, {step['busy_ms']:.1f} ms of it in "
                     f"{step['busy_what']} ({100 * step['busy_ms'] / step['wall_ms']:.0f}%)")
        if loop["error"]:
            lines.append(f"{label}, compiled ({loop['compile_mode']}): did not compile whole: {loop['error']}")
            continue
        rate, bound, warm, timed = loop["tok_s"]["median"], decode_bound(placements[name], bandwidth), loop["warmup"], loop["events"]
        lines.append(f"{label}, compiled ({loop['compile_mode']}): {rate:.1f} tok/s = {percent(rate / bound)} of its "
                     f"bandwidth bound {bound:.0f} tok/s; warm-up {loop['warmup_s']:.0f} s: {warm['graphs compiled']} "
                     f"graphs compiled, {warm['CUDA graphs recorded']} CUDA graphs recorded, "
                     f"{warm['CUDA graphs skipped']} skipped; timed rounds: {timed['graphs compiled']} recompiles, "
                     f"{timed['CUDA graphs recorded']} re-recordings")
    one = loops["one-gpu"]
    for name in ("pipeline", "tensor-parallel"):
        if not (one["error"] or loops[name]["error"]):
            lines.append(f"{PLACEMENT_NAMES[name]} vs one GPU, static-cache loop: "
                         + compare(ratio_interval(loops[name]["tok_s"], one["tok_s"])))
    tp, reduce = loops["tensor-parallel"], placements["tensor-parallel"]["allreduce"]
    if not (one["error"] or tp["error"]):
        tp_step, one_step = 1e3 / tp["tok_s"]["median"], 1e3 / one["tok_s"]["median"]
        lines.append(f"a loop step takes {tp_step:.2f} ms tensor parallel vs {one_step:.2f} ms on one GPU; its "
                     f"{reduce['per_token']} all-reduces over {link}, timed one by one outside the loop, would take "
                     f"{reduce['per_token'] * reduce['decode']['us'] / 1e3:.2f} ms")
    return lines


def loop_problem(loop: dict[str, Any]) -> str | None:
    """Return why a placement's loop did not run as lesson 07's does (compiled, graphs recorded once), or None."""
    if loop["error"]:
        return f"the loop did not compile whole: {loop['error']}"
    warm, timed = loop["warmup"], loop["events"]
    if loop["compile_mode"] == "reduce-overhead" and warm["CUDA graphs recorded"] < 1:
        return f"no CUDA graph recorded in the warm-up ({warm['CUDA graphs skipped']} skipped): the loop ran without them"
    if timed["graphs compiled"] or timed["CUDA graphs recorded"]:
        return (f"{timed['graphs compiled']} recompiles and {timed['CUDA graphs recorded']} re-recordings in the timed "
                "rounds: they timed compiling, not decoding")
    return None


def placements_table(placements: dict[str, dict[str, Any]]) -> str:
    """Return the placement comparison as aligned text."""
    return table(*placement_rows(placements))


def bound_bytes(result: dict[str, Any]) -> tuple[list[float], str]:
    """Return the bytes per token each GPU's bound counts and which bytes they are (read, or held where none recorded)."""
    if result.get("read_bytes"):  # an untied input embedding is not read
        return result["read_bytes"], "the weight bytes a step reads"
    return ([m["allocated_gib"] * 2**30 for m in gpus_used(result)],
            "the memory each GPU holds after loading, the input embedding included (the run recorded no bytes read)")


def decode_bound(result: dict[str, Any], bandwidth: float) -> float:
    """Return the batch-1 decode bound of a placement: the busiest GPU must read its share of the weights per token."""
    shares = bound_bytes(result)[0]
    # tensor parallel: the busier GPU decides; a pipeline's GPUs take turns, so their shares add up
    return decode_bound_tokens_per_s(max(shares) if result["placement"] == "tensor-parallel" else sum(shares), bandwidth)


def prefill_lines(label: str, result: dict[str, Any], one: dict[str, Any], lengths: tuple[str, ...]) -> list[str]:
    """Return one verdict per prompt length on a placement's prefill against one GPU's, decided by their quartiles."""
    # a smaller time is faster, so the ratio is one GPU's time over the placement's
    return [f"{label} vs one GPU, prefill of {n} tokens: "
            + compare(ratio_interval(one["prefill_ms"][n], result["prefill_ms"][n])) for n in lengths]


def percent(share: float) -> str:
    """Return a share as a percentage: whole numbers from 10%, two significant digits below."""
    return f"{100 * share:.0f}%" if share >= 0.1 else f"{100 * share:.2g}%"


def decode_reading(shares: list[float], near_bound: str = "") -> str:
    """Return what a decode difference can be put down to: no mechanism where a share is below a fifth of its bound."""
    said = " and ".join(percent(share) for share in shares) + " of their bandwidth bounds"
    if min(shares) < OVERHEAD_BOUND_SHARE:
        return (f"{said}: overhead-bound (below {percent(OVERHEAD_BOUND_SHARE)}), reading the weights is a small part "
                "of a step, so this run cannot attribute the difference to any mechanism")
    return f"{said}, at least {percent(OVERHEAD_BOUND_SHARE)}: {near_bound}" if near_bound else said


def baseline_reading(share: float) -> str:
    """Return how a factor against a baseline decoding at this share of its bandwidth bound reads."""
    said = f"{percent(share)} of its bandwidth bound"
    if share < OVERHEAD_BOUND_SHARE:
        return (f"{said}: overhead-bound (below {percent(OVERHEAD_BOUND_SHARE)}), so a factor against it is against "
                "that speed, not against decoding at the bandwidth limit")
    return said


def share_text(share: float) -> str:
    """Return a decode speed's share of its bandwidth bound for a table cell, marked overhead-bound below a fifth."""
    return percent(share) + (", overhead-bound" if share < OVERHEAD_BOUND_SHARE else "")


def checked_on(measured_here: bool, stamp: str) -> str:
    """Return what a check ran on: this run's measurement, or the stored run named by its machine and date."""
    if measured_here:
        return "this run's measurement"
    parts = stamp.split(" | ")
    named = f"of {parts[0]} on {parts[-1]}" if len(parts) > 1 else f"'{stamp}'"
    return f"the stored two-GPU run {named}, NOT measured on this machine"


def explain(placements: dict[str, dict[str, Any]], bandwidth: float, link: str) -> str:
    """Return the lesson's reading of the placement table, every direction decided by the measured intervals."""
    one, pipe, tp = (placements[k] for k in ("one-gpu", "pipeline", "tensor-parallel"))
    batch = next(iter(one["decode"]))
    lengths = list(one["prefill_ms"])
    counted = " / ".join(dict.fromkeys(bound_bytes(result)[1] for result in (one, pipe, tp)))
    lines = [f"each bandwidth bound: {bandwidth / 1e12:.2f} TB/s over {counted}; tensor parallel counts the busier "
             "GPU's bytes, a pipeline all its GPUs' together"]
    shares = {}
    for result in (one, pipe, tp):
        bound = decode_bound(result, bandwidth)
        rate = result["decode"][batch]["median"]
        shares[result["placement"]] = rate / bound
        lines.append(f"{PLACEMENT_NAMES[result['placement']]}: batch-{batch} decode with generate {rate:.1f} tok/s = "
                     f"{percent(rate / bound)} of its bandwidth bound {bound:.0f} tok/s")
    pipeline = ratio_interval(pipe["decode"][batch], one["decode"][batch])
    near_bound = {"slower": "both read all the weights per token, one GPU after the other, so the extra time is work "
                            "besides reading them (the copies between the GPUs, or accelerate's hooks on every "
                            "submodule, could be it; this run does not measure them apart)",
                  "tie": "the GPUs take turns, so the second GPU adds memory, not speed", "faster": ""}[verdict(pipeline)]
    lines.append("pipeline vs one GPU, decode with generate: " + compare(pipeline) + "; "
                 + decode_reading([shares["pipeline"], shares["one-gpu"]], near_bound))
    lines += prefill_lines("pipeline", pipe, one, (lengths[0], lengths[-1]))
    lines.append("tensor parallel vs one GPU, decode with generate: "
                 + compare(ratio_interval(tp["decode"][batch], one["decode"][batch])) + "; "
                 + decode_reading([shares["tensor-parallel"], shares["one-gpu"]]))
    lines += prefill_lines("tensor parallel", tp, one, (lengths[0], lengths[-1]))
    lines += loop_lines(placements, bandwidth, link)
    reduce = tp["allreduce"]
    reduce_ms = reduce["per_token"] * reduce["decode"]["us"] / 1e3
    tp_step, one_step = 1e3 / tp["decode"][batch]["median"], 1e3 / one["decode"][batch]["median"]
    beyond = (f"each GPU reads its share of the weights; the other {tp_step - one_step - reduce_ms:.1f} ms over one "
              "GPU's step, beyond the all-reduces' time, is not measured apart here (a torch.profiler trace of a step "
              "would show where it goes)"
              if tp_step - one_step > reduce_ms else "")
    lines.append(f"a generate decode step takes {tp_step:.1f} ms tensor parallel vs {one_step:.1f} ms on one GPU; its "
                 f"{reduce['per_token']} all-reduces over {link}, timed one by one outside a step "
                 f"({reduce['decode']['us']:.0f} us each for {reduce['decode']['bytes']} bytes), would take "
                 f"{reduce_ms:.1f} ms; " + decode_reading([shares["tensor-parallel"], shares["one-gpu"]], beyond))
    return "\n".join(lines)


def plot_placements(placements: dict[str, dict[str, Any]], title: str) -> None:
    """Draw prefill time against prompt length and decode speed against batch, one line per placement (x: the loop)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogFormatter, NullLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    left.set(xscale="log", yscale="log", xlabel="prompt tokens", ylabel="prefill ms (lower is better)")
    right.set(xscale="log", xlabel="batch", ylabel="decode tok/s per sequence")
    handles, loops = [], False
    for name, result in placements.items():
        for ax, key in ((left, "prefill_ms"), (right, "decode")):  # prompt lengths, then batches
            line, = ax.plot([int(n) for n in result[key]], [v["median"] for v in result[key].values()], "o-",
                            label=PLACEMENT_NAMES[name])
            ax.set_xticks([int(n) for n in result[key]], labels=list(result[key]))  # the measured sizes, as printed
        handles.append(line)
        if (result.get("loop") or {}).get("tok_s"):  # the static-cache loop at batch 1, in the same colour
            right.plot([1], [result["loop"]["tok_s"]["median"]], "x", color=line.get_color(), markersize=9)
            loops = True
    if loops:
        handles.append(Line2D([], [], marker="x", color="gray", linestyle="none", markersize=9,
                              label="static-cache loop, batch 1 (right)"))
    for ax in (left, right):
        ax.xaxis.set_minor_locator(NullLocator())  # only the measured sizes are ticked
        ax.grid(alpha=0.3)
    left.yaxis.set_major_formatter(LogFormatter())  # 200, not 2e+02
    left.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    fig.suptitle(title, fontsize=9)
    plt.show()
