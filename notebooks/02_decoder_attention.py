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


from coursetools.checks.lesson02 import AGREEMENT_TOLERANCE

q, k, v = (torch.randn(2, 4, 128, 64, device=lesson.device) for _ in range(3))
difference = (attention_from_scratch(q, k, v) - F.scaled_dot_product_attention(q, k, v, is_causal=True)).abs().max()
print(f"largest difference from F.scaled_dot_product_attention: {difference:.1e} (the lesson's last cell checks that "
      f"it is below {AGREEMENT_TOLERANCE:g})")

# %% [markdown]
# ## The N × N problem
# `scores` holds one number per query-key pair: batch × heads × seq² values. That grows with the *square* of the
# sequence, and the plain ("math") implementation writes it to memory, reads it back for softmax, writes the
# weights, and reads them again: memory and memory traffic that grow with the square too. Whether that traffic or
# the arithmetic is what limits the math kernel is not measured here; the sweep below shows its time, peak memory
# and achieved FLOP/s beside the fused kernels'.
#
# How many bytes a score takes is not the inputs' precision: PyTorch's math kernel
# (`_scaled_dot_product_attention_math` in `aten/src/ATen/native/transformers/attention.cpp`) converts float16 and
# bfloat16 inputs to float32 and computes the scores and softmax there, unless
# `torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(True)` allows half-precision reduction (default: not
# allowed). The CPU's math kernel is the same code and follows the same switch. `expected_score_dtype` writes that rule
# down; `math_score_dtype` measures instead: it does not read the switch, it runs the math kernel on a small input of a
# given dtype on this device and returns the dtype its softmax ran in. The cell below measures it for this lesson's
# dtype and for float16 (on a CPU this lesson computes in float32, where there is nothing to convert), once with the
# switch as it is and once flipped, so that the rule is tested on both of its branches; the lesson's last cell checks
# every probe against the rule. The bytes of a score below come from the rule, not from the probe.

# %%
from coursetools.checks.lesson02 import expected_score_dtype
from helpers.attention import math_score_dtype
from helpers.memory import GiB, MiB
from helpers.tables import table

batch, heads, head_dim = lesson.size("batch"), lesson.size("heads"), lesson.size("head_dim")
dtype = getattr(torch, lesson.size("dtype"))
element = torch.finfo(dtype).bits // 8  # bytes of one input value
half_reduction = torch.backends.cuda.fp16_bf16_reduction_math_sdp_allowed()
probes = {}  # (input dtype, half reduction allowed) -> the dtype the math kernel's softmax ran in
for allowed in (half_reduction, not half_reduction):
    torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(allowed)
    try:
        for probed in dict.fromkeys((dtype, torch.float16)):
            probes[probed, allowed] = math_score_dtype(probed, lesson.device)
    finally:
        torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(half_reduction)  # the switch as it was
display(table(["inputs", "half reduction allowed", "the rule predicts", "softmax ran in (probe)"],
              [[str(d), str(a), str(expected_score_dtype(d, a)), str(ran)] for (d, a), ran in probes.items()]))
