"""The first cell of every lesson: detect the machine, choose the profile, print the stamp, record results."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from helpers.environment import EnvironmentReport, environment_report
from helpers.profiles import Profile, use_profile
from helpers.results import record
from helpers.settings import STATIC as STATIC_ENV
from helpers.timing import RUN_TO_RUN

__all__ = ["Lesson", "progress", "start_lesson"]


@dataclass
class Lesson:
    """One lesson's context: its id, the profile it runs under, and the machine it runs on."""

    id: str
    profile: Profile
    report: EnvironmentReport

    @property
    def stamp(self) -> str:
        """The one-line hardware and version stamp of this run."""
        return self.report.stamp(self.profile.name)

    @property
    def device(self) -> str:
        """The device this lesson computes on ("cpu" or "cuda")."""
        return self.profile.device

    @property
    def memory_limit_bytes(self) -> float:
        """The memory this lesson may use: the device's, or the profile's cap where it emulates a smaller GPU."""
        cap = self.profile.memory_cap_gib or self.report.memory_gib
        return min(cap, self.report.memory_gib) * 2**30

    def size(self, key: str) -> Any:
        """Return one of this lesson's sizes under the current profile."""
        return self.profile.size(self.id, key)

    def dtype(self, key: str) -> torch.dtype:
        """Return a size that names a dtype ("bfloat16", ...) as the torch.dtype itself."""
        name = self.size(key)
        dtype = getattr(torch, str(name), None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"size {key!r} of lesson {self.id} is {name!r}, not a torch dtype name")
        return dtype

    @property
    def timing(self) -> dict[str, int]:
        """The profile's timing options, to pass on as `benchmark(..., **lesson.timing)`."""
        return {"warmup": self.profile.warmup, "repeats": self.profile.repeats}

    def record(self, **values: float | str | tuple[float, float, float]) -> None:
        """Record headline results; a ratio given as (median, low, high) of rounds gets `_low`/`_high` for run-to-run."""
        flat: dict[str, float | str] = {}
        for name, value in values.items():
            if isinstance(value, tuple):
                median, low, high = value
                flat |= {name: median, f"{name}_low": low / (1 + RUN_TO_RUN), f"{name}_high": high * (1 + RUN_TO_RUN)}
                print(f"{name}: {median:.3g}, rounds {low:.3g}-{high:.3g}, recorded interval "
                      f"{flat[name + '_low']:.3g}-{flat[name + '_high']:.3g} (rounds' range widened by run-to-run)")
            else:
                flat[name] = value
        path = record(self.id, self.stamp, **flat)
        print(f"recorded {len(values)} results in this run's {path.name}")


def quiet_optional_kernels() -> None:
    """Silence the import-time notes of optional kernels the lessons do not use, so stored outputs show results."""
    logging.getLogger("torchao").setLevel(logging.ERROR)  # prebuilt kernel libraries this torch version cannot load
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)  # torchao registers enums torch now handles itself
    logging.getLogger("bitsandbytes.backends.cpu").setLevel(logging.ERROR)  # faster CPU 4-bit kernels need `kernels`
    logging.getLogger("torch._inductor.select_algorithm").setLevel(logging.ERROR)  # one line per skipped mm choice
    # lesson 01 says so itself: PyTorch's nested tensors are a prototype, which every fast-path call would repeat
    warnings.filterwarnings("ignore", message="The PyTorch API of nested tensors is in prototype stage")
    # inductor suggests TF32 whenever a compiled graph has a float32 product (the rotary embedding's); kept exact here
    warnings.filterwarnings("ignore", message="TensorFloat32 tensor cores for float32 matrix multiplication")


def start_lesson(lesson_id: str, profile: str | None = None) -> Lesson:
    """Choose the profile (detected unless named), probe the machine, print the stamp, and return the lesson."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Loading weights" bars would bury the results in stored outputs
    quiet_optional_kernels()
    chosen = use_profile(profile)
    lesson = Lesson(lesson_id, chosen, environment_report(probe_hub=False))
    print(f"Lesson {lesson_id} | {lesson.stamp}")
    return lesson


def progress(items: Iterable, desc: str) -> Iterable:
    """Return the items with a progress bar in a live kernel; plain in a stored run, where a bar stays frozen at 0%."""
    if os.environ.get(STATIC_ENV):
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc)
