"""The results format, written and read in this one module: each lesson's JSON file of headline values.

A lesson's file `NN.json` holds {"lesson": "NN", "stamp": ..., "values": {name: value}}; a ratio recorded as
(median, q1, q3) of rounds is stored as `name`, `name_low` and `name_high`, its interval widened by run-to-run.
Files written before the quartile rule lack `"interval": "quartiles"`: their intervals are the lowest and highest round.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from coursetools.settings import RESULTS_DIR as RESULTS_ENV
from helpers.cache import cache_dir
from helpers.timing import RUN_TO_RUN  # README "Results" says more

LOW, HIGH = "_low", "_high"
INTERVAL = "quartiles"  # what a recorded interval spans: the middle half of the rounds (helpers.timing.spread)


def results_dir() -> Path:
    """Return where lessons write their results (COURSE_RESULTS_DIR, else the cache's results folder)."""
    folder = Path(os.environ.get(RESULTS_ENV) or cache_dir() / "results")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def widened(name: str, ratio: tuple[float, float, float]) -> dict[str, float]:
    """Return a ratio's stored entries: its median, and its rounds' quartiles widened by RUN_TO_RUN on each side."""
    median, low, high = ratio
    return {name: median, name + LOW: low / (1 + RUN_TO_RUN), name + HIGH: high * (1 + RUN_TO_RUN)}


def record(lesson: str, stamp: str, **values: float | str | tuple[float, float, float]) -> Path:
    """Add headline values (name=value, or a (median, q1, q3) ratio) to a lesson's results file; return its path."""
    unreadable = [name for name, value in values.items() if not isinstance(value, str)
                  and not all(isinstance(v, int | float) and math.isfinite(v)
                              for v in (value if isinstance(value, tuple) else (value,)))]
    if unreadable:  # json would write NaN, which JSON readers refuse; checked before anything is written
        raise ValueError(f"not finite, so not recorded: {unreadable}; leave such a value out and print why instead")
    flat: dict[str, float | str] = {}
    for name, value in values.items():
        flat |= widened(name, value) if isinstance(value, tuple) else {name: value}
    path = results_dir() / f"{lesson}.json"
    data = json.loads(path.read_text()) if path.exists() else {"lesson": lesson, "values": {}}
    data["stamp"], data["interval"] = stamp, INTERVAL
    data["values"].update(flat)
    path.write_text(json.dumps(data, indent=2, sort_keys=True))
    return path


def load_results(folder: Path | None = None) -> list[dict]:
    """Return every lesson's recorded results (files named by lesson number), ordered by lesson."""
    folder = folder or results_dir()
    return [json.loads(path.read_text()) for path in sorted(folder.glob("[0-9]*.json"))]


def is_bound(values: dict, key: str) -> bool:
    """Return whether a stored key is the low or high end of another key's interval."""
    return key.endswith((LOW, HIGH)) and key.rsplit("_", 1)[0] in values


def interval(values: dict, key: str) -> tuple[float, float] | None:
    """Return the recorded interval (low, high) of a stored value, None when it was recorded without one."""
    low, high = values.get(key + LOW), values.get(key + HIGH)
    return None if low is None or high is None else (low, high)
