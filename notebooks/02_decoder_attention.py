# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] tags=["colab-badge"]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/efficient-inference-course/efficient-inference-course/blob/v0.2.0/notebooks/02_decoder_attention.ipynb)
# In Colab, run the set-up cell below first: it clones the course and pip-installs its libraries (transformers, bitsandbytes, torchao, ...) and two small packaged models next to Colab's own torch, printing each step (a minute or two). A T4 GPU runtime runs the lessons at their T4 sizes, a CPU runtime at the small CPU sizes. Elsewhere it does nothing.

# %% tags=["colab-setup"]
# Set-up for Colab (written by colab/badges.py): clones the course at v0.2.0, installs it next to Colab's torch.
# Elsewhere it does nothing. What it does, step by step: colab/README.md.
import os
import subprocess
import sys

if "google.colab" in sys.modules or "COURSE_BOOTSTRAP_FROM" in os.environ:
    home = os.environ.get("COURSE_HOME", "/content/efficient-inference-course")
    if not os.path.isdir(home):
        source = os.environ.get("COURSE_BOOTSTRAP_FROM", "https://github.com/efficient-inference-course/efficient-inference-course.git")
        print("cloning the course at v0.2.0 from", source, flush=True)
        clone = ["git", "clone", "--quiet", "--depth", "1", "--branch", "v0.2.0", source, home]
        done = subprocess.run(clone, capture_output=True, text=True)
        if done.returncode:
            message = (
                'could not clone the course at v0.2.0 from {source}:\n'
                '{error}\n'
                '\n'
                'The set-up cell needs a copy of the course with the tag v0.2.0. Either\n'
                '  * set COURSE_BOOTSTRAP_FROM to a path or URL of such a copy (a fork, a mirror, a folder with a git clone),\n'
                "    e.g. in a cell above: import os; os.environ['COURSE_BOOTSTRAP_FROM'] = 'https://github.com/you/fork.git'\n"
                '  * or put an unpacked copy of the course where COURSE_HOME points (default /content/efficient-inference-course)\n'
                '    and run this cell again: an existing folder is used as it is, without cloning.'
            )
            raise RuntimeError(message.format(source=source, error=done.stderr.strip()))
    sys.path.insert(0, home)
    from colab.bootstrap import bootstrap

    bootstrap(home, lesson="02")

# %% [markdown]
# # 02 · Decoder attention: SDPA and its kernels
#
# The 2023 guide converted decoders with `model.to_bettertransformer()` so that attention ran through
# `torch.nn.functional.scaled_dot_product_attention` (SDPA), and chose the flash kernel with
# `torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=False, enable_mem_efficient=False)`.
# For `RuntimeError: No available kernel. Aborting execution.` it advised a nightly PyTorch or fp16.
#
# Today transformers uses SDPA by default (`attn_implementation="sdpa"`), the context manager is
# `torch.nn.attention.sdpa_kernel`, and the error has reasons you can read. This lesson builds attention from
# scratch, times each SDPA kernel, and explains when a kernel refuses to run.

# %%
from coursetools.lesson import start_lesson

lesson = start_lesson("02")

# %% [markdown]
# ## 2023 → today: choosing the flash kernel
# The seed's call still runs, with a `FutureWarning`. It is now a wrapper that passes the backends you enabled to
# `sdpa_kernel`, and it has a fourth keyword, `enable_cudnn`, which defaults to `True`
# (`torch/backends/cuda/__init__.py`, `sdp_kernel`): the seed's "flash only" call also allows the cuDNN kernel, and
# where PyTorch tries cuDNN first (H100 and other sm90/sm100 GPUs with a recent cuDNN) cuDNN is what runs. The
# current call names the backends allowed. Below, each call's allowed backends, the kernel SDPA runs inside it on
# this machine, and whether the two outputs agree.
#
# Under T4 emulation (profile `t4`) the kernels a real T4 (sm 7.5) lacks stay off even where a call switches them
# on; as on a real T4, neither flash nor cuDNN runs, so a call that allows only those ends without a kernel.

# %%
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from helpers.attention import allowed_backends, default_backend

