"""Attention kernels: which SDPA backend runs (and why not the others), and time and memory against sequence length."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode

from helpers.memory import peak_memory
from helpers.tables import one_of
from helpers.timing import benchmark, decode_step_ms, generate_run, interleaved
from helpers.widgets import progress

__all__ = ["HEADINGS", "allowed_backends", "attention_flops", "decode_rounds", "default_backend",
           "draw_attention_memory", "math_score_dtype", "priority_order", "probe_backends", "run_with_backend",
           "sweep_prefill", "sweep_sequence_lengths", "without_location"]

BACKENDS = {"math": SDPBackend.MATH, "efficient": SDPBackend.EFFICIENT_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION}
# When every allowed backend refuses, PyTorch's sdp_utils warns one of these headings per backend, each followed by
# that backend's reasons (select_sdp_backend in aten/src/ATen/native/transformers/cuda/sdp_utils.cpp; the CPU's
# sdp_utils_cpp.cpp heads flash the same way).
HEADINGS = {"Memory efficient kernel not used because:": "efficient", "Flash attention kernel not used because:": "flash",
            "cuDNN attention kernel not used because:": "cudnn"}

# backends an emulated GPU lacks, with why (coursetools.profiles fills it for T4 emulation); probe_backends reports them
MISSING_SDPA_BACKENDS: dict[str, str] = {}


@dataclass(frozen=True)
class SweepPoint:
    """One backend at one sequence length: median ms and peak bytes above what was allocated before, None if it failed."""

    seq: int
    ms: float | None
    peak_bytes: int | None
    error: str = ""


def measure_point(call: Callable[[], object], seq: int, device: str, warmup: int, repeats: int) -> SweepPoint:
    """Measure one call's peak memory and median time; an out-of-memory or refused call becomes a point with its reason."""
    try:
        peak = peak_memory(call, device)
        timing = benchmark(call, device=device, warmup=warmup, repeats=repeats)
        point = SweepPoint(seq, timing.median, peak.added)
    except (RuntimeError, torch.OutOfMemoryError) as err:  # out of memory (CUDA or CPU allocator), or refused
        oom = isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()
        point = SweepPoint(seq, None, None, "out of memory" if oom else str(err).split("\n")[0])
    if device == "cuda":
        torch.cuda.empty_cache()
    return point


@dataclass(frozen=True)
class Verdict:
    """Whether one SDPA backend ran on given inputs, and the reasons PyTorch gave when it did not."""

    backend: str
    runs: bool
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.backend:<10} runs" if self.runs else f"{self.backend:<10} refused: " + " | ".join(self.reasons)


def run_with_backend(backend: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
    """Run scaled_dot_product_attention allowing only one backend; raises RuntimeError when it cannot run."""
    with sdpa_kernel([BACKENDS[one_of("SDPA backend", backend, BACKENDS)]]):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)


def probe_backends(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
                   is_causal: bool = False) -> dict[str, Verdict]:
    """Try every SDPA backend on these inputs; for each refused one, keep PyTorch's warnings that say why."""
    verdicts = {}
    for name in BACKENDS:
        if name in MISSING_SDPA_BACKENDS:  # an emulated GPU without it: its switch stays off, say why instead
            verdicts[name] = Verdict(name, False, (MISSING_SDPA_BACKENDS[name],))
            continue
        with warnings.catch_warnings(record=True) as caught:  # recorded, not printed: the verdicts say it per backend
            warnings.simplefilter("always")
            try:
                run_with_backend(name, q, k, v, attn_mask, is_causal)
                runs, error = True, ""
            except RuntimeError as err:
                runs, error = False, str(err).split("\n")[0]
        own = reasons_by_backend(str(w.message) for w in caught).get(name, ())
        verdicts[name] = Verdict(name, runs, () if runs else own or (error,))
    return verdicts


def without_location(message: str) -> str:
    """Return one of PyTorch's warnings without its source location ("(Triggered internally at ...)")."""
    return re.sub(r"\s*\(Triggered internally at [^)]*\)", "", message).strip()


def reasons_by_backend(messages: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Group PyTorch's SDPA warnings under the backend whose heading ("... kernel not used because:") they follow."""
    grouped: dict[str, list[str]] = {}
    backend = None
    for message in map(without_location, messages):
        if message in HEADINGS:
            backend = HEADINGS[message]
            grouped.setdefault(backend, [])
        elif backend is not None and message:
            grouped[backend].append(message)
    return {name: tuple(dict.fromkeys(reasons)) for name, reasons in grouped.items()}


def default_backend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
                    is_causal: bool = False) -> str:
    """Return the backend SDPA picks by itself for these inputs on this machine (its priority order, global switches)."""
    choice = torch._fused_sdp_choice(q, k, v, attn_mask, 0.0, is_causal)
    return next(name for name, backend in BACKENDS.items() if int(backend) == choice)


def priority_order() -> list[str]:
    """Return every SDPA backend in the order SDPA tries them now (`sdpa_kernel(..., set_priority=True)` changes it)."""
    names = {int(backend): name for name, backend in BACKENDS.items()}
    return [names[choice] for choice in torch._C._get_sdp_priority_order() if choice in names]


def allowed_backends() -> list[str]:
    """Return the SDPA backends allowed now (global switches, `sdpa_kernel`), in the order SDPA tries them."""
    cuda = torch.backends.cuda
    enabled = {"math": cuda.math_sdp_enabled(), "efficient": cuda.mem_efficient_sdp_enabled(),
               "flash": cuda.flash_sdp_enabled(), "cudnn": cuda.cudnn_sdp_enabled()}
    return [name for name in priority_order() if enabled[name]]


