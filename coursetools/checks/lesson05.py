"""Lesson 05's exercises: the one `from_pretrained` call for nf4 weights with SDPA attention, and nf4 against 16-bit decode."""

from __future__ import annotations

from typing import Any

import torch

from coursetools.checks import Call, Prediction
from coursetools.checks.lesson03 import nf4_problem
from helpers.timing import compare

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


def compare_decode(answer: bool, ratio: tuple[float, float, float], baseline: str) -> tuple[bool, str]:
    """Compare 'nf4 decodes faster than the 16-bit weights at batch 1' with the per-round speed ratio nf4/baseline."""
    faster = ratio[1] > 1.0
    if faster:
        said = f"nf4 decodes {compare(ratio)} than {baseline} at batch 1"
        why = ("its 4-bit layers read about a quarter of their 16-bit bytes (the whole model shrinks less: embeddings and "
               "head stay 16-bit), and here the saving outweighs the unpacking")
    elif ratio[2] < 1.0:
        said = f"nf4 decodes {compare(ratio)} than {baseline} at batch 1"
        why = ("the bytes saved did not pay for the extra work of unpacking and scaling the 4-bit blocks; which part of "
               "that work costs the time is not measured here (lesson 08 profiles a step)")
    else:
        said = f"nf4 against {baseline} at batch 1: {compare(ratio)}"
        why = "a tie within this machine's round-to-round spread, which counts as not faster, so False agrees with it"
    return answer is faster, f"{said}: {why}."


def check_answer(answer: Any, ran: dict, long: int) -> str | None:
    """A measured combination with the least weights + prefill peak memory at the longest context (ties within 1%)."""
    total = {key: ran[key].footprint_bytes + ran[key].peak_bytes[long] for key in ran}
    if answer in ran and total[answer] <= 1.01 * min(total.values()):  # kernels with equal memory tie within 1%
        return None
    if answer not in ran:
        return f"answer with one key of `ran`, a (weights, attention) pair such as {next(iter(ran))!r}"
    return "add each combination's footprint_bytes and its peak_bytes[long], and take the smallest"


EXERCISES = {
    "05": Call(check_answer),
    "05-call": Call(check_call),
    "05-predict": Prediction("nf4 weights decode faster than 16-bit weights at batch 1 (SDPA attention): True or False?",
                             compare_decode),
}