score_dtype = expected_score_dtype(dtype, half_reduction)  # the rule, for this run's switch
score_element = torch.finfo(score_dtype).bits // 8  # bytes of one score as the math kernel stores it
print(f"inputs in {dtype} ({element} bytes a value); the math kernel's scores in {score_dtype} ({score_element} bytes)")
display(table(["seq", f"scores MiB (math kernel, {score_dtype})", "q, k, v and output MiB"],
              [[seq, batch * heads * seq * seq * score_element / MiB, 4 * batch * heads * seq * head_dim * element / MiB]
               for seq in lesson.size("seq_lens")]))

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
# | `FLASH_ATTENTION` | CUDA sm80 to sm121 (A100, H100; not T4), also a CPU version | on a GPU: fp16/bf16, head dim ≤ 256, **no explicit `attn_mask`** (the CPU version takes float32, masks and larger head dims) |
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
order_note = "" if lesson.device == "cuda" else " (CUDA's; a CPU ignores it and tries flash, then math)"
print("SDPA picks by itself:", default_backend(q, k, v, is_causal=True), f"| its priority order{order_note}:",
      priority_order())

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
# * Leaving the block restores the previous switches and, with `set_priority=True`, the previous order of the backends
#   that were allowed before it (`sdpa_kernel` saves only those); a backend switched off before the block keeps its
#   place from inside the block, after them.
#
# The same list, memory-efficient kernel first, with and without `set_priority`. Where both run (an sm 8.0 or newer
# GPU), only `set_priority=True` makes the memory-efficient kernel run; where flash does not run (a T4) the
# memory-efficient kernel runs either way, and a CPU has no memory-efficient kernel, so its flash kernel runs either
# way. The lesson's last cell checks it against this machine's probe: with `set_priority=False` the kernel that runs is
# the first of SDPA's own order that runs here, with `True` the first of the list.

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
# Same inputs for each backend; peak memory is what the call needed above what was already allocated. We also
# compute achieved TFLOP/s (matrix FLOPs of attention ÷ time), beside the data-sheet peak where there is one (a known
# GPU; a CPU has none here). The FLOPs are
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
rows = []
for name, points in sweep.items():
    for p in points:
        if p.ms is None:
            rows.append([name, p.seq, f"failed: {p.error}", "", "", ""])
            continue
        tflops = attention_flops(batch, heads, p.seq, head_dim, causal=True) / (p.ms / 1e3) / 1e12
        rows.append([name, p.seq, f"{p.ms:.3g}", f"{p.quartiles[0]:.3g}-{p.quartiles[1]:.3g}", f"{p.peak_bytes / MiB:.3g}",
                     f"{tflops:.3g}"])
display(table(["backend", "seq", "ms (median)", "quartiles", "peak MiB", "TFLOP/s"], rows))
print("peak 16-bit tensor FLOP/s:", f"{peak_flops / 1e12:.0f} TFLOP/s ({peak_source})" if peak_flops else peak_source)

# %%
from helpers.plots import line_chart

seq_lens = lesson.size("seq_lens")
line_chart(seq_lens, {n: [p.ms for p in pts] for n, pts in sweep.items()},
           "attention time, median and quartiles (gaps: failed)", "sequence length", "ms", logx=True, logy=True,
           quartiles={n: [p.quartiles for p in pts] for n, pts in sweep.items()})
line_chart(seq_lens, {n: [p.peak_bytes / MiB if p.peak_bytes else None for p in pts] for n, pts in sweep.items()},
           "attention peak memory above inputs", "sequence length", "MiB", logx=True, logy=True)

# %%
math_at_headline = next(p for p in sweep["math"] if p.seq == seq)
check("02-predict", answer_predict, peak_bytes=math_at_headline.peak_bytes,
      scores_bytes=batch * heads * seq * seq * element, stored_scores_bytes=batch * heads * seq * seq * score_element)

# %% [markdown]
# The N × N cell took the dtype of the math kernel's scores from torch's rule. While its softmax runs, the scores and
# the weights are both held, so its peak is at least two score matrices in that dtype: the lesson's last cell checks
# that at every length where the math kernel ran. It tests that the kernel holds scores and weights at the same time;
# the upcast itself is what the dtype probes test (on a CPU, whose inputs here are float32, the two dtypes agree). The
# peaks, counted in score matrices:

# %%
math_ran = [p for p in sweep["math"] if p.peak_bytes]
display(table(["seq", "math peak MiB", f"score matrices in {score_dtype}", "score matrices at the input precision"],
              [[p.seq, f"{p.peak_bytes / MiB:.3g}", p.peak_bytes / (batch * heads * p.seq * p.seq * score_element),
                p.peak_bytes / (batch * heads * p.seq * p.seq * element)] for p in math_ran]))

# %% [markdown]
# The headline: the kernel SDPA picks by itself against the math kernel at the headline length, timed in
# interleaved rounds (one call of each per round, after warm-up rounds); the interval is the quartiles of the per-round
# ratios. The sweep above gave a second estimate of the same ratio: math's median ms over the picked kernel's at the
# headline length, each backend timed alone, its calls in a row. The table below sets the two side by side with what
# each measurement did (shapes, order, warm-up and timed calls), and the line under it says which kernel's time moved
# between them. The figure recorded (and quoted in the README) is the interleaved one: both kernels ran under the same
# conditions, round by round.

