"""Device maps with accelerate: plan on the meta device, check budgets with a clear error, and draw where layers land."""

from __future__ import annotations

import logging
from collections import defaultdict

import torch
from accelerate.utils import CustomDtype, compute_module_sizes, get_balanced_memory, infer_auto_device_map
from transformers import PreTrainedModel

from helpers.memory import GiB
from helpers.tables import one_of

__all__ = ["BudgetError", "check_budget", "device_totals", "draw_device_map", "draw_plan", "model_bytes", "plan",
           "to_bytes"]

PRECISIONS: dict[str, torch.dtype | CustomDtype] = {"bf16": torch.bfloat16, "int8": torch.int8,
                                                    "4-bit": CustomDtype.INT4}
STRATEGIES = ("sequential", "balanced", "balanced_low_0", "auto")  # "auto": balanced, as device_map="auto" is


class BudgetError(ValueError):
    """A max_memory budget that cannot hold the model; the message says by how much and what to change."""


def to_bytes(value: int | str) -> int:
    """Return a max_memory entry ("600MB", "2GiB" or bytes) in bytes."""
    if isinstance(value, int):
        return value
    units = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
             "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    text = value.strip().upper()
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    if not text.isdigit():
        raise ValueError(f"max_memory entry {value!r}: use bytes or a number with KB, MB, GB, TB, KiB, MiB, GiB or TiB")
    return int(text)


def model_bytes(model: PreTrainedModel, precision: str) -> int:
    """Return the bytes of a model's weights at a precision ("bf16", "int8", "4-bit"), as accelerate counts them."""
    return compute_module_sizes(model, dtype=PRECISIONS[one_of("precision", precision, PRECISIONS)])[""]


def check_budget(model: PreTrainedModel, max_memory: dict[int | str, int | str], precision: str) -> None:
    """Raise BudgetError when the devices in max_memory (disk counts as unlimited) cannot hold the weights."""
    if "disk" in max_memory:
        return
    need = model_bytes(model, precision)
    have = sum(to_bytes(v) for v in max_memory.values())
    if need > have:
        smaller = {p: model_bytes(model, p) / GiB for p in PRECISIONS if model_bytes(model, p) < need}
        hint = ", ".join(f"{p} needs {size:.1f} GiB" for p, size in smaller.items())
        budgets = ", ".join(f"{k}: {to_bytes(v) / GiB:.1f} GiB" for k, v in max_memory.items())
        raise BudgetError(f"the weights need {need / GiB:.1f} GiB at {precision} but max_memory gives {have / GiB:.1f} "
                          f"GiB ({budgets}). Raise a budget, add 'disk' (offload_folder=...) for the rest, or quantize"
                          + (f": {hint}." if hint else "."))


def plan(model: PreTrainedModel, max_memory: dict[int | str, int | str], precision: str = "bf16",
         strategy: str = "sequential") -> dict[str, int | str]:
    """Return accelerate's device map for imagined or real devices: "sequential", "balanced" ("auto") or "balanced_low_0"."""
    strategy = one_of("strategy", strategy, STRATEGIES)  # before the budget: a wrong name is no budget problem
    check_budget(model, max_memory, precision)
    dtype = PRECISIONS[one_of("precision", precision, PRECISIONS)]
    no_split = model._no_split_modules
    budget = {k: to_bytes(v) for k, v in max_memory.items()}
    # "Device 0 is not available" for imagined GPUs
    logging.getLogger("accelerate.utils.modeling").setLevel(logging.ERROR)
    if strategy != "sequential":
        budget = get_balanced_memory(model, budget, no_split, dtype=dtype, low_zero=strategy == "balanced_low_0")
    return infer_auto_device_map(model, max_memory=budget, no_split_module_classes=no_split, dtype=dtype)


def device_totals(model: PreTrainedModel, device_map: dict[str, int | str], precision: str = "bf16") -> dict:
    """Return the bytes of weights each device holds under a device map."""
    sizes = compute_module_sizes(model, dtype=PRECISIONS[one_of("precision", precision, PRECISIONS)])
    totals: dict[int | str, int] = defaultdict(int)
    for module, device in device_map.items():
        totals[device] += sizes[module]
    return dict(totals)


def draw_device_map(model: PreTrainedModel, device_map: dict[str, int | str], title: str,
                    precision: str = "bf16") -> None:
    """Show the model's modules, in order, as one bar coloured by the device each lands on."""
    import matplotlib.pyplot as plt

    sizes = compute_module_sizes(model, dtype=PRECISIONS[one_of("precision", precision, PRECISIONS)])
    devices = list(dict.fromkeys(device_map.values()))
    colours = {d: plt.cm.tab10(i) for i, d in enumerate(devices)}
    fig, ax = plt.subplots(figsize=(9, 1.6))
    left = 0.0
    for module, device in device_map.items():
        width = sizes[module] / GiB
        ax.barh(0, width, left=left, color=colours[device], edgecolor="white", linewidth=0.3)
        left += width
    totals = device_totals(model, device_map, precision)
    for device in devices:
        ax.barh(0, 0, color=colours[device], label=f"{device}: {totals[device] / GiB:.1f} GiB")
    ax.set(yticks=[], xlabel="GiB of weights, modules in order (embedding → layers → head)", title=title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.55), ncol=len(devices), frameon=False)
    fig.tight_layout()
    plt.show()


def draw_plan(model: PreTrainedModel, gpu0_gib: int, gpu1_gib: int, cpu_gib: int, precision: str,
              strategy: str) -> None:
    """Plan the model onto two imagined GPUs and the CPU at these budgets and draw the map, or say why it cannot fit."""
    budget = {0: f"{gpu0_gib}GiB", 1: f"{gpu1_gib}GiB", "cpu": f"{cpu_gib}GiB"}
    try:
        device_map = plan(model, budget, precision=precision, strategy=strategy)
    except BudgetError as err:
        print(f"BudgetError: {err}")
        return
    title = f"{precision}, {strategy}: GPU 0 {gpu0_gib} GiB, GPU 1 {gpu1_gib} GiB, CPU {cpu_gib} GiB"
    draw_device_map(model, device_map, title, precision)