x = torch.randn(1, 8, 256, 64, device=lesson.device, dtype=torch.float16 if lesson.device == "cuda" else torch.float32)
ran = {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=False, enable_mem_efficient=False):  # 2023
        try:
            ran["2023"] = default_backend(x, x, x, is_causal=True), F.scaled_dot_product_attention(x, x, x, is_causal=True)
        except RuntimeError as err:
            print("2023 call: RuntimeError:", str(err).splitlines()[0])
        print("2023: sdp_kernel(enable_flash=True, enable_math=False, enable_mem_efficient=False) allows",
              allowed_backends(), "| SDPA runs:", ran.get("2023", ("nothing",))[0])
for warning in caught:
    if issubclass(warning.category, FutureWarning):
        print(f"  {warning.category.__name__}: {warning.message}")
with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # today
    try:
        ran["today"] = default_backend(x, x, x, is_causal=True), F.scaled_dot_product_attention(x, x, x, is_causal=True)
    except RuntimeError as err:
        print("today's call: RuntimeError:", str(err).splitlines()[0])
    print("today: sdpa_kernel(SDPBackend.FLASH_ATTENTION) allows", allowed_backends(),
          "| SDPA runs:", ran.get("today", ("nothing",))[0])

# %% [markdown]
# Two kernels compute the same function but add up in a different order, so their outputs may differ in the last
# bits. The cell below measures the largest difference in units in the last place (ulp) of the dtype at the outputs'
# largest magnitude: each kernel lands within about one ulp of the exact result, so up to two is a rounding
# difference, more is not. Each output's largest error against a float64 computation is printed beside it.

# %%
import math

if len(ran) == 2:
    (old_kernel, old), (new_kernel, new) = ran["2023"], ran["today"]
    with sdpa_kernel(SDPBackend.MATH):
        exact = F.scaled_dot_product_attention(x.double(), x.double(), x.double(), is_causal=True)
    errors = {kernel: (out.double() - exact).abs().max().item() for kernel, out in ((old_kernel, old), (new_kernel, new))}
    if torch.equal(old, new):
        print(f"same kernel ({old_kernel}) both times: identical outputs")
    else:
        scale = exact.abs().max().item()
        ulp = math.ldexp(torch.finfo(x.dtype).eps, math.frexp(scale)[1] - 1)  # spacing of x.dtype's values near scale
        gap = (old - new).abs().max().item()
        verdict = "a rounding difference" if gap <= 2 * ulp else "more than rounding"
        print(f"{old_kernel} and {new_kernel} differ by up to {gap:.1e}, {gap / ulp:.1f} ulp of {x.dtype} at the outputs' "
              f"largest magnitude ({scale:.2f}): {verdict}")
    print("largest error against float64:", {kernel: f"{error:.1e}" for kernel, error in errors.items()})

# %% [markdown]
# ## Attention in four lines
# Scores are every query against every key, scaled; a causal mask hides the future; softmax turns scores into
# weights; the output is the weighted sum of values. `F.scaled_dot_product_attention` computes the same thing.

# %%
def attention_from_scratch(q, k, v, causal=True):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (batch, heads, seq, seq)
    if causal:
        future = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    return scores.softmax(dim=-1) @ v


q, k, v = (torch.randn(2, 4, 128, 64, device=lesson.device) for _ in range(3))
difference = (attention_from_scratch(q, k, v) - F.scaled_dot_product_attention(q, k, v, is_causal=True)).abs().max()
print(f"largest difference from F.scaled_dot_product_attention: {difference:.1e}")

# %%
# NBVAL_CHECK_OUTPUT
assert difference < 1e-4
print("the four lines and SDPA agree")

# %% [markdown]
# ## The N × N problem
# `scores` holds one number per query-key pair: batch × heads × seq² values. That grows with the *square* of the
# sequence, and the plain ("math") implementation writes it to memory, reads it back for softmax, writes the
# weights, and reads them again: memory and memory traffic that grow with the square too. Whether that traffic or
# the arithmetic is what limits the math kernel is not measured here; the sweep below shows its time, peak memory
# and achieved FLOP/s beside the fused kernels'.
#
# How many bytes a score takes is not the inputs' precision: PyTorch's math kernel converts float16 and bfloat16
# inputs to float32 and computes the scores and softmax there, unless
# `torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(True)` allows half-precision reduction (default: not
# allowed). The CPU's math kernel is the same code and follows the same switch. The cell below predicts the scores'
# dtype from that rule, for this lesson's dtype and for float16 (on a CPU this lesson computes in float32, where there
# is nothing to convert), and checks it: `math_score_dtype` does not read the switch, it runs the math kernel on a
# small input of a given dtype on this device and returns the dtype its softmax ran in. The check fails where the dtype
# the math kernel used differs from the rule's prediction.

