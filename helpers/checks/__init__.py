"""The checks of each lesson's write-the-call and predict-then-measure exercises, one module a lesson.

A lesson module defines `EXERCISES`, a dict from an exercise id such as "03-call" to a `Call` or a `Prediction`;
`helpers.exercises.check` finds them here. The lesson's first exercise (id "03") stays in the syllabus.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Call", "Prediction", "exercise"]


@dataclass(frozen=True)
class Call:
    """A write-the-call exercise: `check(answer, **context)` returns None when right, else what is wrong."""

    check: Callable[..., str | None]


@dataclass(frozen=True)
class Prediction:
    """A predict-then-measure exercise: the answer is written before the measurement and compared with it after.

    `compare(answer, **measured)` returns (whether the measurement agrees, one sentence saying what was measured and
    why). A prediction that the measurement contradicts is a result, not an error: only an answer of the wrong form
    (not one of `choices`, or not a number when `choices` is empty) fails a strict run.
    """

    question: str
    compare: Callable[..., tuple[bool, str]]
    choices: tuple[Any, ...] = (True, False)


def exercise(exercise_id: str) -> Call | Prediction:
    """Return the registered exercise with this id, e.g. "03-call", from its lesson's module (lesson03)."""
    try:
        return importlib.import_module(f"{__name__}.lesson{exercise_id[:2]}").EXERCISES[exercise_id]
    except (ModuleNotFoundError, KeyError):
        raise KeyError(
            f"no exercise {exercise_id!r}: ids are a lesson number and -call or -predict, registered in "
            f"helpers/checks/lesson{exercise_id[:2]}.py"
        ) from None