# %%
from functools import partial

from helpers.attention import run_with_backend
from helpers.timing import benchmark_interleaved, compare, paired_ratio, spread

q, k, v = (torch.randn(batch, heads, seq, head_dim, device=lesson.device, dtype=dtype) for _ in range(3))
chosen = default_backend(q, k, v, is_causal=True)
fused_vs_math = None
chosen_at_headline = next((p for p in sweep.get(chosen, []) if p.seq == seq), None)
if chosen != "math" and math_at_headline.ms is not None and chosen_at_headline and chosen_at_headline.ms is not None:
    timings = benchmark_interleaved({name: partial(run_with_backend, name, q, k, v, is_causal=True)
                                     for name in ("math", chosen)}, device=lesson.device, warmup=lesson.warmup(), repeats=lesson.rounds())
    fused_vs_math = paired_ratio(list(timings["math"].times_ms), list(timings[chosen].times_ms))
    print(f"seq {seq}, {dtype}: {chosen} against math: {compare(fused_vs_math)}")
    alone = {"math": math_at_headline, chosen: chosen_at_headline}
    together = {name: spread(list(t.times_ms)) for name, t in timings.items()}
    sweep_ratio = alone["math"].ms / alone[chosen].ms
    display(table(
        ["timing", "q, k, v", "order", "warm-up calls each", "timed calls each", "math ms", f"{chosen} ms", f"math / {chosen}"],
        [["sweep", f"{(batch, heads, seq, head_dim)} {dtype}", "alone: one backend's calls in a row",
          1 + lesson.warmup(), lesson.rounds(),  # measure_point calls once for the peak, then benchmark warms up
          *(f"{alone[n].ms:.3g} ({alone[n].quartiles[0]:.3g}-{alone[n].quartiles[1]:.3g})" for n in ("math", chosen)),
          f"{sweep_ratio:.3g} (ratio of medians)"],
         ["interleaved", f"{tuple(q.shape)} {q.dtype}", f"alternating: math, {chosen}, math, ...", lesson.warmup(),
          len(timings["math"].times_ms), *(f"{together[n][0]:.3g} ({together[n][1]:.3g}-{together[n][2]:.3g})"
                                           for n in ("math", chosen)),
          f"{fused_vs_math[0]:.3g} ({fused_vs_math[1]:.3g}-{fused_vs_math[2]:.3g}, per-round quartiles)"]]))
    moved = {n: together[n][0] / alone[n].ms for n in alone}  # interleaved median over the sweep's
    most = max(moved, key=lambda n: abs(math.log(moved[n])))
    inside = fused_vs_math[1] <= sweep_ratio <= fused_vs_math[2]
    print(f"the sweep's {sweep_ratio:.3g}x lies {'inside' if inside else 'outside'} the interleaved quartiles; from the "
          f"sweep to the interleaved rounds math's median moved {moved['math']:.2f}x and {chosen}'s {moved[chosen]:.2f}x"
          + ("" if inside else f", so the gap is mostly {most}'s time: on inputs of the same shape it took "
             f"{moved[most]:.2f} times as long timed between calls of the other kernel as timed in a row of its own "
             "calls"))
else:
    ran = {name: point is not None and point.ms is not None for name, point in
           (("math", math_at_headline), (chosen, chosen_at_headline))}
    print(f"seq {seq}: no comparison here (SDPA picks {chosen}; in the sweep: "
          + ", ".join(f"{name} {'ran' if ok else 'failed or was not swept'}" for name, ok in ran.items()) + ")")
del q, k, v
math_failed_at = [p.seq for p in sweep["math"] if p.ms is None]
print("math failed at:", math_failed_at or "no length in this sweep",
      "| fused kernels still ran there:",
      {n: [p.seq for p in pts if p.ms is not None and p.seq in math_failed_at] for n, pts in sweep.items() if n != "math"})

