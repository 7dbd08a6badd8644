# %% [markdown] tags=["colab-badge"]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/efficient-inference-course/efficient-inference-course/blob/v0.2.0/notebooks/02_decoder_attention.ipynb)
# In Colab, run the set-up cell below first (about a minute; choose a T4 GPU runtime for full size). Elsewhere it does nothing.

# %% tags=["colab-setup"]
# Set-up for Colab (written by coursetools/badges.py): installs the course at v0.2.0. Elsewhere it does nothing.
import os
import subprocess
import sys

if "google.colab" in sys.modules or "COURSE_BOOTSTRAP_FROM" in os.environ:
    home = os.environ.get("COURSE_HOME", "/content/efficient-inference-course")
    if not os.path.isdir(home):
        source = os.environ.get("COURSE_BOOTSTRAP_FROM", "https://github.com/efficient-inference-course/efficient-inference-course.git")
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", "v0.2.0", source, home], check=True)
    sys.path.insert(0, home)
    from coursetools.bootstrap import bootstrap

    bootstrap(home, lesson="02")

# %% [markdown]
# # 02 · Decoder attention: SDPA and its kernels
#
# The 2023 guide converted decoders with `model.to_bettertransformer()` so that attention ran through
# `torch.nn.functional.scaled_dot_product_attention` (SDPA), and chose the flash kernel with
# `torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=False, enable_mem_efficient=False)`.
# For `RuntimeError: No available kernel. Aborting execution.` it advised a nightly PyTorch or fp16.
#
# Today: transformers uses SDPA by default (`attn_implementation="sdpa"`, or `"eager"` for the plain version),
# the context manager is `torch.nn.attention.sdpa_kernel`, and the error has reasons you can read. This lesson
# builds attention from scratch, times each SDPA kernel, and explains when a kernel refuses to run.

# %%
from helpers.lesson import start_lesson

lesson = start_lesson("02")

# %% [markdown]
# ## Attention in four lines
# Scores are every query against every key, scaled; a causal mask hides the future; softmax turns scores into
# weights; the output is the weighted sum of values. `F.scaled_dot_product_attention` computes the same thing.

# %%
import math

import torch
import torch.nn.functional as F


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
# weights, and reads them again. At long sequences attention is limited by that memory, not by arithmetic:

# %%
from helpers.memory import GiB

batch, heads, head_dim = lesson.size("batch"), lesson.size("heads"), lesson.size("head_dim")
dtype = getattr(torch, lesson.size("dtype"))
element = torch.finfo(dtype).bits // 8
for seq in lesson.size("seq_lens"):
    print(f"seq {seq:>6}: scores {batch * heads * seq * seq * element / GiB:8.2f} GiB  "
          f"vs q, k, v and output {4 * batch * heads * seq * head_dim * element / GiB:6.3f} GiB")

# %% [markdown]
# ### Exercise
# How many bytes does the math kernel's score matrix take at 8192 tokens, with this lesson's `batch`, `heads` and
# `element` (bytes per value)?
# Write it as `answer = ...` and run the check below it. A solution is in
# [`workshop/solutions/02.py`](../workshop/solutions/02.py).

# %% tags=["exercise"]
answer = ...  # your answer

# %%
from helpers.exercises import check

check("02", answer, batch=batch, heads=heads, element=element)

# %% [markdown]
# ## What a fused kernel changes
# FlashAttention (and PyTorch's memory-efficient and cuDNN kernels) never materialise `scores`. They load a tile
# of queries and a tile of keys into the GPU's fast on-chip memory, compute that tile's scores, and keep a
# **running (online) softmax**: the maximum and the sum seen so far, rescaling the partial output whenever a new
# maximum appears. Memory becomes linear in the sequence, and each element is read once.
#
# SDPA has four backends:
#
# | backend | where | needs |
# |---|---|---|
# | `MATH` | everywhere | nothing: the four lines above, in C++ |
# | `FLASH_ATTENTION` | CUDA sm80+ (A100, H100; not T4), also a CPU version | fp16/bf16 on GPU, head dim ≤ 256, **no explicit `attn_mask`** |
# | `EFFICIENT_ATTENTION` | CUDA sm50+ | fp32 too; bf16 needs sm80; accepts masks |
# | `CUDNN_ATTENTION` | CUDA sm80+ with recent cuDNN | fp16/bf16; first choice on H100 |
#
# Which of them run on *this* machine, for the inputs of this lesson, and which one SDPA picks by itself:

# %%
from helpers.attention import default_backend, probe_backends

seq = lesson.size("headline_seq")
q, k, v = (torch.randn(batch, heads, seq, head_dim, device=lesson.device, dtype=dtype) for _ in range(3))
for verdict in probe_backends(q, k, v, is_causal=True).values():
    print(verdict)
print("SDPA picks by itself:", default_backend(q, k, v, is_causal=True))

# %% [markdown]
# ## Every backend, side by side, against sequence length
# Same inputs for each backend; peak memory is what the call needed above what was already allocated. On a GPU
# we also compute achieved TFLOP/s (matrix FLOPs of attention ÷ time) beside the data-sheet peak.

# %%
from helpers.attention import BACKENDS, attention_flops, sweep_sequence_lengths
from helpers.limits import peak_flops_16bit

runnable = [name for name, verdict in probe_backends(q, k, v, is_causal=True).items() if verdict.runs]
del q, k, v
sweep = sweep_sequence_lengths(runnable, lesson.size("seq_lens"), batch=batch, heads=heads, head_dim=head_dim,
                               dtype=dtype, device=lesson.device, warmup=lesson.profile.warmup,
                               repeats=lesson.profile.repeats)
peak_flops, peak_source = peak_flops_16bit(lesson.device)
print(f"{'backend':<10}{'seq':>7}{'ms':>10}{'peak MiB':>10}{'TFLOP/s':>9}")
for name, points in sweep.items():
    for p in points:
        if p.ms is None:
            print(f"{name:<10}{p.seq:>7}   failed: {p.error}")
            continue
        tflops = attention_flops(batch, heads, p.seq, head_dim, causal=True) / (p.ms / 1e3) / 1e12
        print(f"{name:<10}{p.seq:>7}{p.ms:>10.2f}{p.peak_bytes / 2**20:>10.0f}{tflops:>9.2f}")
print("peak 16-bit tensor FLOP/s:", f"{peak_flops / 1e12:.0f} TFLOP/s ({peak_source})" if peak_flops else peak_source)

# %%
from helpers.plots import line_chart

seq_lens = lesson.size("seq_lens")
line_chart(seq_lens, {n: [p.ms for p in pts] for n, pts in sweep.items()}, "attention time (gaps: failed)",
           "sequence length", "ms", logx=True, logy=True)
line_chart(seq_lens, {n: [p.peak_bytes / 2**20 if p.peak_bytes else None for p in pts] for n, pts in sweep.items()},
           "attention peak memory above inputs", "sequence length", "MiB", logx=True, logy=True)

# %%
headline = {name: next(p.ms for p in pts if p.seq == seq) for name, pts in sweep.items()}
fastest = min((name for name in headline if name != "math" and headline[name]), key=lambda n: headline[n], default=None)
speedup_vs_math = headline["math"] / headline[fastest] if fastest and headline["math"] else None
math_failed_at = [p.seq for p in sweep["math"] if p.ms is None]
if fastest:
    print(f"seq {seq}, {dtype}: {fastest} is {speedup_vs_math:.1f}x faster than math")
print("math failed at:", math_failed_at or "no length in this sweep",
      "| fused kernels still ran there:",
      {n: [p.seq for p in pts if p.ms is not None and p.seq in math_failed_at] for n, pts in sweep.items() if n != "math"})