class SoftmaxDtypes(TorchDispatchMode):
    """Record the dtype of every softmax the operations inside it compute."""

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: set[torch.dtype] = set()

    def __torch_dispatch__(self, func: torch._ops.OpOverload, types: tuple[type, ...], args: tuple = (),
                           kwargs: dict | None = None) -> object:
        """Run the operation and note its output's dtype if it is a softmax."""
        out = func(*args, **(kwargs or {}))
        if "softmax" in func.__name__:
            self.dtypes.add(out.dtype)
        return out


def math_score_dtype(dtype: torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """Return the dtype the math backend computes scores in: float32 for half inputs unless half reduction is allowed."""
    # observed, not read from the switch: the dtype its softmax ran in on a small input of this dtype and device
    q = torch.randn(1, 1, 16, 8, dtype=dtype, device=device)
    seen = SoftmaxDtypes()
    with sdpa_kernel([SDPBackend.MATH]), seen:
        F.scaled_dot_product_attention(q, q, q, is_causal=True)
    if len(seen.dtypes) != 1:
        raise RuntimeError(f"expected one softmax dtype in the math backend, saw {sorted(map(str, seen.dtypes))}")
    return seen.dtypes.pop()


def attention_flops(batch: int, heads: int, seq: int, head_dim: int, causal: bool) -> float:
    """Return the matrix FLOPs of one attention call: QK^T and PV, halved when causal."""
    flops = 4 * batch * heads * seq * seq * head_dim
    return flops / 2 if causal else flops


def sweep_sequence_lengths(backends: list[str], seq_lens: list[int], *, batch: int, heads: int, head_dim: int,
                           dtype: torch.dtype, device: str, warmup: int, repeats: int,
                           causal: bool = True) -> dict[str, list[SweepPoint]]:
    """Time each backend and measure its peak memory at each sequence length; failures (OOM, refusal) are recorded."""
    results: dict[str, list[SweepPoint]] = {one_of("SDPA backend", name, BACKENDS): [] for name in backends}
    for seq in progress(seq_lens, desc="sequence lengths"):
        qkv = [torch.randn(batch, heads, seq, head_dim, device=device, dtype=dtype) for _ in range(3)]
        for name in backends:
            call = partial(run_with_backend, name, *qkv, is_causal=causal)
            results[name].append(measure_point(call, seq, device, warmup, repeats))
        del qkv
    return results


def sweep_prefill(models: dict[str, torch.nn.Module], seq_lens: list[int], *, vocab_size: int, device: str, warmup: int,
                  repeats: int, batch: int = 1) -> dict[str, list[SweepPoint]]:
    """Time a prompt's forward pass (prefill, last position's logits only) and its peak memory for each model."""
    results: dict[str, list[SweepPoint]] = {name: [] for name in models}
    for seq in progress(seq_lens, desc="prompt lengths"):
        ids = torch.randint(0, vocab_size, (batch, seq), device=device)
        for name, model in models.items():
            call = partial(model, input_ids=ids, logits_to_keep=1)
            results[name].append(measure_point(call, seq, device, warmup, repeats))
    return results


def decode_rounds(models: dict[str, torch.nn.Module], input_ids: torch.Tensor, *, new_tokens: int, warmup: int,
                  rounds: int) -> dict[str, list[float]]:
    """Time greedy decoding of each model in interleaved rounds; return each one's ms per decode step, one value a round."""
    # a round: generate of new_tokens minus generate of 1 token (the prefill), over new_tokens - 1 (decode_step_ms)
    steps = {name: decode_step_ms(generate_run(model, input_ids), new_tokens, input_ids.device)
             for name, model in models.items()}
    for step in steps.values():
        for _ in range(warmup):
            step()
    return interleaved(steps, rounds)


def draw_attention_memory(seq: int, *, batch: int, heads: int, head_dim: int, element: int, score_element: int,
                          limit_bytes: float, sweep: dict[str, list[SweepPoint]] | None = None) -> None:
    """Show, at one sequence length, the math kernel's score matrix against the fused kernels' inputs and output, beside the memory limit."""
    # element: the bytes of one input value; score_element: those of one score as the math kernel stores it
    import matplotlib.pyplot as plt

    bars = {"math: scores (b·h·n²)": batch * heads * seq * seq * score_element,
            "fused: q, k, v, out (4·b·h·n·d)": 4 * batch * heads * seq * head_dim * element}
    for name, points in (sweep or {}).items():
        for point in points:
            if point.seq == seq and point.peak_bytes:
                bars[f"measured peak, {name}"] = point.peak_bytes
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.45 * len(bars)))
    gib = [v / 2**30 for v in bars.values()]
    drawn = ax.barh(list(bars), gib, color=["tab:red", "tab:green"] + ["tab:gray"] * (len(bars) - 2))
    ax.bar_label(drawn, labels=[f"{v:.3g} GiB" for v in gib], padding=3)
    ax.axvline(limit_bytes / 2**30, color="black", linestyle="--", label=f"memory limit {limit_bytes / 2**30:.0f} GiB")
    ax.set(xscale="log", xlabel="GiB (log)", title=f"attention memory at {seq} tokens")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    fig.tight_layout()
    plt.show()