# %% [markdown]
# ### Explore: attention memory against sequence length
# Move the slider. The math kernel's score matrix grows with the *square* of the sequence, the fused kernels'
# working set (q, k, v and the output) only linearly. The dashed line is the memory this run may use (the profile's
# cap under T4 emulation); grey bars are the peaks measured above, where the sweep reached that length. Each bar is one
# total: q, k and v (held before the call, the same in every row, the dotted blue line) plus what the call needs above
# them, predicted (the math kernel's scores in red, a fused kernel's output in green) or measured (grey: the measured
# peaks count only what a call allocated on top of its inputs); its label reads "inputs + what the call adds". Compare
# the second numbers of two labels, or a bar's end against the dotted line, rather than whole bars alone.

# %%
import matplotlib.pyplot as plt

from coursetools.sliders import explore


def draw_attention_memory(seq: int, *, batch: int, heads: int, head_dim: int, element: int, score_element: int,
                          limit_bytes: float, sweep: dict | None = None) -> None:
    """Show, at one sequence length, the inputs plus what each kernel needs above them, beside the memory limit."""
    # element: the bytes of one input value; score_element: those of one score as the math kernel stores it
    inputs = 3 * batch * heads * seq * head_dim * element  # q, k, v: held before the call
    scores = batch * heads * seq * seq * score_element  # math: an n x n score matrix per head
    output = batch * heads * seq * head_dim * element  # fused: only the output, no scores kept
    above = {"math, predicted: inputs + scores (b·h·n²)": scores, "fused, predicted: inputs + output (b·h·n·d)": output}
    for name, points in (sweep or {}).items():
        above |= {f"{name}, measured: inputs + peak above them": p.peak_bytes for p in points if p.seq == seq and p.peak_bytes}
    fig, ax = plt.subplots(figsize=(11, 0.8 + 0.45 * len(above)))
    gib = [v / 2**30 for v in above.values()]
    # one bar per row, the total: on a log axis stacked segments would not add up to what they look like
    drawn = ax.barh(list(above), [inputs / 2**30 + v for v in gib], label="inputs + what the call adds: predicted (red, "
                    "green), measured (grey)", color=["tab:red", "tab:green"] + ["tab:gray"] * (len(above) - 2))
    ax.bar_label(drawn, labels=[f"{inputs / 2**30:.3g} + {v:.3g} GiB" for v in gib], padding=3)
    ax.axvline(inputs / 2**30, color="tab:blue", linestyle=":", label="q, k, v alone (held before the call)")
    ax.axvline(limit_bytes / 2**30, color="black", linestyle="--", label=f"memory limit {limit_bytes / 2**30:.0f} GiB")
    ax.set(xscale="log", xlabel="GiB (log)", title=f"attention memory at {seq} tokens: the inputs plus what a call adds")
    ax.set_xlim(left=inputs / 2**30 / 8)  # the log axis starts below the inputs, so the inputs' line shows
    ax.invert_yaxis()
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    fig.tight_layout()
    plt.show()


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
# `attn_mask` in favour of `is_causal=True` where you can (flash on a GPU refuses masks); keep head dim ≤ 256; and allow
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
display(table(["attention", "prompt tokens", "ms (median)", "quartiles", "peak MiB above weights"],
              [[name, p.seq, f"{p.ms:.3g}", f"{p.quartiles[0]:.3g}-{p.quartiles[1]:.3g}", round(p.peak_bytes / MiB)]
               if p.ms is not None else [name, p.seq, f"failed: {p.error}", "", ""]
               for name, points in prefill.items() for p in points]))

# %%
prompt_lens = lesson.size("prompt_lens")
line_chart(prompt_lens, {n: [p.ms for p in pts] for n, pts in prefill.items()},
           f"{decoder} prefill time, median and quartiles", "prompt tokens", "ms", logx=True, logy=True,
           quartiles={n: [p.quartiles for p in pts] for n, pts in prefill.items()})
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
# Each round (`interleaved_decode`: eager, sdpa, eager, ..., after untimed warm-up rounds in the same order) times, for
# each implementation, `generate` for one token and for `new_tokens` tokens; a decode step is
# the difference divided by `new_tokens - 1`. Beside each speed, its share of the bandwidth bound: the bytes a step
# reads at least (every weight once, `weight_bytes_per_token`, plus the prompt's KV cache, `kv_cache_bytes`) against
# the memory bandwidth (`memory_bandwidth`: a data sheet's figure for a known GPU, else measured with a large copy).
# Below a fifth of the bound a step's time is mostly work around its kernels, and a difference between the two says
# nothing about their attention. The verdict line uses the median of the per-round ratios, which need not equal the
# ratio of the two medians in the table:

# %%
import statistics

from helpers.decoding import bound_share, kv_cache_bytes, weight_bytes_per_token
from helpers.evaluation import interleaved_decode
from helpers.limits import memory_bandwidth

bandwidth, bandwidth_source = memory_bandwidth(lesson.device)
prompt = torch.randint(0, decoders["sdpa"].config.vocab_size, (1, prompt_lens[0]), device=lesson.device)
speeds = interleaved_decode({name: (model, prompt, {}) for name, model in decoders.items()},
                            new_tokens=lesson.size("new_tokens"), warmup=lesson.warmup(), rounds=lesson.rounds())
decode_tok_s, shares, rows = {}, {}, []
for name, tok_s in speeds.items():  # one tok/s a round (batch 1: a token is one decode step)
    model = decoders[name]
    read = weight_bytes_per_token(model) + kv_cache_bytes(model.config, prompt_lens[0], element_bytes=model.dtype.itemsize)
    decode_tok_s[name] = spread(tok_s)  # tok/s: median and quartiles of the rounds
    shares[name] = bound_share(decode_tok_s[name][0], read, bandwidth)
    step_ms = [1e3 / rate for rate in tok_s]  # the same rounds as ms per decode step
    rows.append([name, statistics.median(step_ms), decode_tok_s[name][0],
                 f"{decode_tok_s[name][1]:.3g}-{decode_tok_s[name][2]:.3g}", read / GiB, 100 * shares[name][0]])
display(table(["attention", "ms/step", "tok/s", "quartiles", "read GiB/step", "% of bound"], rows))
print(f"batch 1, prompt {prompt_lens[0]}, {len(speeds['sdpa'])} rounds; bandwidth {bandwidth / 1e9:.0f} GB/s "
      f"({bandwidth_source})")
decode_ratio = paired_ratio(speeds["sdpa"], speeds["eager"])
lower = min(shares, key=lambda name: shares[name][0])
print(f"sdpa decode against eager: {compare(decode_ratio)}; {lower}'s step is at {shares[lower][1]}")
del decoders

# %% [markdown]
# ### Same answers
# Both implementations compute the same function. In float32 SmolLM2-135M-Instruct (the output line that begins
# `smollm2-135m:` says which weights; a packaged 4-bit GGUF is dequantized to 16 bits first; either way loaded here in
# float32) gives the same greedy answers with either (the lesson's last cell checks it). The check is about agreement,
# not correctness: a 135M model after a 4-bit round trip can answer wrongly with both. In bf16 (not run here) the two
# can round differently, and where two next tokens are nearly tied a greedy answer can then take another path:
# rounding, not a bug.

# %%
from helpers.models import load_tokenizer
from helpers.quality import PROMPTS, ask

print(weights_in_use("smollm2-135m"))
tokenizer = load_tokenizer("smollm2-135m")
answers = {}
for impl in ("eager", "sdpa"):
    model = AutoModelForCausalLM.from_pretrained(pretrained_path("smollm2-135m"), dtype=torch.float32,
                                                 device_map=lesson.device, attn_implementation=impl).eval()
    answers[impl] = {question: ask(model, tokenizer, question) for question in PROMPTS}
for prompt_text in PROMPTS:
    print(f"{prompt_text}\n  eager: {answers['eager'][prompt_text]}\n  sdpa:  {answers['sdpa'][prompt_text]}")