# %% [markdown]
# ### Explore: attention memory against sequence length
# Move the slider. The math kernel's score matrix grows with the *square* of the sequence, the fused kernels'
# working set (q, k, v and the output) only linearly. The dashed line is the memory this run may use (the profile's
# cap under T4 emulation); grey bars are the peaks measured above, where the sweep reached that length.

# %%
from functools import partial

from helpers.attention import draw_attention_memory
from helpers.widgets import explore

explore(partial(draw_attention_memory, batch=batch, heads=heads, head_dim=head_dim, element=element,
                limit_bytes=lesson.memory_limit_bytes, sweep=sweep),
        seq=([2**i for i in range(9, 18)], lesson.size("headline_seq")))

# %% [markdown]
# ## "No available kernel": reproduce it, read it, avoid it
# The error means: every backend you allowed refused these inputs. Forcing a single backend is how people meet it,
# e.g. flash only, with inputs flash does not take (float32 on a GPU; on a CPU, a GPU-only backend).
# PyTorch says *why* in warnings printed just before the error; `probe_backends` collects them.

# %%
from helpers.attention import run_with_backend

forced = "flash" if lesson.device == "cuda" else "cudnn"
q32 = torch.randn(1, 8, 256, 64, device=lesson.device, dtype=torch.float32)
try:
    run_with_backend(forced, q32, q32, q32, is_causal=True)
    print(f"{forced} ran")
except RuntimeError as err:
    print(f"RuntimeError with only {forced} allowed on float32 inputs:\n  {str(err).splitlines()[0]}")
print("\nwhy, per backend:")
for verdict in probe_backends(q32, q32, q32, is_causal=True).values():
    print(" ", verdict)

# %% [markdown]
# The fixes, in order: use fp16/bf16 for flash and cuDNN (the seed's advice, still right); drop an explicit
# `attn_mask` in favour of `is_causal=True` where you can (flash refuses masks); keep head dim ≤ 256; and allow
# more than one backend: `sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION])` falls back
# instead of failing. The list allows backends; PyTorch still tries them in its own priority order unless you pass
# `set_priority=True` (default `False`), which makes the list's order the priority. On a GPU you can ask before running:
# `torch.backends.cuda.can_use_flash_attention(torch.backends.cuda.SDPAParams(q, k, v, None, 0.0, True, False), debug=True)`
# prints the same reasons. A nightly PyTorch is no longer the answer.

# %%
if lesson.device == "cuda":
    half = q32.to(torch.float16)
    print("same call in float16:", "runs" if probe_backends(half, half, half, is_causal=True)[forced].runs else "refused")

# %% [markdown]
# ### Migration: the old context manager
# `torch.backends.cuda.sdp_kernel(enable_flash=..., enable_math=..., enable_mem_efficient=...)` still exists as a
# deprecated wrapper; it warns, and it now also allows cuDNN unless told otherwise. The current spelling names the
# backends allowed:

# %%
import warnings

from torch.nn.attention import SDPBackend, sdpa_kernel

x = torch.randn(1, 2, 16, 64, device=lesson.device, dtype=torch.float16 if lesson.device == "cuda" else torch.float32)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=False, enable_mem_efficient=False):
        old = F.scaled_dot_product_attention(x, x, x)
print(f"{caught[0].category.__name__}: {str(caught[0].message).split('. ')[0]}")
with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):  # today's spelling
    new = F.scaled_dot_product_attention(x, x, x)
print("same result:", torch.equal(old, new))

# %% [markdown]
# ## A real decoder: `attn_implementation="eager"` vs `"sdpa"`
# transformers picks SDPA by default; `"eager"` is the plain implementation (like `attention_from_scratch`).
# We measure a prompt's forward pass (prefill) and its peak memory against prompt length.
# On a GPU the model is a Llama-1B-shaped decoder with synthetic weights (speed and memory are real; its text is
# not), on a CPU the real SmolLM2-135M.

# %%
from helpers.attention import sweep_prefill
from helpers.models import load_causal_lm

