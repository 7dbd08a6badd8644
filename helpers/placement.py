"""Device maps as from_pretrained computes them (its planner on a meta copy), budgets checked, where layers land drawn."""

from __future__ import annotations

import copy
import logging
from collections import defaultdict

import torch
from accelerate.utils import convert_file_size_to_int
from transformers import BitsAndBytesConfig, PreTrainedModel
from transformers.integrations import accelerate as planner  # transformers' own device-map planner
from transformers.quantizers import AutoHfQuantizer, HfQuantizer
from transformers.utils import ContextManagers

from helpers.memory import GiB
from helpers.tables import one_of

__all__ = ["BudgetError", "check_budget", "device_totals", "draw_device_map", "draw_plan", "model_bytes",
           "module_sizes", "plan", "to_bytes"]

Precision = str | BitsAndBytesConfig  # a name below, or the BitsAndBytesConfig a load passes
PRECISIONS: dict[str, BitsAndBytesConfig | None] = {
    "bf16": None, "int8": BitsAndBytesConfig(load_in_8bit=True),
    "4-bit": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)}
STRATEGIES = ("sequential", "balanced", "balanced_low_0", "auto")  # "auto": balanced, as device_map="auto" is


class BudgetError(ValueError):
    """A max_memory budget that cannot hold the model; the message says by how much and what to change."""


def to_bytes(value: int | str) -> int:
    """Return a max_memory entry ("600MB", "2GiB" or bytes) in bytes, read as from_pretrained reads it."""
    try:
        return convert_file_size_to_int(value)
    except ValueError:
        raise ValueError(f"max_memory entry {value!r}: use bytes or a number with KB, MB, GB, KiB, MiB, GiB") from None


def as_loaded(model: PreTrainedModel, precision: Precision) -> tuple[PreTrainedModel, HfQuantizer | None]:
    """Return a meta copy of the model as from_pretrained builds it in 16 bits (bitsandbytes layers where quantized) and its quantizer."""
    config = PRECISIONS[one_of("precision", precision, PRECISIONS)] if isinstance(precision, str) else precision
    quantizer = None if config is None else AutoHfQuantizer.from_config(config)
    with ContextManagers(type(model).get_init_context(torch.bfloat16, quantizer is not None, False, None)):
        loaded = type(model)(copy.deepcopy(model.config))  # from_pretrained's contexts: meta device, 16-bit default
        if quantizer is not None:  # bitsandbytes layers replace the linear ones before planning, as in from_pretrained
            quantizer.preprocess_model(loaded, dtype=torch.bfloat16, device_map="auto")
    return loaded, quantizer