# %%
from helpers.attention import math_score_dtype
from helpers.memory import GiB, MiB

batch, heads, head_dim = lesson.size("batch"), lesson.size("heads"), lesson.size("head_dim")
dtype = getattr(torch, lesson.size("dtype"))
element = torch.finfo(dtype).bits // 8  # bytes of one input value
half_reduction = torch.backends.cuda.fp16_bf16_reduction_math_sdp_allowed()
predicted = {d: torch.float32 if d in (torch.float16, torch.bfloat16) and not half_reduction else d
             for d in dict.fromkeys((dtype, torch.float16))}
for probed, rule in predicted.items():
    seen = math_score_dtype(probed, lesson.device)
    print(f"{probed} inputs on {lesson.device}: the math kernel's softmax ran in {seen} (predicted: {rule})")
    assert seen == rule
score_dtype = predicted[dtype]
score_element = torch.finfo(score_dtype).bits // 8  # bytes of one score as the math kernel stores it
print(f"inputs in {dtype} ({element} bytes a value); the math kernel's scores in {score_dtype} ({score_element} bytes)")
for seq in lesson.size("seq_lens"):
    print(f"seq {seq:>6}: scores {batch * heads * seq * seq * score_element / GiB:8.2f} GiB  "
          f"vs q, k, v and output {4 * batch * heads * seq * head_dim * element / GiB:6.3f} GiB")

# %% [markdown]
# ### Exercise
# How many bytes would the math kernel's score matrix take at 65536 tokens (longer than any sweep here), with this
# lesson's `batch`, `heads` and `score_element` (bytes per score as the math kernel stores it)?
# Write it as `answer = ...` and run the check below it. A solution is in
# [`workshop/solutions/02.py`](../workshop/solutions/02.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/02.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer = ...  # your answer

# %%
from coursetools.exercises import check

check("02", answer, batch=batch, heads=heads, element=score_element)

# %% [markdown]
# ## What a fused kernel changes
# FlashAttention (and PyTorch's memory-efficient and cuDNN kernels) never materialise `scores`. They load a tile
# of queries and a tile of keys into the GPU's fast on-chip memory, compute that tile's scores, and keep a
# **running (online) softmax**: the maximum and the sum seen so far, rescaling the partial output whenever a new
# maximum appears. Memory becomes linear in the sequence, and no N × N matrix goes to memory and back; q, k and v
# are read in tiles (k and v once for every tile of queries, not once in all).
#
# SDPA has four backends. Which GPUs each runs on is checked in PyTorch's
# `aten/src/ATen/native/transformers/cuda/sdp_utils.cpp` (`check_*_hardware_support`):
#
# | backend | where | needs |
# |---|---|---|
# | `MATH` | everywhere | nothing: the four lines above, in C++; half-precision inputs computed in float32 |
# | `FLASH_ATTENTION` | CUDA sm80 to sm121 (A100, H100; not T4), also a CPU version | fp16/bf16 on GPU, head dim ≤ 256, **no explicit `attn_mask`** |
# | `EFFICIENT_ATTENTION` | CUDA sm50 to sm121 | fp16 and fp32; bf16 needs sm80; accepts masks |
# | `CUDNN_ATTENTION` | CUDA sm80 to sm121, cuDNN 9 or newer | fp16/bf16, head dim a multiple of 8 and ≤ 128 (256 on sm90/sm100 with a recent cuDNN) |
#
# SDPA tries the allowed backends in a priority order: flash, memory-efficient, math, cuDNN, except on GPUs of
# compute capability 9.x and 10.x (Hopper, data-centre Blackwell) with cuDNN 9.15.1 or newer, where PyTorch puts cuDNN first (`check_prefer_cudnn_attention`;
# `TORCH_CUDNN_SDPA_DEPRIORITIZED=1` turns that off). Which backends run on *this* machine, for the inputs of this
# lesson, and which one SDPA picks by itself:

