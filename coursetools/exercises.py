"""Exercises: the learner writes `answer = ...`, and `check` says whether it is right and why not.

Each lesson has three: a first exercise (id "03"), a write-the-call exercise ("03-call") and a predict-then-measure
exercise ("03-predict"), all checked in its module `coursetools/checks/lesson03.py`. Solutions: `workshop/solutions/<id>.py`.
"""

from __future__ import annotations

import numbers
import os
import re
from typing import Any

from coursetools.checks import Prediction, exercise
from coursetools.settings import EXERCISES_STRICT as STRICT_ENV

__all__ = ["ExerciseError", "check", "exercise_ids", "is_right"]

SOLUTIONS = "workshop/solutions"


class ExerciseError(AssertionError):
    """An answer the check rejected while COURSE_EXERCISES_STRICT is set (the tests run every solution so)."""


def form_error(prediction: Prediction, answer: Any) -> str | None:
    """Return what is wrong with the form of a prediction, or None when it is one the measurement can settle."""
    if prediction.choices:
        if any(answer is choice or (type(answer) is type(choice) and answer == choice) for choice in prediction.choices):
            return None
        return f"answer with one of {', '.join(repr(c) for c in prediction.choices)}"
    if isinstance(answer, numbers.Real) and not isinstance(answer, bool):
        return None
    return "answer with a number"


def verdict_of(exercise_id: str, answer: Any, context: dict[str, Any]) -> tuple[str, bool, bool]:
    """Return (the printed verdict, whether it counts as right, whether a strict run must fail) for an answer."""
    found = exercise(exercise_id)  # first: an unknown id is an error even before the exercise is answered
    if answer is Ellipsis:
        return f"not answered yet: replace `...` with your answer (a solution: {SOLUTIONS}/{exercise_id}.py)", False, True
    if isinstance(found, Prediction):
        problem = form_error(found, answer)
        if problem:
            return f"not yet: {problem} ({found.question})", False, True
        agrees, measured = found.compare(answer, **context)  # None: nothing measured here settles it
        said = {True: "the measurement agrees", False: "the measurement says otherwise",
                None: "nothing here settles it"}[agrees]
        return f"you predicted {answer!r}; {said}: {measured}", agrees is True, False
    hint = found.check(answer, **context)
    return ("right!", True, False) if hint is None else (f"not yet: {hint}", False, True)


def check(exercise_id: str, answer: Any, **context: Any) -> None:
    """Print whether the answer to an exercise is right, with a hint if not (nothing returned, so a cell shows no value)."""
    verdict, _, fails = verdict_of(exercise_id, answer, context)
    print(f"exercise {exercise_id}: {verdict}")
    if fails and os.environ.get(STRICT_ENV):
        raise ExerciseError(f"exercise {exercise_id}: {verdict}")


def is_right(exercise_id: str, answer: Any, **context: Any) -> bool:
    """Return whether an answer counts as right, printing nothing (for tests and graders)."""
    return verdict_of(exercise_id, answer, context)[1]


def exercise_ids(cells: list[str]) -> dict[int, str]:
    """Map the index of each exercise cell (`name = ...`) to its id, read from the first later `check("ID", name` call."""
    ids = {}
    for index, source in enumerate(cells):
        first = re.match(r"(\w+) = \.\.\.", source)
        if first is None:
            continue
        call = re.compile(rf'check\("([0-9]{{2}}(?:-call|-predict)?)", {first.group(1)}\b')
        found = next((m.group(1) for later in cells[index + 1 :] if (m := call.search(later))), None)
        if found:
            ids[index] = found
    return ids
