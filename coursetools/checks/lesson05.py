"""Lesson 05's exercises (the one `from_pretrained` call for nf4 weights with SDPA attention, nf4 against 16-bit decode,
the least memory for a long context) and the lesson's own checks of its deterministic results."""

from __future__ import annotations

import itertools
from typing import Any

import torch

from coursetools.checks import Call, Prediction
from coursetools.checks.lesson03 import nf4_problem
from helpers.decoding import OVERHEAD_BOUND_SHARE

KEYWORDS = ("quantization_config", "attn_implementation", "dtype", "device_map")


def keyword_problem(answer: Any, half: torch.dtype) -> str | None:
    """Return what is wrong with the keywords themselves, or None."""
    from transformers import BitsAndBytesConfig

    if not isinstance(answer, dict):
        return ("write a dict of from_pretrained keywords: {'quantization_config': BitsAndBytesConfig(...), "
                "'attn_implementation': ..., 'dtype': ...}")
    if "load_in_4bit" in answer:
        return ("load_in_4bit is no longer a from_pretrained keyword (transformers 5 raises TypeError): write "
                "BitsAndBytesConfig(load_in_4bit=True, ...) and pass it as quantization_config")
    if "torch_dtype" in answer:
        return "torch_dtype= is deprecated (transformers warns): write dtype="
    unknown = sorted(set(answer) - set(KEYWORDS))
    if unknown:
        return f"this call needs only {', '.join(KEYWORDS[:3])} (and device_map): remove {', '.join(unknown)}"
    config = answer.get("quantization_config")
    if not isinstance(config, BitsAndBytesConfig):
        return "quantization_config must be a BitsAndBytesConfig(load_in_4bit=True, ...)"
    problem = nf4_problem(config, half)
    if problem:
        return problem
    implementation = answer.get("attn_implementation")
    if implementation is None:
        return "write attn_implementation='sdpa': SDPA is the default where a model supports it, but say it"
    if implementation.startswith("flash_attention"):
        return (f"{implementation!r} needs the flash-attn package: PyTorch's own flash kernel comes through "
                "attn_implementation='sdpa' and sdpa_kernel")
    if implementation != "sdpa":
        return f"attn_implementation is {implementation!r}: set 'sdpa' (PyTorch's scaled_dot_product_attention)"
    if answer.get("dtype") != half:
        return (f"dtype is {answer.get('dtype')!r}: set {half}. dtype= sets the parts that stay unquantized "
                "(embeddings, norms, head) and so the dtype attention receives; left out it is 'auto', the checkpoint's")
    return None


def check_call(answer: Any, half: torch.dtype, path: Any = None, device: str = "cpu") -> str | None:
    """Check the keywords of the nf4 + SDPA call; with a `path`, load the model with them and check what came out."""
    problem = keyword_problem(answer, half)
    if problem or path is None:
        return problem
    import bitsandbytes as bnb
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path, **{"device_map": device, **answer})
    except (TypeError, ValueError, RuntimeError) as err:
        return f"from_pretrained refused these keywords: {str(err).splitlines()[0]}"
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    found = (layers[0].weight.quant_state.quant_type if layers else None, model.config._attn_implementation, model.dtype)
    del model
    if found != ("nf4", "sdpa", half):
        return f"loaded, but got (4-bit type, attention, dtype) = {found}, not ('nf4', 'sdpa', {half})"
    return None


PREDICTION_SLACK = 0.10  # a predicted ratio agrees when it lies in the rounds' range widened by this share each side


def compare_decode(answer: float, ratio: tuple[float, float, float], baseline: str, byte_ratio: float,
                   base_share: float) -> tuple[bool, str]:
    """Compare a predicted nf4/16-bit batch-1 decode speed ratio with the per-round ratios measured, and read them."""
    median, low, high = ratio
    agrees = low * (1 - PREDICTION_SLACK) <= answer <= high * (1 + PREDICTION_SLACK)
    said = (f"nf4 decodes at {median:.2f}x the speed of {baseline} at batch 1 (quartiles of the rounds {low:.2f}-"
            f"{high:.2f}); its bytes per token alone would make it {byte_ratio:.2f}x")
    if base_share < OVERHEAD_BOUND_SHARE:
        # helpers.decoding.bound_share's reading: other work than reading weights, around the kernels or in them
        why = (f"{baseline}'s step reaches {100 * base_share:.1f}% of its bandwidth bound, below "
               f"{100 * OVERHEAD_BOUND_SHARE:.0f}%: overhead-bound, reading the weights is a small part of a step, so "
               "the ratio measures other work (around the kernels or in them), not the bytes nf4 saves")
    else:
        why = (f"{baseline}'s step reaches {100 * base_share:.0f}% of its bandwidth bound; nf4 reaches "
               f"{median / byte_ratio:.2f} of the share {baseline} reaches of its own bound")
    if not agrees and abs(answer - byte_ratio) <= PREDICTION_SLACK * byte_ratio:
        why += "; your figure is what the bytes alone predict"
    return agrees, f"{said}: {why}."