# %%
from helpers.attention import priority_order, probe_backends

seq = lesson.size("headline_seq")
q, k, v = (torch.randn(batch, heads, seq, head_dim, device=lesson.device, dtype=dtype) for _ in range(3))
for verdict in probe_backends(q, k, v, is_causal=True).values():
    print(verdict)
print("SDPA picks by itself:", default_backend(q, k, v, is_causal=True), "| its priority order:", priority_order())

# %% [markdown]
# ## Choosing the kernels: `sdpa_kernel`
# `torch.nn.attention.sdpa_kernel(backends, set_priority=False)` is a context manager
# (`torch/nn/attention/__init__.py`):
#
# * `backends`: one `SDPBackend` or a list of them (anything that is neither, a string or a tuple, raises an
#   `AssertionError`; a list's items are not checked, so `sdpa_kernel(["flash"])` silently switches every backend
#   off). Inside the `with` block only these may run; every other backend is switched off. Repeats are dropped.
# * `set_priority` (default `False`): whether the list's order is the order SDPA tries them. With `False` the list
#   only allows, and SDPA keeps its own priority order; with `True` the listed backends come first, in your order,
#   the others after them in their previous order.
# * Leaving the block restores the previous switches (and, with `set_priority=True`, the previous order).
#
# The same list, memory-efficient kernel first, with and without `set_priority`. Where both run (an sm 8.0 or newer
# GPU), only `set_priority=True` makes the memory-efficient kernel run; where flash does not run (a T4) the
# memory-efficient kernel runs either way, and a CPU has no memory-efficient kernel, so its flash kernel runs either
# way. The check after the loop says so from this machine's probe: with `set_priority=False` the
# kernel that runs is the first of SDPA's own order that runs here, with `True` the first of the list.

# %%
demo = torch.randn(1, 8, 256, 64, device=lesson.device, dtype=dtype)
listed = ["efficient", "flash"]
runs_here = [name for name, verdict in probe_backends(demo, demo, demo, is_causal=True).items() if verdict.runs]
picked = {}
for set_priority in (False, True):
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.FLASH_ATTENTION], set_priority=set_priority):
        picked[set_priority] = default_backend(demo, demo, demo, is_causal=True)
        print(f"sdpa_kernel([EFFICIENT_ATTENTION, FLASH_ATTENTION], set_priority={set_priority}): tries",
              allowed_backends(), "| runs:", picked[set_priority])
print("after the block:", allowed_backends())
assert picked[False] == next(name for name in priority_order() if name in listed and name in runs_here)
assert picked[True] == next(name for name in listed if name in runs_here)

# %% [markdown]
# ### Exercise: write the call
# On GPUs of compute capability 9.x and 10.x (H100, H200, B200) with cuDNN 9.15.1 or newer (the priority order printed
# above is this machine's) PyTorch tries cuDNN before flash; on other GPUs, sm 12.x ones included, flash comes first. Write the `sdpa_kernel` call that allows only the flash and cuDNN
# kernels and tries **flash first** (how you rule cuDNN out when you suspect it, without losing it as a fallback).
# Write it as `answer_call = sdpa_kernel(...)`, without `with`: the check enters it, reads which backends are
# allowed and in which order, and leaves it. A solution is in
# [`workshop/solutions/02-call.py`](../workshop/solutions/02-call.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/02-call.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer_call = ...  # sdpa_kernel([...], ...)

# %%
check("02-call", answer_call)

# %% [markdown]
# ## Every backend, side by side, against sequence length
# Same inputs for each backend; peak memory is what the call needed above what was already allocated. On a GPU
# we also compute achieved TFLOP/s (matrix FLOPs of attention ÷ time) beside the data-sheet peak. The FLOPs are
# those of causal attention, half of the full N × N products: the work of a kernel that skips the masked half. The
# math kernel computes the full matrices and masks afterwards, so the arithmetic it actually does is twice the FLOPs
# its rows assume.
#
# ### Exercise: predict, then measure
# Before running the sweep: at the headline length (`seq`), is the math kernel's measured peak memory **more than
# twice** its score matrix at the input precision (`batch * heads * seq**2 * element` bytes)? Write
# `answer_predict = True` or `False`; the check after the sweep compares it with this machine's measurement.
# The reasoning is in [`workshop/solutions/02-predict.py`](../workshop/solutions/02-predict.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/02-predict.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer_predict = ...  # True or False

