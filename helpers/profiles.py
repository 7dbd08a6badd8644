"""Profiles: one notebook, any machine; sizes come from the profile detected here (or COURSE_PROFILE)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

PROFILE_ENV = "COURSE_PROFILE"
T4_MEMORY_GIB = 15.0


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
    flash_allowed: bool = True

    def size(self, lesson: str, key: str) -> Any:
        """Return one size of one lesson, with an error naming the keys this profile has."""
        try:
            return self.sizes[lesson][key]
        except KeyError:
            known = sorted(self.sizes.get(lesson, {}))
            raise KeyError(f"profile {self.name!r} has no size {key!r} for lesson {lesson!r}; it has {known}") from None


CPU_SIZES: dict[str, dict[str, Any]] = {
    "00": {"eval_tokens": 512, "new_tokens": 16, "prompt_tokens": 64},
    "01": {
        "batch": 16,
        "length": 64,
        "paddings": [0.0, 0.25, 0.5, 0.75],
        "dtypes": ["float32", "bfloat16"],
        "large_shape": None,
    },
    "02": {
        "batch": 1,
        "heads": 8,
        "head_dim": 64,
        "seq_lens": [256, 512, 1024, 2048],
        "dtype": "float32",
        "headline_seq": 1024,
        "decoder": "smollm2-135m",
        "prompt_lens": [128, 256, 512],
        "new_tokens": 16,
    },
    "03": {"eval_tokens": 384, "prompt_tokens": 64, "new_tokens": 8, "half": "bfloat16", "large_shape": None},
    "04": {
        "capture_tokens": 256,
        "eval_tokens": 384,
        "prompt_tokens": 64,
        "new_tokens": 8,
        "thresholds": [0.0, 1.0, 3.0, 6.0, 10.0],
        "large_shape": None,
        "batches": [1],
    },
    "05": {
        "half": "float32",
        "model": "smollm2-135m",
        "contexts": [64, 192],
        "new_tokens": 4,
        "batch": 2,
        "eval_tokens": 256,
        "compile": False,
    },
    "06": {"dispatch_model": "smollm2-135m", "cpu_budget": "150MB", "gpu_budget": None, "new_tokens": 8},
}
GPU_SIZES: dict[str, dict[str, Any]] = {
    "00": {"eval_tokens": 4096, "new_tokens": 64, "prompt_tokens": 512},
    "01": {
        "batch": 64,
        "length": 512,
        "paddings": [0.0, 0.25, 0.5, 0.75],
        "dtypes": ["float32", "float16", "bfloat16"],
        "large_shape": "bert-base-shape",
    },
    "02": {
        "batch": 4,
        "heads": 16,
        "head_dim": 64,
        "seq_lens": [512, 1024, 2048, 4096, 8192, 16384, 32768],
        "dtype": "float16",
        "headline_seq": 4096,
        "decoder": "llama-1b-shape",
        "prompt_lens": [512, 1024, 2048, 4096, 8192],
        "new_tokens": 64,
    },
    "03": {
        "eval_tokens": 4096,
        "prompt_tokens": 512,
        "new_tokens": 64,
        "half": "bfloat16",
        "large_shape": "llama3-8b-shape",
    },
    "04": {
        "capture_tokens": 1024,
        "eval_tokens": 2048,
        "prompt_tokens": 512,
        "new_tokens": 16,
        "thresholds": [0.0, 1.0, 3.0, 6.0, 10.0],
        "large_shape": "llama-1b-shape",
        "batches": [1, 16],
    },
    "05": {
        "half": "bfloat16",
        "model": "llama-1b-shape",
        "contexts": [512, 4096],
        "new_tokens": 64,
        "batch": 16,
        "eval_tokens": 4096,
        "compile": True,
    },
    "06": {
        "dispatch_model": "llama-1b-shape",
        "cpu_budget": "40GiB",
        "gpu_budget": "1GiB",
        "new_tokens": 16,
        "parallel_model": "llama3-8b-shape",
        "parallel_options": ["--prompt-lens", "512", "2048", "8192", "--batches", "1", "16", "--new-tokens", "32",
                             "--warmup", "2", "--repeats", "5"],
    },
}
# A T4 (16 GB, sm75, no fast bf16) runs the GPU sizes except where these entries say otherwise.
T4_OVERRIDES: dict[str, dict[str, Any]] = {
    "00": {"eval_tokens": 2048},
    "01": {"batch": 32, "dtypes": ["float32", "float16"]},
    "02": {"seq_lens": [512, 1024, 2048, 4096, 8192, 16384], "prompt_lens": [512, 1024, 2048, 4096]},
    "03": {"eval_tokens": 2048, "half": "float16", "large_shape": "llama-1b-shape"},
    "05": {"half": "float16", "eval_tokens": 2048},
    "06": {"cpu_budget": "20GiB"},
}
T4_SIZES: dict[str, dict[str, Any]] = {
    lesson: {**sizes, **T4_OVERRIDES.get(lesson, {})} for lesson, sizes in GPU_SIZES.items()
}

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
        flash_allowed=False,
    ),
}


def detect_profile_name() -> str:
    """Return the profile this machine calls for: COURSE_PROFILE if set, else cpu, t4 (small or pre-Ampere GPU) or gpu."""
    chosen = os.environ.get(PROFILE_ENV)
    if chosen:
        if chosen not in PROFILES:
            raise ValueError(f"{PROFILE_ENV}={chosen!r} is not a profile; choose one of {sorted(PROFILES)}")
        return chosen
    if not torch.cuda.is_available():
        return "cpu"
    props = torch.cuda.get_device_properties(0)
    big_enough = props.total_memory / 2**30 > 2 * T4_MEMORY_GIB
    return "gpu" if big_enough and props.major >= 8 else "t4"


def use_profile(name: str | None = None) -> Profile:
    """Return the profile (detected when name is None) and apply its limits: T4 emulation caps memory and turns flash off."""
    profile = PROFILES[name or detect_profile_name()]
    if profile.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"profile {profile.name!r} needs a CUDA GPU and none is visible; use COURSE_PROFILE=cpu")
    if profile.memory_cap_gib is not None:
        total = torch.cuda.get_device_properties(0).total_memory / 2**30
        torch.cuda.set_per_process_memory_fraction(min(1.0, profile.memory_cap_gib / total))
    if profile.device == "cuda":
        torch.backends.cuda.enable_flash_sdp(profile.flash_allowed)
    return profile
