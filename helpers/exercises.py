"""One exercise a lesson: the learner writes `answer = ...`, and `check` says whether it is right and why not."""

from __future__ import annotations

import os
from typing import Any

from helpers.settings import EXERCISES_STRICT as STRICT_ENV
from helpers.syllabus import lesson_record

__all__ = ["ExerciseError", "check"]

SOLUTIONS = "workshop/solutions"


class ExerciseError(AssertionError):
    """An answer the check rejected while COURSE_EXERCISES_STRICT is set (the tests run every solution so)."""


def check(lesson_id: str, answer: Any, **context: Any) -> bool:
    """Print whether the answer to a lesson's exercise is right (with a hint if not) and return it."""
    solution = f"{SOLUTIONS}/{lesson_id}.py"
    if answer is Ellipsis:
        verdict, right = f"not answered yet: replace `...` with your answer (a solution: {solution})", False
    else:
        hint = lesson_record(lesson_id).check(answer, **context)
        right = hint is None
        verdict = "right!" if right else f"not yet: {hint}"
    print(f"exercise {lesson_id}: {verdict}")
    if not right and os.environ.get(STRICT_ENV):
        raise ExerciseError(f"exercise {lesson_id}: {verdict}")
    return right