# %%
from helpers.attention import attention_flops, sweep_sequence_lengths
from helpers.limits import peak_flops_16bit

runnable = [name for name, verdict in probe_backends(q, k, v, is_causal=True).items() if verdict.runs]
del q, k, v
sweep = sweep_sequence_lengths(runnable, lesson.size("seq_lens"), batch=batch, heads=heads, head_dim=head_dim,
                               dtype=dtype, device=lesson.device, warmup=lesson.warmup(),
                               repeats=lesson.rounds())
peak_flops, peak_source = peak_flops_16bit(lesson.device)
print(f"{'backend':<10}{'seq':>7}{'ms':>10}{'peak MiB':>10}{'TFLOP/s':>9}")
for name, points in sweep.items():
    for p in points:
        if p.ms is None:
            print(f"{name:<10}{p.seq:>7}   failed: {p.error}")
            continue
        tflops = attention_flops(batch, heads, p.seq, head_dim, causal=True) / (p.ms / 1e3) / 1e12
        print(f"{name:<10}{p.seq:>7}{p.ms:>10.2f}{p.peak_bytes / MiB:>10.0f}{tflops:>9.2f}")
print("peak 16-bit tensor FLOP/s:", f"{peak_flops / 1e12:.0f} TFLOP/s ({peak_source})" if peak_flops else peak_source)

# %%
from helpers.plots import line_chart

seq_lens = lesson.size("seq_lens")
line_chart(seq_lens, {n: [p.ms for p in pts] for n, pts in sweep.items()}, "attention time (gaps: failed)",
           "sequence length", "ms", logx=True, logy=True)
line_chart(seq_lens, {n: [p.peak_bytes / MiB if p.peak_bytes else None for p in pts] for n, pts in sweep.items()},
           "attention peak memory above inputs", "sequence length", "MiB", logx=True, logy=True)

# %%
math_at_headline = next(p for p in sweep["math"] if p.seq == seq)
check("02-predict", answer_predict, peak_bytes=math_at_headline.peak_bytes,
      scores_bytes=batch * heads * seq * seq * element, stored_scores_bytes=batch * heads * seq * seq * score_element)

# %% [markdown]
# The N × N cell predicted the dtype of the math kernel's scores. While its softmax runs, the scores and the weights
# are both held, so its peak is at least two score matrices in that dtype: the check below. It takes that dtype from
# the N × N cell, whose probe already checked it, so it does not test the upcast again: it checks only that the math
# kernel holds scores and weights at the same time. (On a CPU, whose inputs here are float32, the two dtypes agree, and
# only the dtype probe above tells them apart.) At every length where the math kernel ran:

# %%
math_ran = [p for p in sweep["math"] if p.peak_bytes]
for p in math_ran:
    stored = batch * heads * p.seq * p.seq * score_element
    print(f"seq {p.seq:>6}: math peak {p.peak_bytes / MiB:9.0f} MiB = {p.peak_bytes / stored:.2f} score matrices "
          f"in {score_dtype}, {p.peak_bytes / (stored * element / score_element):.2f} at the input precision")
assert all(p.peak_bytes >= 2 * batch * heads * p.seq * p.seq * score_element for p in math_ran)

# %% [markdown]
# The headline: the kernel SDPA picks by itself against the math kernel at the headline length, timed in
# interleaved rounds (one call of each per round); the interval is the lowest to highest per-round ratio.
# The sweep above gives a second estimate of the same ratio (math's ms over the picked kernel's at the headline length,
# each backend timed alone in its own repeats). In the stored GPU run it lies above the interval below, and these
# outputs do not say why the two timing methods differ; the figure recorded (and quoted in the README) is the
# interleaved one.

# %%
from functools import partial

from helpers.attention import run_with_backend
from helpers.timing import benchmark_interleaved, compare, paired_ratio

