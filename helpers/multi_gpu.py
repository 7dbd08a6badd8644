"""Several GPUs: the placement runs' results (pipeline split, tensor parallel, one GPU) tabulated, plotted and explained."""

from __future__ import annotations

from typing import Any

from helpers.tables import table
from helpers.timing import compare

__all__ = ["explain", "placements_table", "plot_placements"]

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
    headers = ["placement", *[f"prefill {n} ms" for n in lengths], *[f"decode b{b} tok/s/seq" for b in batches],
               "weights per GPU GiB", "peak per GPU GiB"]
    rows = []
    for name, result in placements.items():
        used = gpus_used(result)
        rows.append([PLACEMENT_NAMES[name], *[interval_text(result["prefill_ms"][n]) for n in lengths],
                     *[interval_text(result["decode"][b]) for b in batches],
                     " / ".join(f"{m['allocated_gib']:.1f}" for m in used), " / ".join(f"{m['peak_gib']:.1f}" for m in used)])
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
    why = {True: "; both read all the weights per token, one GPU after the other; the extra time (copies between the "
                 "GPUs, or accelerate's hooks on every submodule) is not measured apart here",
           False: "; the GPUs take turns, so the second GPU adds memory, not speed"}
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

