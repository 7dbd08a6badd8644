"""One measured point of a sweep: a call's median time and peak memory, or the reason it could not run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from helpers.memory import peak_memory
from helpers.timing import benchmark

__all__ = ["SweepPoint", "measure_point"]


@dataclass(frozen=True)
class SweepPoint:
    """One backend at one sequence length: median ms and peak bytes above what was allocated before, None if it failed."""

    seq: int
    ms: float | None
    peak_bytes: int | None
    error: str = ""


def is_out_of_memory(err: Exception) -> bool:
    """Return whether an exception is an out-of-memory failure (CUDA or CPU allocator)."""
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def measure_point(call: Callable[[], object], seq: int, device: str, warmup: int, repeats: int) -> SweepPoint:
    """Measure one call's peak memory and median time; an out-of-memory or refused call becomes a point with its reason."""
    try:
        peak = peak_memory(call, device)
        timing = benchmark(call, device=device, warmup=warmup, repeats=repeats)
        point = SweepPoint(seq, timing.median, peak.added)
    except (RuntimeError, torch.OutOfMemoryError) as err:
        point = SweepPoint(seq, None, None, "out of memory" if is_out_of_memory(err) else str(err).split("\n")[0])
    if device == "cuda":
        torch.cuda.empty_cache()
    return point