q, k, v = (torch.randn(batch, heads, seq, head_dim, device=lesson.device, dtype=dtype) for _ in range(3))
chosen = default_backend(q, k, v, is_causal=True)
fused_vs_math = None
if chosen != "math" and math_at_headline.ms is not None:
    timings = benchmark_interleaved({name: partial(run_with_backend, name, q, k, v, is_causal=True)
                                     for name in ("math", chosen)}, device=lesson.device, warmup=lesson.warmup(), repeats=lesson.rounds())
    fused_vs_math = paired_ratio(list(timings["math"].times_ms), list(timings[chosen].times_ms))
    print(f"seq {seq}, {dtype}: {chosen} against math: {compare(fused_vs_math)}")
else:
    print(f"seq {seq}: no comparison here (SDPA picks {chosen}; math {'ran' if math_at_headline.ms else 'failed'})")
del q, k, v
math_failed_at = [p.seq for p in sweep["math"] if p.ms is None]
print("math failed at:", math_failed_at or "no length in this sweep",
      "| fused kernels still ran there:",
      {n: [p.seq for p in pts if p.ms is not None and p.seq in math_failed_at] for n, pts in sweep.items() if n != "math"})

# %% [markdown]
# ### Explore: attention memory against sequence length
# Move the slider. The math kernel's score matrix grows with the *square* of the sequence, the fused kernels'
# working set (q, k, v and the output) only linearly. The dashed line is the memory this run may use (the profile's
# cap under T4 emulation); grey bars are the peaks measured above, where the sweep reached that length. Those peaks
# count only what a call allocated on top of its inputs, so they leave q, k and v out: set a fused kernel's grey bar
# against a quarter of the green bar (the output alone), not against the whole of it.

# %%
from helpers.attention import draw_attention_memory
from coursetools.sliders import explore

explore(partial(draw_attention_memory, batch=batch, heads=heads, head_dim=head_dim, element=element,
                score_element=score_element, limit_bytes=lesson.memory_limit_bytes, sweep=sweep),
        seq=([2**i for i in range(9, 18)], lesson.size("headline_seq")))

# %% [markdown]
# ## "No available kernel": reproduce it, read it, avoid it
# The error means: every backend you allowed refused these inputs. Forcing a single backend is how people meet it,
# e.g. flash only, with inputs flash does not take (float32 on a GPU; on a CPU, a GPU-only backend).
# PyTorch says *why* in warnings it issues just before the error: for each fused backend in turn a heading,
# "... kernel not used because:", then that backend's reasons, so the backends you switched off each say "has been
# runtime disabled" and the one you allowed gives its own reason. The cell below records those warnings instead of
# letting them print, and lists them without their source locations, reasons indented under their heading (on a CPU
# a GPU-only backend is refused before any check, with no warnings). `probe_backends` tries each backend alone and
# keeps, for each refused one, only the reasons under its own heading (the error's first line where there are none).

# %%
from helpers.attention import HEADINGS, without_location

forced = "flash" if lesson.device == "cuda" else "cudnn"
q32 = torch.randn(1, 8, 256, 64, device=lesson.device, dtype=torch.float32)
with warnings.catch_warnings(record=True) as caught:  # recorded, then listed below without their source locations
    warnings.simplefilter("always")
    try:
        run_with_backend(forced, q32, q32, q32, is_causal=True)
        print(f"{forced} ran")
    except RuntimeError as err:
        print(f"RuntimeError with only {forced} allowed on float32 inputs:\n  {str(err).splitlines()[0]}")
print(f"PyTorch's warnings before it: {len(caught) or 'none'}")
for warning in caught:
    message = without_location(str(warning.message))
    print(f"  {message}" if message in HEADINGS else f"      {message}")
print("\nwhy, per backend:")
for verdict in probe_backends(q32, q32, q32, is_causal=True).values():
    print(" ", verdict)

