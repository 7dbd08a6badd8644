"""Lesson 02's exercises: the `sdpa_kernel` call that tries flash before cuDNN, and the math kernel's peak memory."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.attention import SDPBackend

from coursetools.checks import Call, Prediction, close
from coursetools.profiles import real_sdpa_switches
from helpers.attention import allowed_backends, priority_order

WANTED = ["flash", "cudnn"]  # allowed, and tried in this order
TIE = 0.05  # a measured multiple within 5% of the threshold is a tie (CPU resident-set peaks move by a few percent)
THRESHOLD = 2.0


def check_call(answer: Any) -> str | None:
    """Return what is wrong with a context manager meant to allow only flash and cuDNN attention, flash tried first."""
    if isinstance(answer, list | SDPBackend):
        return "that is what to pass: write the call itself, sdpa_kernel([...], set_priority=...)"
    func = getattr(answer, "func", None)
    if func is None and hasattr(answer, "gen"):
        return "this context manager was used already (it works once): run the exercise cell again, then this check"
    name = f"{getattr(func, '__module__', '')}.{getattr(func, '__name__', '')}"
    if name == "torch.backends.cuda.sdp_kernel":
        return ("that is the deprecated torch.backends.cuda.sdp_kernel (and it has no priority): use "
                "torch.nn.attention.sdpa_kernel")
    if name != "torch.nn.attention.sdpa_kernel":
        return "write a call of torch.nn.attention.sdpa_kernel (imported above as sdpa_kernel)"
    args, kwds = answer.args, answer.kwds  # entering the context manager deletes them
    said_priority = kwds.get("set_priority", args[1] if len(args) > 1 else False)
    try:
        with real_sdpa_switches(), answer:  # under T4 emulation flash and cuDNN would stay off whatever the call says
            allowed, order = allowed_backends(), priority_order()
    except (AssertionError, TypeError) as err:  # sdpa_kernel rejects a backends argument of the wrong type so
        return f"sdpa_kernel refused the arguments: {err}"
    if sorted(allowed) != sorted(WANTED):
        return (f"inside it SDPA may use {sorted(allowed)}; allow exactly SDPBackend.FLASH_ATTENTION and "
                "SDPBackend.CUDNN_ATTENTION")
    if order[: len(WANTED)] != WANTED:
        if not said_priority:
            return (f"the right backends, but without set_priority=True the list's order is ignored and SDPA keeps "
                    f"this machine's order {order}: pass set_priority=True")
        return f"with set_priority=True the list's order is the priority, and it gave {order}: put flash first"
    return None


def compare_peak(answer: bool, peak_bytes: int | None, scores_bytes: int,
                 stored_scores_bytes: int) -> tuple[bool | None, str]:
    """Compare 'the math kernel's peak is more than twice its score matrix at the input precision' with the measurement."""
    if peak_bytes is None:
        return None, "the math kernel did not run at this length here (see the sweep)"
    multiple = peak_bytes / scores_bytes
    wider = stored_scores_bytes / scores_bytes
    held = peak_bytes / stored_scores_bytes
    measured = (f"the math kernel's peak was {peak_bytes / 2**20:.0f} MiB, {multiple:.2f}x its score matrix at the "
                f"input precision ({scores_bytes / 2**20:.0f} MiB)")
    if abs(multiple - THRESHOLD) <= TIE * THRESHOLD:
        return True, f"{measured}: within {TIE:.0%} of {THRESHOLD:g}x, a tie, so either answer stands"
    more = multiple > THRESHOLD
    why = f"at its peak it held {held:.2f} score-sized matrices as it stores them"
    if wider > 1:
        why = f"it stores each score in {wider:g}x the bytes of an input value (float32), and {why}"
    return answer == more, f"{measured}, {'more' if more else 'less'} than {THRESHOLD:g}x: {why}"


AGREEMENT_TOLERANCE = 1e-4  # attention from scratch against SDPA, float32: a real bug (no scale, no mask) is far larger


def agreement_problem(difference: float, tolerance: float = AGREEMENT_TOLERANCE) -> str | None:
    """Return how far attention from scratch is from SDPA's when its largest difference exceeds the tolerance."""
    if difference < tolerance:
        return None
    return f"attention from scratch differs from F.scaled_dot_product_attention by {difference:.1e} (tolerance {tolerance:g})"


def priority_problem(picked: dict[bool, str], order: list[str], listed: list[str], runs_here: list[str]) -> str | None:
    """Return where the kernel SDPA picked inside sdpa_kernel(listed, set_priority=...) breaks the priority rule."""
    expected = {False: next(name for name in order if name in listed and name in runs_here),  # SDPA's own order
                True: next(name for name in listed if name in runs_here)}  # the list's order
    wrong = [f"set_priority={key}: SDPA ran {picked[key]}, the rule says {expected[key]}"
             for key in (False, True) if picked[key] != expected[key]]
    return "; ".join(wrong) or None


def expected_score_dtype(dtype: torch.dtype, half_reduction: bool) -> torch.dtype:
    """Return the dtype the math kernel computes scores in, by torch's rule (float32 for half inputs unless allowed)."""
    # _scaled_dot_product_attention_math (aten/src/ATen/native/transformers/attention.cpp) converts float16 and bfloat16
    # query, key and value to float32 unless allowFP16BF16ReductionMathSDP() (default false); other dtypes stay as they are
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) and not half_reduction else dtype


def score_dtype_problem(seen: dict[tuple[torch.dtype, bool], torch.dtype]) -> str | None:
    """Return where the dtype the math kernel's softmax ran in, per (input dtype, half reduction allowed), breaks the rule."""
    wrong = [f"{dtype} inputs, half reduction {'allowed' if allowed else 'not allowed'}: softmax in {ran}, the rule "
             f"says {expected_score_dtype(dtype, allowed)}"
             for (dtype, allowed), ran in seen.items() if ran != expected_score_dtype(dtype, allowed)]
    return "; ".join(wrong) or None


def math_peak_problem(peaks: dict[int, int], batch: int, heads: int, score_element: int) -> str | None:
    """Return the lengths where the math kernel's peak (bytes above its inputs) held less than scores and weights together."""
    short = [f"seq {seq}: {peak} bytes, below two score matrices ({2 * batch * heads * seq * seq * score_element})"
             for seq, peak in peaks.items() if peak < 2 * batch * heads * seq * seq * score_element]
    return "; ".join(short) or None


SCORES_SEQ = 65536  # the sequence length of the score matrix in the first exercise


def check_answer(answer: Any, batch: int, heads: int, element: int) -> str | None:
    """Bytes of the math kernel's score matrix at SCORES_SEQ tokens."""
    if close(answer, batch * heads * SCORES_SEQ * SCORES_SEQ * element):
        return None
    return (f"scores are (batch, heads, {SCORES_SEQ}, {SCORES_SEQ}) values of `element` bytes each (the bytes per score "
            "as the math kernel stores it); answer in bytes")


EXERCISES = {
    "02": Call(check_answer),
    "02-call": Call(check_call),
    "02-predict": Prediction(
        "Is the math kernel's measured peak memory at the headline length more than twice its score matrix at the "
        "input precision (batch x heads x seq^2 x element bytes)? True or False",
        compare_peak,
    ),
}
