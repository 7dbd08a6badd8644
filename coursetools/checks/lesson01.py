"""Lesson 01's exercises: the `from_pretrained` call for an sdpa encoder in float16, and the fast path without padding."""

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


def compare_no_padding(
    answer: bool, no_padding: tuple[float, float, float], half_padding: tuple[float, float, float]
) -> tuple[bool, str]:
    """Compare 'the fast path beats HF sdpa on a batch with no padding' with the sweep's per-round ratios."""
    _, low, high = no_padding
    beats = low > 1.0  # faster in every round; a range that includes 1 is no measurable difference
    verdict = ("it beats HF sdpa" if beats else "it does not measurably beat HF sdpa" if high >= 1.0 else
               "it is slower than HF sdpa")
    grows = half_padding[1] > high  # the half-padded batch's lowest round beats every round without padding
    padded = (f"at 50% padding it was {compare(half_padding)}, "
              + ("a larger gain: skipping padding is where it comes from" if grows else
                 "not a measurably larger gain than without padding"))
    return answer == beats, (
        "with no padding there is nothing to skip, so this compares only the fast path's fused layers (with its "
        f"packing into a nested tensor and back) with transformers' sdpa layers: {compare(no_padding)}, {verdict}; "
        f"{padded}"
    )


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
        "On a batch with no padding at all (float32, the lesson's batch), does the fast path run measurably faster than "
        "HF sdpa? True or False",
        compare_no_padding,
    ),
}