# %% [markdown]
# The fixes, in order: use fp16/bf16 for flash and cuDNN (the seed's advice, still right); drop an explicit
# `attn_mask` in favour of `is_causal=True` where you can (flash refuses masks); keep head dim ≤ 256; and allow
# more than one backend: `sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION])` falls back
# instead of failing (add `set_priority=True` when the order matters, as above). On a GPU you can ask before running:
# `torch.backends.cuda.can_use_flash_attention(torch.backends.cuda.SDPAParams(q, k, v, None, 0.0, True, False), debug=True)`
# prints the same reasons. A nightly PyTorch is no longer the answer.

# %%
if lesson.device == "cuda":
    half = q32.to(torch.float16)
    print("same call in float16:", "runs" if probe_backends(half, half, half, is_causal=True)[forced].runs else "refused")

# %% [markdown]
# ## A real decoder: `attn_implementation="eager"` vs `"sdpa"`
# The call that loads a decoder with a chosen attention, written out (transformers 5.17's `modeling_utils.py`; the
# stamp at the top says which version this run used):
#
# * `pretrained_path(decoder)`: what to load, from the course's helpers: a Hub id when the Hub answers, else the
#   packaged weights, or (on a GPU here) a checkpoint of synthetic weights in a real model's shape. At home you
#   write the Hub id, e.g. `"meta-llama/Llama-3.2-1B"`.
# * `dtype`: the dtype of the weights; default `"auto"`: the checkpoint config's dtype, else that of its first
#   floating-point weight.
# * `device_map`: where each module goes; a device (`"cuda"`, `"cpu"`, `0`) puts the whole model there as it loads;
#   default `None`: torch's default device, the CPU unless you changed it.
# * `attn_implementation`: `"eager"` (matrix products and softmax in plain PyTorch, like `attention_from_scratch`),
#   `"sdpa"` (`F.scaled_dot_product_attention`), `"flash_attention_2"`, `"flash_attention_3"`,
#   `"flash_attention_4"` (the flash-attn packages or their Hub kernels), `"flex_attention"`, `"paged|eager"`, or a Hub
#   kernel reference `"namespace/repo[@revision][:kernel_name]"`. Default `None`: `"sdpa"` where the model supports
#   it, else `"eager"`.
#
# We measure a prompt's forward pass (prefill) and its peak memory against prompt length.

# %%
from transformers import AutoModelForCausalLM

from helpers.models import pretrained_path, weights_in_use

decoder = lesson.size("decoder")
print(weights_in_use(decoder))
decoders = {}
for impl in ("eager", "sdpa"):
    decoders[impl] = AutoModelForCausalLM.from_pretrained(
        pretrained_path(decoder), dtype=lesson.profile.dtype, device_map=lesson.device, attn_implementation=impl
    ).eval()
    print(f"attn_implementation={impl!r}: the model runs {decoders[impl].config._attn_implementation!r}")

# %%
from helpers.attention import sweep_prefill

prefill = sweep_prefill(decoders, lesson.size("prompt_lens"), vocab_size=decoders["sdpa"].config.vocab_size,
                        device=lesson.device, warmup=lesson.warmup(), repeats=lesson.rounds())
for name, points in prefill.items():
    for p in points:
        shown = f"{p.ms:9.1f} ms {p.peak_bytes / MiB:8.0f} MiB" if p.ms is not None else f"failed: {p.error}"
        print(f"{name:<6} prompt {p.seq:>5}: {shown}")

# %%
prompt_lens = lesson.size("prompt_lens")
line_chart(prompt_lens, {n: [p.ms for p in pts] for n, pts in prefill.items()}, f"{decoder} prefill time",
           "prompt tokens", "ms", logx=True, logy=True)
line_chart(prompt_lens, {n: [p.peak_bytes / MiB if p.peak_bytes else None for p in pts] for n, pts in prefill.items()},
           f"{decoder} prefill peak memory above weights", "prompt tokens", "MiB", logx=True, logy=True)

# %% [markdown]
# The longest prompt both implementations ran, timed again in interleaved rounds:

# %%
sdpa_ms = {p.seq: p.ms for p in prefill["sdpa"]}
longest = max(p.seq for p in prefill["eager"] if p.ms is not None and sdpa_ms[p.seq] is not None)
ids = torch.randint(0, decoders["sdpa"].config.vocab_size, (1, longest), device=lesson.device)
timings = benchmark_interleaved({name: partial(model, input_ids=ids, logits_to_keep=1) for name, model in decoders.items()},
                                device=lesson.device, warmup=lesson.warmup(), repeats=lesson.rounds())
