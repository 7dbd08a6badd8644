"""Lesson 01's exercises: padding's share of attention work, the `from_pretrained` call for an sdpa encoder in float16, and the fast path's gain at the most padding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from coursetools.checks import Call, Prediction, close, placement_problem, same_shape
from helpers.timing import compare


def check_call(answer: Any, device: str) -> str | None:
    """Return what is wrong with a model meant to be all-MiniLM-L6-v2 with sdpa attention, in float16, on `device`."""
    if isinstance(answer, str | Path):
        return ("that is what from_pretrained loads: write the call itself, "
                'AutoModel.from_pretrained(pretrained_path("minilm-l6"), ...)')
    if not isinstance(answer, PreTrainedModel):
        return f"a {type(answer).__name__}: write AutoModel.from_pretrained(...), whose result is the model"
    if answer.base_model is not answer:
        return f"{type(answer).__name__} adds a task head to the encoder: load the bare encoder with AutoModel"
    if not same_shape(answer, "minilm-l6"):
        return 'this is not all-MiniLM-L6-v2: load pretrained_path("minilm-l6")'
    attention = answer.config._attn_implementation
    if attention != "sdpa":
        return (f'its attention is {attention!r}: pass attn_implementation="sdpa" (or leave it out: sdpa is the default '
                "for a model that supports it)")
    if answer.dtype == torch.bfloat16:
        return "bfloat16 is the other 16-bit float: this exercise asks for float16, dtype=torch.float16"
    if answer.dtype != torch.float16:
        return (f"its weights are {str(answer.dtype).removeprefix('torch.')}: pass dtype=torch.float16 (the default, "
                '"auto", keeps the dtype of the config or, as here, of the checkpoint: float32)')
    return placement_problem(answer, device)


NEAR = 0.1  # a predicted speed-up within 10% of the rounds' quartiles agrees with the measurement


def compare_gain(
    answer: float, measured: tuple[float, float, float], padding: float, no_padding: tuple[float, float, float]
) -> tuple[bool, str]:
    """Compare a predicted speed-up of the fast path over HF sdpa at the sweep's most padded batch with its rounds."""
    median, low, high = measured
    agrees = low / (1 + NEAR) <= answer <= high * (1 + NEAR)
    bound = 1 / (1 - padding)  # per-token work with that share of the slots skipped
    said = (f"at {padding:.0%} padding the fast path ran {compare(measured)} against HF sdpa; skipping that share of "
            f"the slots could make the per-token work at most {bound:.0f}x cheaper (attention, quadratic in length, "
            f"more), so it turned {median / bound:.0%} of that bound into speed; with no padding it was "
            f"{compare(no_padding)}, what packing and its fused layers give or cost with nothing to skip")
    if not agrees:
        said += f"; your {answer:g} lies {'above' if answer > high else 'below'} the middle half of the rounds"
    return agrees, said


def check_answer(answer: Any, lengths: list[int], padded_to: int) -> str | None:
    """Share of attention-score work spent on padding: scores grow with length squared."""
    real = sum(n * n for n in lengths)
    expected = 1 - real / (len(lengths) * padded_to * padded_to)
    if close(answer, expected):
        return None
    if close(answer, 1 - sum(lengths) / (len(lengths) * padded_to)):
        return "that is the share of padded tokens; attention scores are length x length per sentence"
    return "each sentence computes padded_to**2 scores but needs only length**2 of them; give the wasted share (0-1)"


EXERCISES = {
    "01": Call(check_answer),
    "01-call": Call(check_call),
    "01-predict": Prediction(
        "On the sweep's most padded batch (float32, the lesson's batch), how many times faster than HF sdpa does the "
        "fast path run? A number (1.0: the same speed)",
        compare_gain,
        choices=(),
    ),
}
