"""Lesson 08's exercises: the TorchAoConfig for int4 weight-only in tinygemm's layout, and its decode against 16-bit."""

from __future__ import annotations

from typing import Any

from coursetools.checks import Call, Prediction, close
from helpers.timing import compare

__all__ = ["EXERCISES"]

GROUP_SIZES = (32, 64, 128, 256)  # the group sizes Int4WeightOnlyConfig's docstring lists
PACKING_KERNELS = {  # what each of torchao's int4 packing formats runs on, for the hint
    "plain": "the default, which needs the separate mslk kernel package",
    "preshuffled": "the mslk kernels' preshuffled layout",
    "plain_int32": "the layout of the oneDNN kernels for Intel XPUs",
}


def check_call(answer: Any, group_size: int) -> str | None:
    """Return what is wrong with a TorchAoConfig for int4 weight-only, `group_size` groups, tinygemm layout, or None."""
    from torchao.quantization import Int4WeightOnlyConfig
    from torchao.quantization.quant_api import AOBaseConfig
    from transformers import BitsAndBytesConfig, TorchAoConfig

    if isinstance(answer, AOBaseConfig):
        return (f"{type(answer).__name__} is torchao's own config: from_pretrained takes it wrapped, "
                f"TorchAoConfig({type(answer).__name__}(...))")
    if isinstance(answer, BitsAndBytesConfig):
        return "BitsAndBytesConfig is bitsandbytes' nf4/fp4 (lesson 03): this exercise is torchao's int4, TorchAoConfig"
    if not isinstance(answer, TorchAoConfig):
        return f"write a transformers.TorchAoConfig(...), not a {type(answer).__name__}"
    quant_type = answer.quant_type
    if not isinstance(quant_type, Int4WeightOnlyConfig):
        return (f"TorchAoConfig({type(quant_type).__name__}(...)) is another format: 4-bit integer weights with 16-bit "
                "activations are Int4WeightOnlyConfig")
    if quant_type.group_size != group_size:
        default = " (its default)" if quant_type.group_size == 128 else ""
        if quant_type.group_size not in GROUP_SIZES:
            return f"group_size={quant_type.group_size}: torchao's int4 groups are {GROUP_SIZES}; this asks {group_size}"
        return (f"group_size is {quant_type.group_size}{default}: one scale and zero point per {group_size} weights is "
                f"group_size={group_size}")
    packing = str(getattr(quant_type.int4_packing_format, "value", quant_type.int4_packing_format))
    if packing != "tile_packed_to_4d":
        if packing in PACKING_KERNELS:
            return (f"int4_packing_format={packing!r} is {PACKING_KERNELS[packing]}: tinygemm's layout, which "
                    "PyTorch's CUDA build ships, is 'tile_packed_to_4d'")
        return (f"int4_packing_format={packing!r} is no format torchao knows (it fails only when quantizing): "
                f"tinygemm's is 'tile_packed_to_4d'; the others are {sorted(PACKING_KERNELS)}")
    if quant_type.set_inductor_config:
        return ("set_inductor_config is True (its default): torchao would change torch.compile's global settings for "
                "everything compiled afterwards; pass set_inductor_config=False")
    if answer.modules_to_not_convert is not None or answer.include_input_output_embeddings:
        return ("leave TorchAoConfig's other keywords out: their defaults quantize every linear layer except the "
                "output head, and no embedding")
    return None


def head_problem(read: dict[str, int]) -> str | None:
    """Return a problem unless int4+head reads fewer bytes per token than int4 (`read`: variant -> bytes per token)."""
    if read["int4+head"] < read["int4"]:
        return None
    return f"int4+head left the head 16-bit: it reads {read['int4+head']} bytes per token, int4 {read['int4']}"


def compare_decode(
    answer: bool, ratio: tuple[float, float, float], variant: str, base: str, shape: str, byte_ratio: float
) -> tuple[bool, str]:
    """Compare 'variant decodes measurably faster than base at batch 1' with the per-round speed ratios variant/base."""
    faster = ratio[1] > 1.0
    said = f"on {shape}, {variant} against {base} at batch 1: {compare(ratio)}, reading {byte_ratio:.2f}x fewer bytes"
    # no cause here: the sections after the check read one only where the step runs near its bandwidth bound
    if faster:
        why = "the saved bytes showed as speed (the step split below says how much of its step is kernels)"
    elif ratio[2] < 1.0:
        why = "slower (quartiles below 1x): the sections below measure its kernels and the time outside them"
    else:
        why = "its quartiles hold 1x: the saved bytes did not show as speed (the sections below measure the step)"
    return answer is faster, f"{said}: {why}."


def check_answer(answer: Any, bytes_per_token: dict[str, int], base: str, variant: str) -> str | None:
    """Decode speed-up of `variant` over `base` if both reached the same share of their bandwidth bounds."""
    expected = bytes_per_token[base] / bytes_per_token[variant]
    if close(answer, expected):
        return None
    if close(answer, 1 / expected):
        return "upside down: fewer bytes per token means more tokens per second, so the speed-up is base bytes / variant bytes"
    return "at the same share of the bound, speed is bandwidth / bytes: the speed-up is the ratio of bytes per token"


EXERCISES = {
    "08": Call(check_answer),
    "08-call": Call(check_call),
    "08-predict": Prediction(
        "On the largest shape, does the first quantized variant measured here (variants[0]: int4 on a GPU that runs "
        "it) decode measurably faster than the 16-bit base at batch 1 (the middle half of its rounds faster)? True or False",
        compare_decode,
    ),
}