prefill_ratio = paired_ratio(list(timings["eager"].times_ms), list(timings["sdpa"].times_ms))
print(f"prompt {longest}: sdpa prefill against eager: {compare(prefill_ratio)}")

# %% [markdown]
# Decoding (one new token at a time, reading the KV cache) attends one query to all keys: there is no N × N matrix.
# Each round times, for each implementation, `generate` for one token and for `new_tokens` tokens; a decode step is
# the difference divided by `new_tokens - 1`. The verdict line uses the median of the per-round ratios, which need
# not equal the ratio of the two medians printed above it:

# %%
import statistics

from helpers.attention import decode_rounds

prompt = torch.randint(0, decoders["sdpa"].config.vocab_size, (1, prompt_lens[0]), device=lesson.device)
steps = decode_rounds(decoders, prompt, new_tokens=lesson.size("new_tokens"), warmup=lesson.warmup(),
                      rounds=lesson.rounds())
decode_tok_s = {name: 1e3 / statistics.median(ms) for name, ms in steps.items()}
for name, ms in steps.items():
    print(f"{name:<6} decode {decode_tok_s[name]:.1f} tok/s (median of {len(ms)} rounds, batch 1, prompt {prompt_lens[0]})")
print(f"sdpa decode against eager: {compare(paired_ratio(steps['eager'], steps['sdpa']))}")
del decoders

# %% [markdown]
# ### Same answers
# Both implementations compute the same function. In float32 SmolLM2-135M-Instruct (the first output line says which
# weights: offline, its packaged Q4_1 weights dequantized to 16 bits, loaded here in float32) gives the same greedy answers with either (the check below
# fails where it does not). The check is about agreement, not correctness: a 135M model after a 4-bit round trip can
# answer wrongly with both. In bf16 (not run here) the two can round differently, and where two next tokens are nearly
# tied a greedy answer can then take another path: rounding, not a bug.

# %%
from helpers.models import load_tokenizer
from helpers.quality import PROMPTS, greedy_answers

print(weights_in_use("smollm2-135m"))
tokenizer = load_tokenizer("smollm2-135m")
answers = {}
for impl in ("eager", "sdpa"):
    model = AutoModelForCausalLM.from_pretrained(pretrained_path("smollm2-135m"), dtype=torch.float32,
                                                 device_map=lesson.device, attn_implementation=impl).eval()
    answers[impl] = greedy_answers(model, tokenizer)
for prompt_text in PROMPTS:
    print(f"{prompt_text}\n  eager: {answers['eager'][prompt_text]}\n  sdpa:  {answers['sdpa'][prompt_text]}")

# %%
# NBVAL_CHECK_OUTPUT
assert answers["eager"] == answers["sdpa"]
print("eager and sdpa give the same greedy answers")

# %% [markdown]
# ## Summary
# * Load with `attn_implementation="sdpa"` (the default where the model supports it); let SDPA choose the kernel
#   unless you are measuring.
# * `sdpa_kernel(backends)` only allows; `set_priority=True` makes the list's order the order SDPA tries them. The
#   deprecated `sdp_kernel` also allows cuDNN unless you pass `enable_cudnn=False`.
# * By default the math kernel computes half-precision inputs in float32: each of its N × N scores takes 4 bytes,
#   not 2.
# * Flash and cuDNN need half precision and sm80 or newer; flash takes no explicit mask. On a T4 (sm75) neither
#   runs, which leaves the memory-efficient and math kernels (PyTorch's checks in `sdp_utils.cpp`; the probe above
#   lists each backend's reasons for given inputs). Whether SDPA then beats eager on a T4 is not shown in these
#   outputs: the T4-emulation run records it (`prefill_sdpa_vs_eager`, README's T4 table), on a large GPU, not on a
#   real T4.

# %%
lesson.record(
    fused_vs_math_at_headline=fused_vs_math or (float("nan"),) * 3,
    prefill_sdpa_vs_eager=prefill_ratio,
    decode_sdpa_tok_s=decode_tok_s["sdpa"],
    decode_eager_tok_s=decode_tok_s["eager"],
)
