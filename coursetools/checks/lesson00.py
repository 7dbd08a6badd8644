"""Lesson 00's exercises and checks: the one loading call, a pass's cost against its tokens, the nf4 model's bound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from coursetools.checks import Call, Prediction, close, placement_problem, same_shape
from helpers.limits import decode_bound_tokens_per_s
from helpers.memory import MiB
from helpers.models import pretrained_path

__all__ = ["EXERCISES", "FOOTPRINT_SLACK", "PREDICTION_FACTOR", "SYNTHETIC_NAME", "answer_problem",
           "footprint_problem", "paraphrase_problem"]

SYNTHETIC_NAME = "llama-tiny-shape"  # the smallest synthetic causal LM, so lesson 00 stays fast
# How far the memory a load took may lie from the footprint summed over the model's tensors, by device type: (share of
# the footprint, bytes). The GPU allocator rounds each tensor up to 512 bytes and bitsandbytes keeps a 16-value code
# book per 4-bit layer; a CPU's resident set also grows with the Python objects a load creates.
FOOTPRINT_SLACK = {"cuda": (0.02, 2 * MiB), "cpu": (0.05, 8 * MiB)}
PREDICTION_FACTOR = 1.5  # a predicted ratio agrees when it lies within this factor of the measured rounds' quartiles


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
    if not answer.can_generate():  # another task's head (sequence classification, ...): no next-token scores either
        return (f"{type(answer).__name__} puts another task's head on the decoder, not the one that scores the next "
                "token: load it with AutoModelForCausalLM")
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


def compare_ratio(answer: float, longer: tuple[float, float, float], tokens: int) -> tuple[bool, str]:
    """Compare a predicted time ratio (a pass over `tokens` tokens / a pass over one) with the rounds' measured ratios."""
    median, low, high = longer  # per round: time of the pass over `tokens` tokens / time of the pass over one
    agrees = low / PREDICTION_FACTOR <= answer <= high * PREDICTION_FACTOR
    why = ("each pass has a fixed cost however many tokens it carries: it reads every weight once and makes the same "
           "calls (Python, kernel launches on a GPU); a decode step pays that for one token, prefill once for the "
           "whole prompt"
           if high < tokens else
           "here a pass costs in proportion to its tokens: the arithmetic, not reading the weights, sets its time")
    return agrees, (
        f"one pass over {tokens} tokens took {median:.2f}x the time of a pass over one token (quartiles {low:.2f}-"
        f"{high:.2f}); {answer:g} is {'within' if agrees else 'outside'} a factor {PREDICTION_FACTOR:g} of them. A pass "
        f"that cost in proportion to its tokens would take {tokens}x: per token, prefill cost {median / tokens:.3g} of "
        f"a one-token pass; {why}"
    )


def check_answer(answer: Any, nf4_footprint: int, bandwidth: float, footprint: int, bits: int) -> str | None:
    """Return what is wrong with an answer meant to be the decode bound of the nf4 model measured at `nf4_footprint` bytes."""
    if close(answer, decode_bound_tokens_per_s(nf4_footprint, bandwidth)):
        return None
    if close(answer, decode_bound_tokens_per_s(int(footprint * 4 / bits), bandwidth)):
        return (f"that bound counts every weight at 4 bits, {4 / bits:.3g} of the {bits}-bit footprint; the nf4 model "
                f"measured {nf4_footprint / footprint:.3g} of it (what stays unquantized, and a scale per block of "
                "weights): use nf4_footprint, the bytes it holds")
    return "each token reads every weight once: bound = bandwidth / the bytes of the weights, here nf4_footprint"


def footprint_problem(footprint: int, taken: int | None, device: str) -> str | None:
    """Return why the memory a load took disagrees with the footprint summed over its tensors; None if it agrees."""
    if taken is None:
        return None  # not measurable here (a CPU without glibc's malloc_trim): nothing to hold the footprint to
    share, extra = FOOTPRINT_SLACK[torch.device(device).type]
    if abs(taken - footprint) <= share * footprint + extra:
        return None
    return (f"loading took {taken / MiB:.1f} MiB, the model's tensors sum to {footprint / MiB:.1f} MiB: more than "
            f"{share:.0%} + {extra / MiB:.0f} MiB apart")


def answer_problem(answer: str) -> str | None:
    """Return what is wrong with SmolLM2's answer to 'What is the capital of France?', None when it names Paris."""
    return None if "Paris" in answer else f"the answer does not name Paris: {answer!r}"


def paraphrase_problem(similarity: torch.Tensor, margin: float = 0.2) -> str | None:
    """Return why sentence 0 is not closer to its paraphrase (1) than to the unrelated sentence (2) by `margin`."""
    paraphrase, unrelated = similarity[0, 1].item(), similarity[0, 2].item()
    if paraphrase > unrelated + margin:
        return None
    return f"cosine similarity to the paraphrase {paraphrase:.2f}, to the unrelated sentence {unrelated:.2f}: not {margin} apart"


EXERCISES = {
    "00": Call(check_answer),
    "00-call": Call(check_call),
    "00-predict": Prediction(
        "How many times the time of a forward pass over one token does a forward pass over the whole prompt take? "
        "A number",
        compare_ratio,
        choices=(),
    ),
}
