"""Profiles: one notebook, any machine; sizes come from the profile detected here (or COURSE_PROFILE)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from coursetools.settings import PROFILE as PROFILE_ENV
from coursetools.syllabus import SYLLABUS
from helpers.attention import MISSING_SDPA_BACKENDS
from helpers.tables import one_of

__all__ = ["PROFILES", "Profile", "allow_sdpa_backends", "detect_profile_name", "real_sdpa_switches", "use_profile"]

T4_MEMORY_GIB = 15.0
SMALLEST_GPU_GIB = 14.0  # a Colab T4 reports 14.6 GiB; the t4 sizes are made to fit in it
T4_COMPUTE_CAPABILITY = (7, 5)
# The oldest GPU each SDPA backend runs on, from PyTorch's checks in aten/src/ATen/native/transformers/cuda/sdp_utils.cpp
# (check_*_hardware_support): flash [sm80, sm121], memory-efficient [sm50, sm121], cuDNN [sm80, sm121]; math everywhere.
SDPA_MIN_COMPUTE_CAPABILITY = {"math": (0, 0), "efficient": (5, 0), "flash": (8, 0), "cudnn": (8, 0)}
T4_SDPA_BACKENDS = tuple(name for name, oldest in SDPA_MIN_COMPUTE_CAPABILITY.items() if T4_COMPUTE_CAPABILITY >= oldest)


@dataclass(frozen=True)
class Profile:
    """Where the course runs and how big each lesson's experiments are there."""

    name: str
    device: str
    dtype: torch.dtype
    warmup: int
    repeats: int
    sizes: dict[str, dict[str, Any]] = field(default_factory=dict)
    memory_cap_gib: float | None = None
    sdpa_backends: tuple[str, ...] | None = None  # the SDPA backends an emulated GPU has; None: every one this GPU runs
    compute_capability: tuple[int, int] | None = None  # an emulated GPU's; None: this GPU's own

    def size(self, lesson: str, key: str) -> Any:
        """Return one size of one lesson, with a ValueError naming the sizes the lesson has when it has no such size."""
        sizes = self.sizes[one_of("lesson", lesson, self.sizes)]
        if key not in sizes:
            raise ValueError(f"profile {self.name!r} has no size {key!r} for lesson {lesson!r}; use one of {sorted(sizes)}")
        return sizes[key]


CPU_SIZES: dict[str, dict[str, Any]] = {record.id: record.cpu for record in SYLLABUS}
GPU_SIZES: dict[str, dict[str, Any]] = {record.id: record.gpu for record in SYLLABUS}
T4_SIZES: dict[str, dict[str, Any]] = {record.id: {**record.gpu, **record.t4} for record in SYLLABUS}

PROFILES: dict[str, Profile] = {
    "cpu": Profile("cpu", "cpu", torch.float32, warmup=1, repeats=5, sizes=CPU_SIZES),
    "gpu": Profile("gpu", "cuda", torch.bfloat16, warmup=3, repeats=10, sizes=GPU_SIZES),
    "t4": Profile(
        "t4",
        "cuda",
        torch.float16,
        warmup=3,
        repeats=10,
        sizes=T4_SIZES,
        memory_cap_gib=T4_MEMORY_GIB,
        sdpa_backends=T4_SDPA_BACKENDS,
        compute_capability=T4_COMPUTE_CAPABILITY,
    ),
}


def detect_profile_name() -> str:
    """Return the profile this machine calls for: COURSE_PROFILE if set, else cpu, t4 (small or pre-Ampere GPU) or gpu.

    A GPU too small even for the t4 sizes (under SMALLEST_GPU_GIB) gets the cpu profile.
    """
    chosen = os.environ.get(PROFILE_ENV)
    if chosen:
        if chosen not in PROFILES:
            raise ValueError(f"{PROFILE_ENV}={chosen!r} is not a profile; choose one of {sorted(PROFILES)}")
        return chosen
    if not torch.cuda.is_available():
        return "cpu"
    props = torch.cuda.get_device_properties(0)
    gib = props.total_memory / 2**30
    if gib < SMALLEST_GPU_GIB:
        return "cpu"
    return "gpu" if gib > 2 * T4_MEMORY_GIB and props.major >= 8 else "t4"


# torch's switch for each backend; sdpa_kernel and torch.backends.cuda.enable_*_sdp both call these
SDPA_SWITCHES = {"math": "_set_sdp_use_math", "efficient": "_set_sdp_use_mem_efficient",
                 "flash": "_set_sdp_use_flash", "cudnn": "_set_sdp_use_cudnn"}
TORCH_SWITCHES = {name: getattr(torch._C, setter) for name, setter in SDPA_SWITCHES.items()}


def allow_sdpa_backends(names: tuple[str, ...], gpu: str = "this GPU") -> None:
    """Let only these SDPA backends run ("math", "efficient", "flash", "cudnn"), as a GPU that has no others would.

    The others stay off also where a lesson switches them on (`sdpa_kernel`, `enable_flash_sdp`): their torch switches
    are wrapped to keep them off, as that GPU's own checks would refuse them. Allowing every backend undoes it.
    """
    unknown = set(names) - set(SDPA_MIN_COMPUTE_CAPABILITY)
    if unknown:
        raise ValueError(f"unknown SDPA backends {sorted(unknown)}; choose from {sorted(SDPA_MIN_COMPUTE_CAPABILITY)}")
    MISSING_SDPA_BACKENDS.clear()
    for name, setter in SDPA_SWITCHES.items():
        switch = TORCH_SWITCHES[name]
        if name in names:
            setattr(torch._C, setter, switch)
            switch(True)
        else:
            setattr(torch._C, setter, lambda enabled, switch=switch: switch(False))
            switch(False)
            oldest = ".".join(map(str, SDPA_MIN_COMPUTE_CAPABILITY[name]))
            MISSING_SDPA_BACKENDS[name] = f"not on {gpu}: PyTorch's {name} kernel needs sm {oldest} or newer"


@contextmanager
def real_sdpa_switches() -> Iterator[None]:
    """Inside, torch's SDPA switches act as on a GPU that has every backend (an emulated GPU's wrappers are lifted).

    A check that enters a learner's `sdpa_kernel(...)` to read what it allows uses it: under T4 emulation the flash and
    cuDNN switches otherwise stay off whatever the call asks. The wrappers come back on leaving, and the switches are
    as the call's own exit restored them.
    """
    wrapped = {setter: getattr(torch._C, setter) for setter in SDPA_SWITCHES.values()}
    for name, setter in SDPA_SWITCHES.items():
        setattr(torch._C, setter, TORCH_SWITCHES[name])
    try:
        yield
    finally:
        for setter, switch in wrapped.items():
            setattr(torch._C, setter, switch)


def use_profile(name: str | None = None) -> Profile:
    """Return the profile (detected when name is None) and apply its limits: T4 emulation caps memory and keeps the T4's SDPA kernels."""
    profile = PROFILES[one_of("profile", name, PROFILES) if name else detect_profile_name()]
    if profile.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"profile {profile.name!r} needs a CUDA GPU and none is visible; use COURSE_PROFILE=cpu")
    if profile.memory_cap_gib is not None:
        total = torch.cuda.get_device_properties(0).total_memory / 2**30
        torch.cuda.set_per_process_memory_fraction(min(1.0, profile.memory_cap_gib / total))
    if profile.device == "cuda":
        emulated = f"an emulated T4 (sm {'.'.join(map(str, T4_COMPUTE_CAPABILITY))})"
        allow_sdpa_backends(profile.sdpa_backends or tuple(SDPA_MIN_COMPUTE_CAPABILITY), emulated)
    return profile
