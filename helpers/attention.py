"""Attention kernels: which SDPA backend runs (and why not the others), and time and memory against sequence length."""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode

from helpers.decoding import native_stderr_silenced
from helpers.memory import peak_memory
from helpers.tables import one_of
from helpers.timing import benchmark, spread
from helpers.widgets import progress

__all__ = ["HEADINGS", "allowed_backends", "attention_flops", "backends_run", "default_backend", "math_score_dtype",
           "priority_order", "probe_backends", "reasons_by_backend", "register_unpadded_attention", "run_with_backend",
           "sweep_prefill", "sweep_sequence_lengths", "unpadded_attention", "without_location"]

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
    """One backend at one sequence length: median ms, its quartiles and peak bytes above what was allocated before."""

    seq: int
    ms: float | None  # None (and peak_bytes None) where it failed, with the reason in error
    peak_bytes: int | None
    error: str = ""
    quartiles: tuple[float, float] | None = None


def measure_point(call: Callable[[], object], seq: int, device: str, warmup: int, repeats: int) -> SweepPoint:
    """Measure one call's peak memory and median time; an out-of-memory or refused call becomes a point with its reason."""
    try:
        peak = peak_memory(call, device)
        timing = benchmark(call, device=device, warmup=warmup, repeats=repeats)
        point = SweepPoint(seq, timing.median, peak.added, quartiles=spread(list(timing.times_ms))[1:])
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


# the aten operator each SDPA backend runs as, by the profiler's name for it (the CPU's flash kernel has its own)
BACKEND_OPS = {"aten::_scaled_dot_product_flash_attention": "flash",
               "aten::_scaled_dot_product_flash_attention_for_cpu": "flash",
               "aten::_scaled_dot_product_efficient_attention": "efficient",
               "aten::_scaled_dot_product_cudnn_attention": "cudnn", "aten::_scaled_dot_product_attention_math": "math"}


def backends_run(fn: Callable[[], object]) -> Counter:
    """Call fn under the profiler; return how many SDPA calls each backend ran (by its aten operator): empty if none."""
    from torch.profiler import ProfilerActivity, profile

    with native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return Counter(BACKEND_OPS[event.name] for event in prof.events() if event.name in BACKEND_OPS)


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


UNPADDED = "torch_varlen"  # the attn_implementation name register_unpadded_attention gives transformers


def unpadded_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                       **kwargs: object) -> tuple[torch.Tensor, None]:
    """Attend over the real tokens alone, for transformers: packed end to end and run by torch's varlen_attn (flash)."""
    from torch.nn.attention.varlen import varlen_attn

    batch, heads, length, dim = query.shape
    if dropout or (scaling is not None and abs(scaling * dim**0.5 - 1) > 1e-6):
        raise ValueError("unpadded_attention runs inference at the default scale 1/sqrt(head_dim) only")
    # the 2-D padding mask (True: a real token), as transformers gives flash_attention_2; None: no padding
    real = query.new_ones(batch, length, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    lengths = real.sum(1, dtype=torch.int32)
    starts = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))  # where each sequence begins among the packed tokens
    longest = int(lengths.max())
    packed = varlen_attn(*(t.transpose(1, 2)[real] for t in (query, key, value)), starts, starts, longest, longest)
    output = query.new_zeros(batch, length, heads, dim)  # (batch, tokens, heads, dim), as transformers expects back
    output[real] = packed
    return output, None


def register_unpadded_attention() -> str:
    """Make unpadded_attention loadable as from_pretrained(..., attn_implementation=UNPADDED); return that name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(UNPADDED, unpadded_attention)
    AttentionMaskInterface.register(UNPADDED, ALL_MASK_ATTENTION_FUNCTIONS["flash_attention_2"])  # the 2-D mask
    return UNPADDED