# %% [markdown]
# ## Summary
# * Load with `attn_implementation="sdpa"` (the default where the model supports it); let SDPA choose the kernel
#   unless you are measuring.
# * `sdpa_kernel(backends)` only allows; `set_priority=True` makes the list's order the order SDPA tries them. The
#   deprecated `sdp_kernel` also allows cuDNN unless you pass `enable_cudnn=False`.
# * By default the math kernel computes half-precision inputs in float32: each of its N × N scores takes 4 bytes,
#   not 2.
# * On a GPU, flash and cuDNN need half precision and sm80 or newer, and flash takes no explicit mask. On a T4 (sm75) neither
#   runs, which leaves the memory-efficient and math kernels (PyTorch's checks in `sdp_utils.cpp`; the probe above
#   lists each backend's reasons for given inputs). Whether SDPA then beats eager on a T4 is not shown in these
#   outputs: a run on a T4 (or the course's T4 emulation) records it as `prefill_sdpa_vs_eager`.

# %%
lesson.record(
    **({"fused_vs_math_at_headline": fused_vs_math} if fused_vs_math else {}),  # not measured: left out
    prefill_sdpa_vs_eager=prefill_ratio,
    decode_sdpa_tok_s=decode_tok_s["sdpa"],
    decode_eager_tok_s=decode_tok_s["eager"],
)

# %% [markdown]
# What this run measured, read from the variables above:

# %%
print(f"math kernel's scores for {dtype} inputs: {score_dtype} ({score_element} bytes a score; the probes' dtypes "
      "are checked against the rule in the last cell)")
if fused_vs_math:
    print(f"attention at {seq} tokens, {batch} x {heads} heads: {chosen} against math, interleaved: "
          f"{compare(fused_vs_math)}; the sweep's ratio of medians: {sweep_ratio:.3g}x")
print(f"math kernel's peak at {seq} tokens: "
      + (f"{math_at_headline.peak_bytes / MiB:.0f} MiB, {math_at_headline.peak_bytes / (batch * heads * seq**2 * score_element):.2f} "
         "score matrices" if math_at_headline.peak_bytes else "out of memory or refused")
      + f"; math failed at {math_failed_at or 'no length in this sweep'}")
print(f"{decoder} prefill of {longest} tokens: sdpa against eager: {compare(prefill_ratio)}")
for name, (median_tok_s, low, high) in decode_tok_s.items():
    print(f"{decoder} decode with {name}: {median_tok_s:.1f} tok/s (quartiles {low:.1f}-{high:.1f}), "
          f"{100 * shares[name][0]:.1f}% of the bandwidth bound")
print(f"sdpa decode against eager: {compare(decode_ratio)}; {lower}'s step is at {shares[lower][1]}")
print(f"SmolLM2 greedy answers, eager and sdpa: {'the same' if answers['eager'] == answers['sdpa'] else 'different'}")

# %% [markdown]
# The lesson's checks, last so that a failing one leaves the measurements above recorded: attention in four lines agrees
# with SDPA within 1e-4; inside `sdpa_kernel` the kernel that ran follows SDPA's own order with `set_priority=False`
# and the list's with `True`; every dtype probe of the math kernel's softmax agrees with torch's rule, on both settings
# of the switch; wherever the math kernel ran, its peak held
# at least two score matrices (scores and weights at once) in the rule's dtype; and eager and sdpa attention give the
# same greedy answers.

# %%
from coursetools.checks.lesson02 import agreement_problem, math_peak_problem, priority_problem, score_dtype_problem

problems = [agreement_problem(difference.item()),
            priority_problem(picked, priority_order(), listed, runs_here),
            score_dtype_problem(probes),
            math_peak_problem({p.seq: p.peak_bytes for p in math_ran}, batch, heads, score_element),
            None if answers["eager"] == answers["sdpa"] else f"the greedy answers differ: {answers}"]
problems = [problem for problem in problems if problem]
assert not problems, problems
priority_held = ("the priority rule held both ways" if picked[False] != picked[True] else
                 f"the priority rule held, but both settings run {picked[True]} here, so this machine does not tell "
                 "them apart")
print(f"checks passed: four lines and SDPA within {AGREEMENT_TOLERANCE:g} | {priority_held} | {len(probes)} dtype "
      "probes follow the rule | the math kernel held at least two score matrices "
      f"at {len(math_ran)} lengths | eager and sdpa give the same greedy answers")
