"""The checks of every lesson's three exercises, one module a lesson: `coursetools/checks/lessonNN.py`.

A lesson module defines `EXERCISES`, a dict from each exercise id ("03", "03-call", "03-predict") to a `Call` or a
`Prediction`; `exercise` finds an id in the module its first two digits name, the one way checks are found.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SHAPE = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")  # config keys that tell course models apart


@dataclass(frozen=True)
class Call:
    """A write-the-call exercise: `check(answer, **context)` returns None when right, else what is wrong."""

    check: Callable[..., str | None]


@dataclass(frozen=True)
class Prediction:
    """A predict-then-measure exercise: the answer is written before the measurement and compared with it after.

    `compare(answer, **measured)` returns (whether the measurement agrees, or None where nothing measured here settles
    it, one sentence saying what was measured and why). A prediction that the measurement contradicts is a result, not
    an error: only an answer of the wrong form (not one of `choices`, or not a number when `choices` is empty) fails a
    strict run.
    """

    question: str
    compare: Callable[..., tuple[bool | None, str]]
    choices: tuple[Any, ...] = (True, False)


def exercise_registry() -> dict[str, Call | Prediction]:
    """Return every registered exercise by id, from all lesson modules (coursetools/checks/lessonNN.py)."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("lesson"))
    return {key: found for name in names for key, found in importlib.import_module(f"{__name__}.{name}").EXERCISES.items()}


def exercise(exercise_id: str) -> Call | Prediction:
    """Return the registered exercise with this id, e.g. "03" or "03-call", from its lesson's module (lesson03)."""
    try:
        return importlib.import_module(f"{__name__}.lesson{exercise_id[:2]}").EXERCISES[exercise_id]
    except (ModuleNotFoundError, KeyError):
        raise ValueError(
            f"no exercise {exercise_id!r}: ids are a lesson number, alone or with -call or -predict, registered in "
            f"coursetools/checks/lessonNN.py; choose one of {sorted(exercise_registry())}"
        ) from None


def close(answer: Any, expected: float, tolerance: float = 0.01) -> bool:
    """Return whether a numeric answer lies within a relative tolerance of the expected value."""
    return isinstance(answer, int | float) and math.isclose(float(answer), expected, rel_tol=tolerance)


def same_shape(model: Any, name: str) -> bool:
    """Return whether a loaded model's config has the shape (SHAPE keys) of the course model `name`."""
    from helpers.models import model_config

    expected = model_config(name)
    return all(getattr(model.config, key) == getattr(expected, key) for key in SHAPE)


def placement_problem(model: Any, device: str) -> str | None:
    """Return what is wrong with where a model's weights are for a lesson computing on `device`, None if nothing."""
    import torch

    placed = sorted({str(p.device) for p in model.parameters()})
    if len(placed) > 1:
        return f"its weights are split over {placed}: pass device_map=lesson.device to place it whole"
    if torch.device(placed[0]).type != torch.device(device).type:
        return (f"its weights are on {placed[0]}, the lesson computes on {device}: pass device_map=lesson.device "
                "(without device_map the model loads on the CPU)")
    return None
