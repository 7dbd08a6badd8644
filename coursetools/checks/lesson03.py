"""Lesson 03's exercises: write the BitsAndBytesConfig for NF4 with double quantization, predict the NF4 footprint."""

from __future__ import annotations

from typing import Any

import torch

from coursetools.checks import Call, Prediction
from helpers.quantization import code_book

__all__ = ["EXERCISES"]

TOLERANCE = 0.1  # a footprint prediction within 10% of the measured ratio agrees
EVERY_WEIGHT_4BIT = 4.5 / 16  # 4 bits and one float32 absmax per 64 weights, against 16 bits


def nf4_problem(config: Any, half: torch.dtype) -> str | None:
    """Return what keeps a BitsAndBytesConfig from being 4-bit NF4 computed in `half`, or None (lessons 03 and 05)."""
    if config.load_in_8bit:
        return "load_in_8bit=True is LLM.int8() (lesson 04): write load_in_4bit=True instead"
    if not config.load_in_4bit:
        return ("load_in_4bit=True is missing: BitsAndBytesConfig's load_in_4bit defaults to False, and then nothing is "
                "quantized to 4 bits")
    quant_type = config.bnb_4bit_quant_type
    if quant_type != "nf4":
        if quant_type.lower() == "nf4":
            return f"bnb_4bit_quant_type={quant_type!r}: bitsandbytes knows the lower-case names 'nf4' and 'fp4'"
        if quant_type == "fp4":
            return "bnb_4bit_quant_type is 'fp4': its default is 'fp4', so leaving it out gives FP4 too; set 'nf4'"
        return f"bnb_4bit_quant_type={quant_type!r}: the code books are 'fp4' and 'nf4'; this exercise asks for 'nf4'"
    compute = config.bnb_4bit_compute_dtype
    if compute != half:
        if compute == torch.float32:
            return (f"bnb_4bit_compute_dtype is torch.float32 (the default: left out it is float32): set it to {half}, "
                    "the dtype the 4-bit matrix products should run in")
        return f"bnb_4bit_compute_dtype is {compute}: this lesson computes in its 16-bit dtype `half`, {half}"
    return None


def check_call(answer: Any, half: torch.dtype) -> str | None:
    """Return what is wrong with a BitsAndBytesConfig for NF4, `half` compute and double quantization, or None."""
    from transformers import BitsAndBytesConfig

    if not isinstance(answer, BitsAndBytesConfig):
        return f"write a transformers.BitsAndBytesConfig(...), not a {type(answer).__name__}"
    problem = nf4_problem(answer, half)
    if problem:
        return problem
    if not answer.bnb_4bit_use_double_quant:
        return "bnb_4bit_use_double_quant=True is missing (its default is False): it quantizes the absmax scales too"
    if answer.bnb_4bit_quant_storage != torch.uint8:
        return f"bnb_4bit_quant_storage is {answer.bnb_4bit_quant_storage}: leave it out (default torch.uint8)"
    if answer.llm_int8_skip_modules is not None:
        return (
            f"llm_int8_skip_modules={answer.llm_int8_skip_modules!r} changes which modules stay 16-bit: leave it out "
            "(None keeps the output head and weights tied to it unquantized)"
        )
    return None


def compare_footprint(answer: float, measured: float, unquantized_share: float) -> tuple[bool, str]:
    """Compare a predicted nf4/16-bit footprint ratio with the measured one and say why it is not 4.5/16."""
    agrees = abs(answer - measured) <= TOLERANCE * measured
    naive = abs(answer - EVERY_WEIGHT_4BIT) <= TOLERANCE * EVERY_WEIGHT_4BIT
    why = (
        f"nf4 takes {measured:.2f} of the 16-bit footprint, not {EVERY_WEIGHT_4BIT:.2f} (every weight at 4.5 bits): "
        f"{100 * unquantized_share:.0f}% of the 16-bit bytes (embedding, output head tied to it, norms) are not "
        "nn.Linear layers of the blocks and stay 16-bit"
    )
    if naive and not agrees:
        why += "; your figure assumed every weight quantized"
    return agrees, why


def round_trip_problem(errors: dict[str, float], off_midpoint: dict[str, int]) -> str | None:
    """Return what is wrong with the from-scratch round trip: NF4 not closer than FP4, or differences off a midpoint."""
    if not errors["nf4"] < errors["fp4"]:
        return f"NF4's mean |error| {errors['nf4']:.5f} is not below FP4's {errors['fp4']:.5f}"
    if any(off_midpoint.values()):
        return f"ours and bitsandbytes' differ on weights that are not on a midpoint between two codes: {off_midpoint}"
    return None


def variants_problem(footprint: dict[str, int], ppl: dict[str, float], answers: dict[str, str], half_name: str,
                     four_bit: list[str]) -> str | None:
    """Return a 4-bit footprint not below half the 16-bit one, NF4 not beating FP4, or a 16-bit or NF4 answer without Paris."""
    big = {name: footprint[name] for name in four_bit if footprint[name] >= 0.5 * footprint[half_name]}
    if big:
        return f"4-bit footprints not below half of {half_name}'s {footprint[half_name]} bytes: {big}"
    if not ppl["nf4"] < ppl["fp4"]:
        return f"nf4's perplexity {ppl['nf4']:.3f} is not below fp4's {ppl['fp4']:.3f}"
    wrong = {name: answers[name] for name in [half_name, *four_bit] if name.startswith(("nf4", half_name))
             and "Paris" not in answers[name]}
    return f"answers without Paris: {wrong}" if wrong else None


PREDICTION_TOLERANCE = 0.01  # module-by-module footprint against the measured one; double quantization alone moves it ~4%


def prediction_problem(predicted: dict[str, int], measured: dict[str, int],
                       tolerance: float = PREDICTION_TOLERANCE) -> str | None:
    """Return the footprints the module-by-module prediction misses by more than `tolerance` of the measurement."""
    missed = {name: (predicted[name], measured[name]) for name in measured
              if abs(predicted[name] - measured[name]) > tolerance * measured[name]}
    return f"predicted and measured bytes differ by more than {tolerance:.0%}: {missed}" if missed else None


WEIGHT, ABSMAX = 0.3, 1.2  # the first exercise: one weight and its block's absmax


def check_answer(answer: Any) -> str | None:
    """Index of the NF4 code that stores WEIGHT in a block whose absmax is ABSMAX."""
    codes = code_book("nf4")
    expected = int((codes - WEIGHT / ABSMAX).abs().argmin())
    if isinstance(answer, int) and not isinstance(answer, bool) and answer == expected:
        return None
    if isinstance(answer, int) and answer == int((codes - WEIGHT).abs().argmin()):
        return "divide the weight by the block's absmax first: codes live between -1 and 1"
    return f"scale {WEIGHT} by the absmax {ABSMAX}, then take the index of the nearest value in code_book('nf4')"


EXERCISES = {
    "03": Call(check_answer),
    "03-call": Call(check_call),
    "03-predict": Prediction(
        question="SmolLM2's measured nf4 footprint as a fraction of its 16-bit footprint, a number",
        compare=compare_footprint,
        choices=(),
    ),
}
