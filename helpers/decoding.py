"""Decoding at the memory-bandwidth limit: bytes read per token, the KV cache's size, where a decode step's time goes."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch._functorch._aot_autograd.subclass_parametrization import unwrap_tensor_subclass_parameters
from torch.utils._python_dispatch import is_traceable_wrapper_subclass
from transformers import PretrainedConfig, PreTrainedModel, StaticCache

from helpers.memory import stored_bytes
from helpers.tables import table
from helpers.timing import ALL_GPUS, synchronize

__all__ = ["OVERHEAD_BOUND_SHARE", "RUNTIME_CALLS", "StaticGreedy", "bound_share", "cache_bytes", "compile_events",
           "counted", "kv_cache_bytes", "runtime_calls_per_step", "step_split", "top_kernels",
           "use_compiler_settings", "weight_bytes_per_token"]


# Below this share of its bandwidth bound, reading the weights is a small part of a decode step (the rest: launches,
# Python, waits for the GPU, kernels below their bandwidth): a difference measured there is not the bytes a format saves.
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


# The compiler settings every weight format is compiled with here: torchao's recommended_inductor_config_setter()
# (torchao/quantization/utils.py), except that inductor names every kernel `triton_` in its source, so identical kernels
# of different graphs share compiled code ("to maximize caching opportunities", torch/_inductor/codegen/triton.py; a
# profile may then list them under that one name), and coordinate descent tries fewer directions: both shorten
# compiling. Coordinate-descent tuning also lets inductor turn a batch-1 matrix product into a reduction fused with the
# weights' conversion (torch/_inductor/decomposition.py).
COMPILER_SETTINGS = {"coordinate_descent_tuning": True, "coordinate_descent_check_all_directions": False,
                     "force_fuse_int_mm_with_mul": True, "fx_graph_cache": True, "triton.unique_kernel_names": False}


def use_compiler_settings() -> dict[str, Any]:
    """Apply COMPILER_SETTINGS to torch._inductor.config for everything compiled later in this process; return them."""
    import torch._inductor.config as inductor_config

    for name, value in COMPILER_SETTINGS.items():
        setattr(inductor_config, name, value)  # its keys are dotted ("triton.unique_kernel_names"); unknown ones raise
    return dict(COMPILER_SETTINGS)


def bound_share(tokens_per_s: float, bytes_per_token: int, bandwidth: float) -> tuple[float, str]:
    """Return a decode speed's share of its bandwidth bound (0-1) and how to read it: overhead-bound below 20%."""
    if tokens_per_s <= 0 or bytes_per_token <= 0 or bandwidth <= 0:
        raise ValueError("tokens_per_s, bytes_per_token and bandwidth must all be positive")
    share = tokens_per_s * bytes_per_token / bandwidth
    if share > 1:
        return share, f"{100 * share:.0f}% of the bandwidth bound: not a valid measurement (above the bound)"
    if share < OVERHEAD_BOUND_SHARE:
        return share, (f"{100 * share:.2g}% of the bandwidth bound: overhead-bound, reading the weights is a small part "
                       "of a step, so a difference here is other work (around the kernels or in them), not the bytes a "
                       "weight format saves")
    return share, f"{100 * share:.0f}% of the bandwidth bound"


def unwrap_quantized_weights(model: torch.nn.Module) -> None:
    """Turn tensor-subclass weights (torchao's) into plain parameters for compiling; DTensor (tensor parallel) stays."""
    from torch.distributed.tensor import DTensor

    for module in model.modules():  # unwrapping a DTensor breaks tensor parallel's layers (mixed Tensor and DTensor)
        if any(is_traceable_wrapper_subclass(p) and not isinstance(p, DTensor) for p in module.parameters(recurse=False)):
            unwrap_tensor_subclass_parameters(module)


class StaticGreedy:
    """Greedy decoding the way fast decoders do it: a static KV cache and one compiled step, with no host wait per step.

    The position is a GPU tensor advanced in place, so the host never waits for the GPU between steps; quantized
    weights that are tensor subclasses (torchao) are unwrapped into plain tensors before compiling, so the compiled
    step needs no per-call unpacking, and the step is compiled whole (`fullgraph=True`).
    """

    def __init__(self, model: PreTrainedModel, max_cache_len: int, compile_mode: str | None = "reduce-overhead"):
        self.model, self.max_cache_len = model, max_cache_len
        self.cache = StaticCache(config=model.config, max_cache_len=max_cache_len)
        self.position = torch.zeros(1, dtype=torch.long, device=model.device)
        if compile_mode:
            unwrap_quantized_weights(model)
            self.step = torch.compile(self.next_token, mode=compile_mode, fullgraph=True, dynamic=False)
        else:
            self.step = self.next_token

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
            self.position.fill_(length)
            tokens = [token]
            for _ in range(new_tokens - 1):
                torch.compiler.cudagraph_mark_step_begin()  # a new step: the last step's CUDA-graph outputs may be reused
                token = self.step(token, self.position).clone()
                self.position.add_(1)  # on the GPU: no copy from the host, no wait for the GPU
                tokens.append(token)
        return torch.cat(tokens, dim=1)


