"""The first cell of every lesson: detect the machine, choose the profile, print the stamp, record results."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from coursetools.environment import EnvironmentReport, environment_report
from coursetools.profiles import Profile, use_profile
from coursetools.results import HIGH, LOW, record, widened
from coursetools.settings import STAMP
from coursetools.syllabus import lesson_record

__all__ = ["Lesson", "start_lesson"]


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

    @property
    def capability(self) -> tuple[int, int]:
        """The compute capability kernels are chosen for: an emulated GPU's, this GPU's, or (0, 0) on a CPU."""
        if self.device != "cuda":
            return (0, 0)
        return self.profile.compute_capability or torch.cuda.get_device_capability()

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

    def measurements(self) -> list[str]:
        """Return, sorted, the measurements the lesson table gives rounds or warm-ups for under any profile."""
        record = lesson_record(self.id)
        keys = {**record.cpu, **record.gpu, **record.t4}
        return sorted({key.rsplit("_", 1)[0] for key in keys if key.endswith(("_rounds", "_warmup"))})

    def timing_key(self, measurement: str, kind: str) -> str:
        """Return the lesson table's key for a measurement's "rounds" or "warmup", rejecting a measurement it lacks."""
        if not measurement:
            return kind
        if measurement not in self.measurements():
            raise ValueError(f"lesson {self.id} has no measurement {measurement!r} with rounds or warm-ups; use one "
                             f"of {self.measurements()}, or none for the lesson's own")
        return f"{measurement}_{kind}"

    def rounds(self, measurement: str = "") -> int:
        """Return a measurement's timed rounds: the lesson table's `<measurement>_rounds`, else the profile's repeats."""
        return self.profile.sizes[self.id].get(self.timing_key(measurement, "rounds"), self.profile.repeats)

    def warmup(self, measurement: str = "") -> int:
        """Return a measurement's untimed warm-up calls: the lesson table's `<measurement>_warmup`, else the profile's."""
        return self.profile.sizes[self.id].get(self.timing_key(measurement, "warmup"), self.profile.warmup)

    def record(self, **values: float | str | tuple[float, float, float]) -> None:
        """Record headline results; a ratio given as (median, q1, q3) of rounds gets an interval widened by run-to-run."""
        for name, value in values.items():
            if isinstance(value, tuple):
                median, low, high = value
                stored = widened(name, value)
                print(f"{name}: {median:.3g}, quartiles {low:.3g}-{high:.3g}, recorded interval "
                      f"{stored[name + LOW]:.3g}-{stored[name + HIGH]:.3g} (quartiles widened by run-to-run)")
        path = record(self.id, self.stamp, **values)
        print(f"recorded {len(values)} results in this run's {path.name}")

# bitsandbytes 0.50.2 logs this warning at import (bitsandbytes/backends/cpu/ops.py, on CPUs with AVX512-BF16) when the
# optional `kernels` package, which would download a faster CPU 4-bit kernel from the Hub, is not installed; the course
# does not install it, so the line says nothing to a learner
KERNELS_NOTE_LOGGER = "bitsandbytes.backends.cpu.ops"
KERNELS_NOTE = "Failed to load CPU gemm_4bit_forward from kernels-community"


def not_kernels_note(record: logging.LogRecord) -> bool:
    """Let every log record through except bitsandbytes' note that the optional `kernels` package is missing."""
    return not str(record.msg).startswith(KERNELS_NOTE)


def quiet_bitsandbytes_kernels_note() -> None:
    """Drop that one bitsandbytes note (before bitsandbytes is imported); its other warnings still show."""
    logging.getLogger(KERNELS_NOTE_LOGGER).addFilter(not_kernels_note)  # the same function again adds nothing


def quiet_optional_kernels() -> None:
    """Silence the import-time notes of optional kernels the lessons do not use, so stored outputs show results."""
    logging.getLogger("torchao").setLevel(logging.ERROR)  # prebuilt kernel libraries this torch version cannot load
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)  # torchao registers enums torch now handles itself
    quiet_bitsandbytes_kernels_note()
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
    lesson = Lesson(lesson_record(lesson_id).id, chosen, environment_report(probe_hub=False))
    os.environ[STAMP] = lesson.stamp  # the placement runs a lesson starts (coursetools.placements) record it too
    print(f"Lesson {lesson_id} | {lesson.stamp}")
    return lesson

