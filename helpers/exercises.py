"""One exercise a lesson: the learner writes `answer = ...`, and `check` says whether it is right and why not."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

STRICT_ENV = "COURSE_EXERCISES_STRICT"
SOLUTIONS = "workshop/solutions"
WEIGHT, ABSMAX = 0.3, 1.2
SCORES_SEQ = 8192


class ExerciseError(AssertionError):
    """An answer the check rejected while COURSE_EXERCISES_STRICT is set (the tests run every solution so)."""


def close(answer: Any, expected: float, tolerance: float = 0.01) -> bool:
    """Return whether a numeric answer lies within a relative tolerance of the expected value."""
    return isinstance(answer, int | float) and math.isclose(float(answer), expected, rel_tol=tolerance)


def check_00(answer: Any, footprint: int, bits: int, bandwidth: float) -> str | None:
    """Decode bound on this machine if the same weights took 4 bits each instead of `bits`."""
    from helpers.limits import decode_bound_tokens_per_s

    expected = decode_bound_tokens_per_s(int(footprint * 4 / bits), bandwidth)
    if close(answer, expected):
        return None
    return "each token reads every weight once: bound = bandwidth / bytes, and 4-bit weights take 4/bits of the bytes"


def check_01(answer: Any, lengths: list[int], padded_to: int) -> str | None:
    """Share of attention-score work spent on padding: scores grow with length squared."""
    real = sum(n * n for n in lengths)
    expected = 1 - real / (len(lengths) * padded_to * padded_to)
    if close(answer, expected):
        return None
    if close(answer, 1 - sum(lengths) / (len(lengths) * padded_to)):
        return "that is the share of padded tokens; attention scores are length x length per sentence"
    return "each sentence computes padded_to**2 scores but needs only length**2 of them; give the wasted share (0-1)"


def check_02(answer: Any, batch: int, heads: int, element: int) -> str | None:
    """Bytes of the math kernel's score matrix at SCORES_SEQ tokens."""
    if close(answer, batch * heads * SCORES_SEQ * SCORES_SEQ * element):
        return None
    return f"scores are (batch, heads, {SCORES_SEQ}, {SCORES_SEQ}) values of `element` bytes each; answer in bytes"


def check_03(answer: Any) -> str | None:
    """Index of the NF4 code that stores WEIGHT in a block whose absmax is ABSMAX."""
    from helpers.quantization import code_book

    codes = code_book("nf4")
    expected = int((codes - WEIGHT / ABSMAX).abs().argmin())
    if isinstance(answer, int) and not isinstance(answer, bool) and answer == expected:
        return None
    if isinstance(answer, int) and answer == int((codes - WEIGHT).abs().argmin()):
        return "divide the weight by the block's absmax first: codes live between -1 and 1"
    return f"scale {WEIGHT} by the absmax {ABSMAX}, then take the index of the nearest value in code_book('nf4')"


def check_04(answer: Any, x: Any) -> str | None:
    """Count of input columns LLM.int8() sends through the 16-bit product at threshold 3.0."""
    from helpers.outliers import outlier_features

    expected = len(outlier_features(x, 3.0))
    if isinstance(answer, int) and not isinstance(answer, bool) and answer == expected:
        return None
    return "a column is an outlier when any token's |value| in it reaches the threshold; count such columns of x"


def check_05(answer: Any, ran: dict, long: int) -> str | None:
    """The measured combination with the least weights + prefill peak memory at the longest context."""
    expected = min(ran, key=lambda key: ran[key].footprint_bytes + ran[key].peak_bytes[long])
    if answer == expected:
        return None
    if answer not in ran:
        return f"answer with one key of `ran`, a (weights, attention) pair such as {next(iter(ran))!r}"
    return "add each combination's footprint_bytes and its peak_bytes[long], and take the smallest"


def check_06(answer: Any, model: Any) -> str | None:
    """Smallest whole-GiB budget for GPU 0 that, with GPU 1 at 80 GiB, places every module of the bf16 model on the two GPUs."""
    from helpers.placement import BudgetError, plan

    def fits(gib: int) -> bool:
        try:
            device_map = plan(model, {0: f"{gib}GiB", 1: "80GiB"}, precision="bf16")
        except BudgetError:
            return False
        return set(device_map.values()) <= {0, 1}

    if not isinstance(answer, int) or isinstance(answer, bool) or answer < 1:
        return "answer with a whole number of GiB, such as 60"
    if not fits(answer):
        return f"with {answer} GiB on GPU 0 the model does not fit on the two GPUs: go higher"
    if answer > 1 and fits(answer - 1):
        return f"{answer - 1} GiB is enough too: go lower"
    return None


CHECKS: dict[str, Callable[..., str | None]] = {
    "00": check_00,
    "01": check_01,
    "02": check_02,
    "03": check_03,
    "04": check_04,
    "05": check_05,
    "06": check_06,
}


def check(lesson_id: str, answer: Any, **context: Any) -> bool:
    """Print whether the answer to a lesson's exercise is right (with a hint if not) and return it."""
    solution = f"{SOLUTIONS}/{lesson_id}.py"
    if answer is Ellipsis:
        verdict, right = f"not answered yet: replace `...` with your answer (a solution: {solution})", False
    else:
        hint = CHECKS[lesson_id](answer, **context)
        right = hint is None
        verdict = "right!" if right else f"not yet: {hint}"
    print(f"exercise {lesson_id}: {verdict}")
    if not right and os.environ.get(STRICT_ENV):
        raise ExerciseError(f"exercise {lesson_id}: {verdict}")
    return right