@contextlib.contextmanager
def compile_events() -> Iterator[Counter]:
    """Count inside the block the graphs torch.compile compiles (and loads from its disk cache), and CUDA graphs recorded or skipped."""
    from torch._dynamo.utils import counters
    from torch._inductor.cudagraph_trees import CUDAGraphTreeManager

    found: Counter = Counter({"graphs compiled": 0, "of them from the cache": 0, "CUDA graphs recorded": 0,
                              "CUDA graphs skipped": 0})
    graphs_before, skips_before = counters["stats"]["unique_graphs"], counters["inductor"]["cudagraph_skips"]
    hits_before = counters["inductor"]["fxgraph_cache_hit"]  # inductor's cache on disk (TORCHINDUCTOR_CACHE_DIR)
    record = CUDAGraphTreeManager.record_function

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        found["CUDA graphs recorded"] += 1
        return record(self, *args, **kwargs)

    CUDAGraphTreeManager.record_function = counted
    try:
        yield found
    finally:
        CUDAGraphTreeManager.record_function = record
        found["graphs compiled"] += counters["stats"]["unique_graphs"] - graphs_before
        found["of them from the cache"] += counters["inductor"]["fxgraph_cache_hit"] - hits_before
        found["CUDA graphs skipped"] += counters["inductor"]["cudagraph_skips"] - skips_before  # e.g. two devices


def counted(measure: Callable[[], Any], found: Counter) -> Callable[[], Any]:
    """Return measure, adding the compilations and CUDA-graph recordings inside each of its calls to found."""
    def call() -> Any:
        with compile_events() as now:
            value = measure()
        found.update(now)
        return value
    return call


# The CUDA runtime calls a decode step makes, by the profiler's names for them (the driver API's cu... too).
RUNTIME_CALLS = {
    "CUDA graph replays": r"cu(da)?GraphLaunch",
    "kernels launched outside graphs": r"(__)?cu(da)?LaunchKernel(Ex|ExC)?(_ptsz)?",
    "waits for the GPU": r"cu(da)?(Stream|Device|Event)Synchronize",
    "copies between host and GPU": r"Memcpy (HtoD|DtoH).*",  # the GPU's copy events; device-to-device ones excluded
}


def runtime_calls_per_step(run: Callable[[int], Any], new_tokens: int) -> dict[str, float]:
    """Profile run(new_tokens) and run(1) on the GPU; return one decode step's count of each of RUNTIME_CALLS."""
    from torch.profiler import ProfilerActivity, profile

    def counts(n: int) -> dict[str, int]:
        with native_stderr_silenced(), torch.inference_mode(), profile(
            activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], acc_events=True
        ) as prof:
            run(n)
        names = Counter(event.name for event in prof.events())
        found = {what: sum(c for name, c in names.items() if re.fullmatch(pattern, name)) for what, pattern in RUNTIME_CALLS.items()}
        if found["CUDA graph replays"] + found["kernels launched outside graphs"] == 0:
            raise RuntimeError(
                "none of the profiler's event names matched a launch or a graph replay (RUNTIME_CALLS): this PyTorch "
                f"and CUDA name them differently; names seen: {sorted(names)[:20]}"
            )
        return found

    many, one = counts(new_tokens), counts(1)
    return {what: (many[what] - one[what]) / (new_tokens - 1) for what in RUNTIME_CALLS}


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
    from torch.profiler import ProfilerActivity, profile

    on_gpu = device == ALL_GPUS or torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with native_stderr_silenced(), torch.inference_mode(), profile(activities=activities, acc_events=True) as prof:
        synchronize(device)
        begin = time.perf_counter()
        fn()
        synchronize(device)
        wall_ms = (time.perf_counter() - begin) * 1e3
    events = prof.events()
    if on_gpu:
        busy_us = sum(e.time_range.elapsed_us() for e in events  # kernels: annotation ranges would count them twice
                      if e.device_type == torch.autograd.DeviceType.CUDA and not e.is_user_annotation)
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
    """Profile one call of fn and return a table of the kernels (on a CPU: operators) that took longest, with their share."""
    from torch.profiler import ProfilerActivity, profile

    on_gpu = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CUDA] if on_gpu else [ProfilerActivity.CPU]
    with native_stderr_silenced(), torch.inference_mode(), profile(activities=activities, acc_events=True) as prof:
        fn()
        synchronize(device)
    sort_by = "self_device_time_total" if on_gpu else "self_cpu_time_total"  # on a GPU kernels only (operators and
    events = sorted((e for e in prof.key_averages() if not on_gpu or (e.device_type == torch.autograd.DeviceType.CUDA and
                     not e.is_user_annotation)), key=lambda e: getattr(e, sort_by), reverse=True)  # annotations repeat their time)
    total = sum(getattr(e, sort_by) for e in events) or 1
    return table(["kernel" if on_gpu else "operator", "self ms", "% of the profiled time", "calls"],
                 [[e.key[:60], getattr(e, sort_by) / 1e3, 100 * getattr(e, sort_by) / total, e.count] for e in events[:rows]])