def constant_bytes(weight: torch.Tensor, config: BitsAndBytesConfig) -> int:
    """Return bitsandbytes' constants beside a quantized weight: int8 a float32 per row, 4-bit an absmax per 64 weights."""
    # the absmax is float32, or 8-bit plus a float32 per 256 blocks with nested quantization (bnb_4bit_use_double_quant)
    if config.load_in_8bit:
        return 4 * weight.shape[0]
    blocks = -(-weight.numel() // 64)
    return blocks + 4 * -(-blocks // 256) if config.bnb_4bit_use_double_quant else 4 * blocks


def module_sizes(model: PreTrainedModel, precision: Precision, constants: bool = True) -> dict[str, int]:
    """Return the bytes of each module and parameter after a load at this precision: bitsandbytes' constants included, or (False) as the planner counts."""
    loaded, quantizer = as_loaded(model, precision)
    sizes = planner.compute_module_sizes(loaded, quantizer, only_modules=False)[0]  # transformers' planner's count
    for name, param in loaded.named_parameters():
        if constants and quantizer is not None and quantizer.param_needs_quantization(loaded, name):
            parts = name.split(".")  # the planner leaves the constants to its 10% reserve
            for end in range(len(parts) + 1):
                sizes[".".join(parts[:end])] += constant_bytes(param, quantizer.quantization_config)
    return {name: int(size) for name, size in sizes.items()}


def model_bytes(model: PreTrainedModel, precision: Precision) -> int:
    """Return the bytes of a model's weights after a load at this precision ("bf16", "int8", "4-bit" or a BitsAndBytesConfig)."""
    return module_sizes(model, precision)[""]


def check_budget(model: PreTrainedModel, max_memory: dict[int | str, int | str], precision: Precision) -> None:
    """Raise BudgetError when the devices in max_memory (disk counts as unlimited) cannot hold the weights."""
    if "disk" in max_memory:
        return
    need, have = model_bytes(model, precision), sum(to_bytes(v) for v in max_memory.values())
    if need > have:
        label = precision if isinstance(precision, str) else "int8" if precision.load_in_8bit else "4-bit"
        sizes = {p: model_bytes(model, p) for p in PRECISIONS if p != label}
        hint = ", ".join(f"{p} needs {size / GiB:.1f} GiB" for p, size in sizes.items() if size < need)
        budgets = ", ".join(f"{k}: {v!r} = {to_bytes(v) / GiB:.2f} GiB" for k, v in max_memory.items())  # as written
        raise BudgetError(f"the weights need {need / GiB:.1f} GiB at {label} but max_memory gives {have / GiB:.1f} "
                          f"GiB ({budgets}). Raise a budget or add 'disk' (offload_folder=...) for the rest"
                          + (f", or quantize: {hint}." if hint else "."))


def plan(model: PreTrainedModel, max_memory: dict[int | str, int | str], precision: Precision = "bf16",
         strategy: str = "sequential") -> dict[str, int | str]:
    """Return the device map from_pretrained(device_map=strategy, max_memory=..., quantization_config=...) computes, before it checks it."""
    strategy = one_of("strategy", strategy, STRATEGIES)  # before the budget: a wrong name is no budget problem
    check_budget(model, max_memory, precision)
    loaded, quantizer = as_loaded(model, precision)
    no_split, budget = loaded._no_split_modules, {k: to_bytes(v) for k, v in max_memory.items()}
    logging.getLogger("accelerate.utils.modeling").setLevel(logging.ERROR)  # "Device 0 is not available" if imagined
    if strategy == "sequential":
        budget = planner.get_max_memory(budget)
    else:  # transformers' own get_balanced_memory: a cap per GPU but the last, GPU 0's lowered for balanced_low_0
        budget = planner.get_balanced_memory(loaded, budget, no_split, quantizer, low_zero=strategy == "balanced_low_0")
    if quantizer is not None:
        budget = quantizer.adjust_max_memory(budget)  # bitsandbytes: 90% of each budget
    pinned = getattr(loaded, "_no_placement_params", None)  # passed as transformers' _get_device_map passes them
    return planner.infer_auto_device_map(loaded, max_memory=budget, no_split_module_classes=no_split,
                                         hf_quantizer=quantizer, no_placement_params=pinned)


def device_totals(model: PreTrainedModel, device_map: dict[str, int | str], precision: Precision = "bf16") -> dict:
    """Return the bytes of weights each device holds under a device map, bitsandbytes' constants included."""
    sizes = module_sizes(model, precision)
    totals: dict[int | str, int] = defaultdict(int)
    for module, device in device_map.items():
        totals[device] += sizes.get(module, 0)  # a tied head: counted with the embedding it shares
    return dict(totals)


def draw_device_map(model: PreTrainedModel, device_map: dict[str, int | str], title: str,
                    precision: Precision = "bf16") -> None:
    """Show the model's modules, in order, as one bar coloured by the device each lands on."""
    import matplotlib.pyplot as plt

    sizes = module_sizes(model, precision)
    devices = list(dict.fromkeys(device_map.values()))
    colours = {d: plt.cm.tab10(i) for i, d in enumerate(devices)}
    fig, ax = plt.subplots(figsize=(9, 2.0), layout="constrained")
    left = 0.0
    for module, device in device_map.items():
        width = sizes.get(module, 0) / GiB
        ax.barh(0, width, left=left, color=colours[device], edgecolor="white", linewidth=0.3)
        left += width
    totals = device_totals(model, device_map, precision)
    for device in devices:
        ax.barh(0, 0, color=colours[device], label=f"{device}: {totals[device] / GiB:.1f} GiB")
    ax.set(yticks=[], xlabel="GiB of weights, modules in order (embedding → layers → head)", title=title)
    fig.legend(loc="outside lower center", ncols=len(devices), frameon=False)  # below the axis label, not over it
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
