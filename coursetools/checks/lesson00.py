"""Lesson 00's exercises: load a synthetic model with the one loading call, predict prefill's cost per token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from coursetools.checks import Call, Prediction, close, placement_problem, same_shape
from helpers.limits import decode_bound_tokens_per_s
from helpers.models import pretrained_path
from helpers.timing import compare

__all__ = ["EXERCISES", "SYNTHETIC_NAME"]

SYNTHETIC_NAME = "llama-tiny-shape"  # the smallest synthetic causal LM, so lesson 00 stays fast


def check_call(answer: Any, dtype: torch.dtype, device: str) -> str | None:
    """Return what is wrong with a model meant to be the synthetic llama-tiny-shape causal LM in `dtype` on `device`."""
    call = f'AutoModelForCausalLM.from_pretrained(pretrained_path("{SYNTHETIC_NAME}"), ...)'
    if isinstance(answer, str | Path):
        return f"that is what from_pretrained loads: write the call itself, {call}"
    if not isinstance(answer, PreTrainedModel):
        return f"a {type(answer).__name__}: write {call}, whose result is the model"
    if not same_shape(answer, SYNTHETIC_NAME):
        return f'this is not the {SYNTHETIC_NAME} model: load pretrained_path("{SYNTHETIC_NAME}")'
    if answer.base_model is answer:
        return (f"{type(answer).__name__} is the bare decoder, without the head that turns states into next-token "
                "scores: load it with AutoModelForCausalLM")
    checkpoint = Path(pretrained_path(SYNTHETIC_NAME)).resolve()
    if not answer.name_or_path or Path(answer.name_or_path).resolve() != checkpoint:
        return (f"these weights were not read from the checkpoint (from_config draws new random ones on every call): "
                f'load pretrained_path("{SYNTHETIC_NAME}") with from_pretrained, as every lesson does')
    if answer.dtype != dtype:
        stored = (" (left out, dtype=\"auto\" keeps the dtype the checkpoint was saved in, bfloat16)"
                  if answer.dtype == torch.bfloat16 else "")
        return (f"its weights are {str(answer.dtype).removeprefix('torch.')}{stored}: pass dtype=lesson.profile.dtype, "
                f"{dtype} on this profile")
    return placement_problem(answer, device)


def compare_per_token(answer: bool, longer: tuple[float, float, float], tokens: int) -> tuple[bool, str]:
    """Compare 'per token, the prompt's pass is cheaper than a one-token pass' with the rounds' time ratios."""
    median, low, high = longer  # per round: time of the pass over `tokens` tokens / time of the pass over one
    per_token = (tokens / median, tokens / high, tokens / low)  # how many times cheaper per token, low to high
    cheaper = high < tokens  # the prompt's pass took less than `tokens` one-token passes in every round
    why = ("each pass reads every weight once however many tokens it carries (and on a GPU launches the same kernels): "
           "a decode step pays that for one token, prefill once for the whole prompt"
           if cheaper else
           "here a pass costs in proportion to its tokens: the arithmetic, not reading the weights, sets its time")
    return answer == cheaper, (
        f"one pass over {tokens} tokens took {median:.2f}x the time of a pass over one token (rounds {low:.2f}-"
        f"{high:.2f}), against {tokens}x if a pass cost in proportion to its tokens: per token, prefill was "
        f"{compare(per_token, 'cheaper', 'costlier')}; {why}"
    )


def check_answer(answer: Any, footprint: int, bits: int, bandwidth: float) -> str | None:
    """Decode bound on this machine if the same weights took 4 bits each instead of `bits`."""
    expected = decode_bound_tokens_per_s(int(footprint * 4 / bits), bandwidth)
    if close(answer, expected):
        return None
    return "each token reads every weight once: bound = bandwidth / bytes, and 4-bit weights take 4/bits of the bytes"


EXERCISES = {
    "00": Call(check_answer),
    "00-call": Call(check_call),
    "00-predict": Prediction(
        "Per token, is one forward pass over the whole prompt measurably cheaper than a forward pass over one token "
        "(a decode step's work, its cache aside)? True or False",
        compare_per_token,
    ),
}
