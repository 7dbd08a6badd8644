"""Memory: a model's footprint, the peak memory a call needs, and the analytic size of weights at a precision."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import torch
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

__all__ = ["GiB", "MiB", "analytic_size", "layer_transients", "memory_in_use", "model_footprint", "parameter_count",
           "peak_memory", "stored_bytes"]

GiB = 2**30
MiB = 2**20

# Linux: the kernel keeps each process's resident high-water mark (VmHWM) and resets it on request
STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _glibc() -> ctypes.CDLL | None:
    """Return the C library when it is glibc (it has mallopt and malloc_trim), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


GLIBC = _glibc()
if GLIBC is not None:
    # A fixed mmap threshold (M_MMAP_THRESHOLD = -3) hands large freed blocks straight back to the OS,
    # so the resident set follows live tensors and a call's CPU peak can be measured.
    GLIBC.mallopt(-3, 128 * 1024)


def extra_bytes(param: torch.Tensor) -> int:
    """Bytes a quantized parameter keeps beside its packed data (bitsandbytes scales and nested states)."""
    extra = 0
    state = getattr(param, "quant_state", None)
    while state is not None:
        extra += state.absmax.numel() * state.absmax.element_size()
        state = getattr(state, "state2", None)
    scale = getattr(param, "SCB", None)
    if isinstance(scale, torch.Tensor):
        extra += scale.numel() * scale.element_size()
    return extra


def stored_bytes(tensor: torch.Tensor) -> int:
    """Return the bytes a tensor occupies: its inner tensors for a wrapper subclass (torchao), scales for bitsandbytes."""
    if is_traceable_wrapper_subclass(tensor):
        names, _ = tensor.__tensor_flatten__()
        return sum(stored_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size() + extra_bytes(tensor)


def model_footprint(model: torch.nn.Module) -> int:
    """Return the bytes a model's parameters and buffers occupy, quantization scales included."""
    return sum(stored_bytes(t) for t in list(model.parameters()) + list(model.buffers()))


def logical_numel(param: torch.Tensor) -> int:
    """Return how many weights a parameter holds, unpacking 4-bit storage (two weights a byte)."""
    state = getattr(param, "quant_state", None)
    return state.shape.numel() if state is not None else param.numel()


def parameter_count(model: torch.nn.Module) -> int:
    """Return the number of weights in a model, quantized or not."""
    return sum(logical_numel(p) for p in model.parameters())


def analytic_size(parameters: int, bits: float) -> int:
    """Return the bytes that `parameters` weights take at `bits` bits each (no scales, no overhead)."""
    return int(parameters * bits / 8)


@dataclass(frozen=True)
class PeakMemory:
    """Memory of one call: what was in use before, and the highest point during the call, in bytes."""

    before: int
    peak: int
    kind: str

    @property
    def added(self) -> int:
        """Bytes the call needed on top of what was already allocated."""
        return max(0, self.peak - self.before)

    def __str__(self) -> str:
        return f"peak {self.peak / MiB:.0f} MiB ({self.kind}), {self.added / MiB:.0f} MiB above the {self.before / MiB:.0f} MiB before"


def _resident_bytes() -> int:
    """Return this process's resident memory now, in bytes (psutil: Linux, macOS and Windows alike)."""
    return psutil.Process().memory_info().rss


def memory_in_use(device: str | torch.device = "cpu") -> int | None:
    """Return the bytes in use now: live tensors on a GPU (its allocator's count), the resident set on a CPU (glibc only)."""
    gc.collect()  # an object dropped earlier but kept by a reference cycle would otherwise be freed inside a measurement
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.memory_allocated(device)
    if GLIBC is None:
        return None  # without malloc_trim freed memory can stay resident, and a difference of two readings means little
    GLIBC.malloc_trim(0)
    return _resident_bytes()


def _high_water_mark_bytes() -> int:
    """Return the kernel's resident high-water mark of this process (VmHWM, Linux), in bytes."""
    match = re.search(r"^VmHWM:\s+(\d+) kB", STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{STATUS} has no VmHWM")
    return int(match.group(1)) * 1024


def _cpu_peak(fn: Callable[[], Any]) -> PeakMemory:
    """Peak resident memory of this process during fn: the kernel's high-water mark, reset first (Linux); else sampled."""
    if GLIBC is not None:
        GLIBC.malloc_trim(0)
    before = _resident_bytes()
    try:
        CLEAR_REFS.write_text("5")  # resets VmHWM to the current resident set
    except OSError:  # not Linux, or a kernel that forbids it
        return _sampled_peak(fn, before)
    fn()
    return PeakMemory(before, _high_water_mark_bytes(), "CPU resident set, high-water mark")


def _sampled_peak(fn: Callable[[], Any], before: int) -> PeakMemory:
    """Peak resident memory during fn by sampling every millisecond, where the high-water mark cannot be reset."""
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _resident_bytes())
            done.wait(0.001)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        fn()
    finally:
        done.set()
        watcher.join()
    return PeakMemory(before, max(peak[0], _resident_bytes()), "CPU resident set, sampled")


def peak_memory(fn: Callable[[], Any], device: str | torch.device = "cpu") -> PeakMemory:
    """Measure the peak memory of one call: GPU peak allocated on CUDA, the process's resident high-water mark on CPU."""
    with torch.inference_mode():
        if torch.device(device).type != "cuda":
            return _cpu_peak(fn)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return PeakMemory(before, torch.cuda.max_memory_allocated(device), "GPU peak allocated")


def layer_transients(model: torch.nn.Module, fn: Callable[[], Any], device: str | torch.device,
                     kinds: tuple[type, ...] = (torch.nn.Linear,)) -> dict[str, int]:
    """Call fn; for each module of these kinds, return the most bytes one of its calls held beyond its output.

    That is its peak during the call less what was in use when it began and less its output: buffers it makes and
    frees itself (a dequantized weight, say). GPU: the allocator's counters; CPU: the resident set (Linux's /proc).
    """
    cuda = torch.device(device).type == "cuda"
    now = partial(torch.cuda.memory_allocated, device) if cuda else _resident_bytes
    high = partial(torch.cuda.max_memory_allocated, device) if cuda else _high_water_mark_bytes
    reset = partial(torch.cuda.reset_peak_memory_stats, device) if cuda else partial(CLEAR_REFS.write_text, "5")
    names = {module: name for name, module in model.named_modules() if isinstance(module, kinds)}
    found, began = {}, {}

    def enter(module, args):
        reset()
        began[module] = now()

    def leave(module, args, output):
        held = high() - began[module] - output.numel() * output.element_size()
        found[names[module]] = max(found.get(names[module], held), held)

    hooks = [hook for m in names for hook in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    try:
        with torch.inference_mode():
            fn()
    finally:
        for hook in hooks:
            hook.remove()
    return found
