"""Decoding at the memory-bandwidth limit: bytes read per token, the KV cache's size, where a decode step's time goes."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PretrainedConfig, PreTrainedModel, StaticCache

from helpers.memory import stored_bytes
from helpers.timing import synchronize

__all__ = [
    "StaticGreedy",
    "TimeSplit",
    "cache_bytes",
    "kv_cache_bytes",
    "native_stderr_silenced",
    "step_split",
    "time_split",
    "top_kernels",
    "weight_bytes_per_token",
]


# Below this share of its bandwidth bound, a decode step's time is mostly work around its kernels (launches, Python,
# waits for the GPU): a difference measured there is the loop's, and names no kernel or weight format as its cause.
OVERHEAD_BOUND_SHARE = 0.20


def kv_cache_bytes(config: PretrainedConfig, tokens: int, batch: int = 1, element_bytes: int = 2) -> int:
    """Return the KV cache's bytes: layers x 2 (keys, values) x kv_heads x head_dim x element bytes x tokens x batch."""
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_hidden_layers * 2 * kv_heads * head_dim * element_bytes * tokens * batch


def cache_bytes(cache: Any) -> int:
    """Return the bytes a transformers cache (dynamic or static) holds in its key and value tensors."""
    total = 0
    for layer in cache.layers:
        for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total


def weight_bytes_per_token(model: torch.nn.Module) -> int:
    """Return the weight bytes one decode step reads: every parameter once, except an input embedding not tied to the head.

    A step looks up one row of the input embedding (a few KiB), so an untied embedding table is not read; a tied one
    is read whole as the output head.
    """
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is embedding
    return sum(stored_bytes(p) for p in model.parameters() if tied or p is not embedding)


class StaticGreedy:
    """Greedy decoding the way fast decoders do it: a static KV cache and one compiled decode step, called in a loop."""

    def __init__(self, model: PreTrainedModel, max_cache_len: int, compile_mode: str | None = "reduce-overhead"):
        self.model, self.max_cache_len = model, max_cache_len
        self.cache = StaticCache(config=model.config, max_cache_len=max_cache_len)
        self.step = torch.compile(self.next_token, mode=compile_mode) if compile_mode else self.next_token

    def next_token(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Run the model on tokens at positions, writing their keys and values into the cache; return the greedy next token."""
        logits = self.model(
            input_ids=tokens,
            position_ids=positions.unsqueeze(0),
            cache_position=positions,
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits
        return logits[:, -1].argmax(dim=-1, keepdim=True)

    def __call__(self, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
        """Return the `new_tokens` greedy tokens after the prompt: one uncompiled prefill, then compiled one-token steps."""
        length = prompt.shape[1]
        if length + new_tokens > self.max_cache_len:
            raise ValueError(f"prompt {length} + {new_tokens} new tokens exceed max_cache_len={self.max_cache_len}")
        with torch.inference_mode():
            self.cache.reset()
            token = self.next_token(prompt, torch.arange(length, device=prompt.device))
            tokens = [token]
            for position in range(length, length + new_tokens - 1):
                torch.compiler.cudagraph_mark_step_begin()  # a new step: the last step's CUDA-graph outputs may be reused
                token = self.step(token, torch.tensor([position], device=prompt.device)).clone()
                tokens.append(token)
        return torch.cat(tokens, dim=1)


@dataclass(frozen=True)
class TimeSplit:
    """One profiled call: its wall time and how much of it the device (or the CPU's operators) spent computing."""

    wall_ms: float
    busy_ms: float
    busy_what: str

    @property
    def busy_share(self) -> float:
        """Share of the wall time spent in kernels (GPU) or operators (CPU), 0-1."""
        return self.busy_ms / self.wall_ms

    @property
    def idle_ms(self) -> float:
        """Wall time outside kernels: Python, the framework, kernel launches, synchronization."""
        return self.wall_ms - self.busy_ms


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send what C++ code writes to file descriptor 2 to /dev/null (the profiler's start/stop lines); Python's stderr is untouched."""
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def time_split(fn: Callable[[], Any], device: str | torch.device) -> TimeSplit:
    """Profile one call of fn: wall time, and the summed time of GPU kernels (on CUDA) or of CPU operators' own work."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    on_gpu = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with native_stderr_silenced(), torch.inference_mode(), profile(activities=activities, acc_events=True) as prof:
        synchronize(device)
        begin = time.perf_counter()
        fn()
        synchronize(device)
        wall_ms = (time.perf_counter() - begin) * 1e3
    events = prof.events()
    if on_gpu:
        busy_us = sum(e.time_range.elapsed_us() for e in events if e.device_type == DeviceType.CUDA)
        return TimeSplit(wall_ms, busy_us / 1e3, "GPU kernels")
    busy_us = sum(e.self_cpu_time_total for e in events if e.name.startswith("aten::"))
    return TimeSplit(wall_ms, busy_us / 1e3, "CPU operators (aten)")


def step_split(run: Callable[[int], Any], new_tokens: int, device: str | torch.device) -> TimeSplit:
    """Profile run(new_tokens) and run(1) and return one decode step's share of their difference."""
    run(new_tokens)  # warm-up: compilation and first-call work stay out of the profile
    many, one = time_split(lambda: run(new_tokens), device), time_split(lambda: run(1), device)
    steps = new_tokens - 1
    return TimeSplit((many.wall_ms - one.wall_ms) / steps, (many.busy_ms - one.busy_ms) / steps, many.busy_what)


def top_kernels(fn: Callable[[], Any], device: str | torch.device, rows: int = 8) -> str:
    """Profile one call of fn and return the profiler's table of the kernels (on a CPU: operators) that took longest."""
    from torch.profiler import ProfilerActivity, profile

    on_gpu = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CUDA] if on_gpu else [ProfilerActivity.CPU]
    with native_stderr_silenced(), torch.inference_mode(), profile(activities=activities, acc_events=True) as prof:
        fn()
        synchronize(device)
    sort_by = "self_device_time_total" if on_gpu else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort_by, row_limit=rows, max_name_column_width=60)