decoder = lesson.size("decoder")
decoders = {impl: load_causal_lm(decoder, dtype=lesson.profile.dtype, device=lesson.device,
                                 attn_implementation=impl)[0] for impl in ("eager", "sdpa")}
prefill = sweep_prefill(decoders, lesson.size("prompt_lens"), vocab_size=decoders["sdpa"].config.vocab_size,
                        device=lesson.device, warmup=lesson.profile.warmup, repeats=lesson.profile.repeats)
for name, points in prefill.items():
    for p in points:
        shown = f"{p.ms:9.1f} ms {p.peak_bytes / 2**20:8.0f} MiB" if p.ms is not None else f"failed: {p.error}"
        print(f"{name:<6} prompt {p.seq:>5}: {shown}")

# %%
prompt_lens = lesson.size("prompt_lens")
line_chart(prompt_lens, {n: [p.ms for p in pts] for n, pts in prefill.items()}, f"{decoder} prefill time",
           "prompt tokens", "ms", logx=True, logy=True)
line_chart(prompt_lens, {n: [p.peak_bytes / 2**20 if p.peak_bytes else None for p in pts] for n, pts in prefill.items()},
           f"{decoder} prefill peak memory above weights", "prompt tokens", "MiB", logx=True, logy=True)
longest = max(p.seq for p in prefill["eager"] if p.ms is not None)
eager_ms, sdpa_ms = (next(p.ms for p in prefill[n] if p.seq == longest) for n in ("eager", "sdpa"))
prefill_speedup = eager_ms / sdpa_ms
print(f"prompt {longest}: sdpa prefill {prefill_speedup:.1f}x faster than eager")

# %% [markdown]
# Decoding (one new token at a time, reading the KV cache) attends one query to all keys: there is no N × N matrix,
# so the two implementations should decode at similar speed. Measured:

# %%
from helpers.timing import benchmark_generation

prompt = torch.randint(0, decoders["sdpa"].config.vocab_size, (1, prompt_lens[0]), device=lesson.device)
decode = {name: benchmark_generation(model, prompt, new_tokens=lesson.size("new_tokens"), warmup=lesson.profile.warmup,
                                     repeats=max(2, lesson.profile.repeats // 2)) for name, model in decoders.items()}
for name, result in decode.items():
    print(f"{name:<6} {result}")
del decoders

# %% [markdown]
# ### Same answers
# Both implementations compute the same function. In float32 the real SmolLM2 gives the same greedy answers with
# either; in bf16 the two round differently, and where two next tokens are nearly tied a greedy answer can take
# another (equally plausible) path, which is rounding, not a bug.

# %%
from helpers.quality import PROMPTS, greedy_answers

answers = {impl: greedy_answers(*load_causal_lm("smollm2-135m", dtype=torch.float32, device=lesson.device,
                                                attn_implementation=impl)) for impl in ("eager", "sdpa")}
for prompt_text in PROMPTS:
    print(f"{prompt_text}\n  eager: {answers['eager'][prompt_text]}\n  sdpa:  {answers['sdpa'][prompt_text]}")

# %%
# NBVAL_CHECK_OUTPUT
assert answers["eager"] == answers["sdpa"]
print("eager and sdpa give the same greedy answers")

# %% [markdown]
# ## Summary
# * Use `attn_implementation="sdpa"` (the default); let SDPA choose the kernel unless you are measuring.
# * Flash and cuDNN need half precision and (flash) no explicit mask; on a T4 (sm75) there is no flash kernel and
#   SDPA uses the memory-efficient one.
# * When you force a kernel, allow a fallback list, and read the warnings: they name the reason.

# %%
lesson.record(
    fused_vs_math_at_headline=speedup_vs_math or float("nan"),
    prefill_sdpa_vs_eager=prefill_speedup,
    decode_sdpa_tok_s=decode["sdpa"].decode_tokens_per_s,
    decode_eager_tok_s=decode["eager"].decode_tokens_per_s,
)