def goal_reading(shares: dict[str, float]) -> str:
    """Read a goal's leaders by their decode shares of the bandwidth bound (name -> 0-1): overhead-bound below 20%."""
    kinds = {"above the bound, not a valid measurement": {n: s for n, s in shares.items() if s > 1},
             "overhead-bound": {n: s for n, s in shares.items() if s < OVERHEAD_BOUND_SHARE},
             "": {n: s for n, s in shares.items() if OVERHEAD_BOUND_SHARE <= s <= 1}}
    present = {label: group for label, group in kinds.items() if group}
    if len(present) == 1:  # one kind: its range of shares, without names
        label, group = next(iter(present.items()))
        low, high = (f"{100 * s:.1f}" for s in (min(group.values()), max(group.values())))
        return (f"{label}: " if label else "") + (f"{low}%" if low == high else f"{low}-{high}%")
    return "; ".join(f"{label or 'at least 20% of the bound'}: " + ", ".join(f"{n} {100 * s:.1f}%" for n, s in group.items())
                     for label, group in present.items())  # mixed kinds: each group labelled


def footprint_order_problem(footprints: dict[str, int], order: list[str]) -> str | None:
    """Return why the footprints do not shrink along `order` (e.g. 16-bit, int8, nf4), each strictly, or None."""
    for larger, smaller in itertools.pairwise(order):
        if not footprints[smaller] < footprints[larger]:
            return f"{smaller} takes {footprints[smaller]} bytes, not fewer than {larger}'s {footprints[larger]}"
    return None


def dtype_problem(got: dict[str, torch.dtype], expected: dict[str, torch.dtype]) -> str | None:
    """Return which models got another dtype than expected (by name), or None."""
    wrong = {key: f"{got.get(key)} instead of {dtype}" for key, dtype in expected.items() if got.get(key) != dtype}
    return f"dtypes: {wrong}" if wrong else None


def allowed_problem(allowed: list[str], expected: set[str]) -> str | None:
    """Return why the SDPA backends a context allows are not the ones the lesson says it allows, or None."""
    return None if set(allowed) == expected else f"the context allows {allowed}, not {sorted(expected)} as said"


def backend_problem(ran: dict[str, int] | None, allowed: set[str], should_run: bool | None = None) -> str | None:
    """Return why SDPA's calls (backend -> calls, None where the call was refused) break what was allowed, or None."""
    if should_run is not None and (ran is not None) != should_run:
        return f"with only {sorted(allowed)} allowed the call was {'refused' if ran is None else 'run'}, expected otherwise"
    if ran is None:
        return None
    if not ran:
        return "no SDPA call was recorded: the model did not run SDPA attention"
    outside = sorted(set(ran) - allowed)
    return f"SDPA ran {outside} with only {sorted(allowed)} allowed" if outside else None


def check_answer(answer: Any, ran: dict, long: int) -> str | None:
    """A measured combination with the least weights + prefill peak memory at the longest context (ties within 1%)."""
    total = {key: ran[key].footprint_bytes + ran[key].peak_bytes[long] for key in ran}
    if isinstance(answer, list):  # ["nf4", "sdpa flash"]: the pair, written as a list
        answer = tuple(answer)
    try:
        known = answer in ran
    except TypeError:  # unhashable (a dict, a set, a list inside): `in` raises rather than answering False
        known = False
    if not known:
        return f"answer with one key of `ran`, a (weights, attention) pair such as {next(iter(ran))!r}"
    if total[answer] <= 1.01 * min(total.values()):  # kernels with equal memory tie within 1%
        return None
    return "add each combination's footprint_bytes and its peak_bytes[long], and take the smallest"


EXERCISES = {
    "05": Call(check_answer),
    "05-call": Call(check_call),
    "05-predict": Prediction("nf4's batch-1 decode speed as a multiple of the 16-bit weights' (SDPA attention), a number",
                             compare_decode, choices=()),
}
