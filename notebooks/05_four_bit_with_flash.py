# %% [markdown] tags=["colab-badge"]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/efficient-inference-course/efficient-inference-course/blob/v0.2.0/notebooks/05_four_bit_with_flash.ipynb)
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

    bootstrap(home, lesson="05")

# %% [markdown]
# # 05 · Combining 4-bit weights with flash attention
#
# The 2023 guide's advanced recipe: load with `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float16)`
# and wrap `generate` in `torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=False, enable_mem_efficient=False)`.
# Today the wrapper is `torch.nn.attention.sdpa_kernel([SDPBackend.FLASH_ATTENTION])` (lesson 02). This lesson measures
# the whole matrix, weights {16-bit, nf4, int8} × attention {eager, SDPA flash, SDPA cuDNN}, at a short and a long
# context, then asks how close decoding gets to the hardware's limit.
#
# **Which SmolLM2 weights.** Offline, the course's `smollm2-135m` is the packaged **Q4_1 GGUF**, dequantized to 16
# bits when loaded: its "16-bit baseline" has already been through 4-bit quantization once, so every quality figure
# below (perplexity, answers) is relative to that model, not to the original. Where the Hub is reachable, loading
# `HuggingFaceTB/SmolLM2-135M-Instruct` with the same calls measures against the full-precision original.

# %%
from helpers.lesson import start_lesson

lesson = start_lesson("05")

# %% [markdown]
# ## The matrix
# On the CPU profile the "16-bit" row is float32: CPUs without bf16 matrix units run bf16 slower than float32, and the
# point of this row is the unquantized baseline. Each cell: footprint, prefill time and peak memory at each context, decode tokens/s at batch 1 and at a larger
# batch. "flash" and "cuDNN" are the same `attn_implementation="sdpa"` model with only that SDPA kernel allowed; a
# kernel the machine lacks shows up as a refusal, not a crash.

# %%
import torch
from tqdm.auto import tqdm

from helpers.evaluation import measure_combination
from helpers.models import load_causal_lm
from helpers.quantization import bnb_config

name = lesson.size("model")
half = getattr(torch, lesson.size("half"))
contexts = lesson.size("contexts")
weights = {
    lesson.size("half"): (half, None),
    "nf4": (half, bnb_config("nf4", half)),
    "int8": (torch.float16, bnb_config("int8")),
}
attention = {"eager": ("eager", None), "sdpa flash": ("sdpa", "flash"), "sdpa cuDNN": ("sdpa", "cudnn")}
timing = {"warmup": 1, "repeats": 3}  # generation is long: few repeats, medians still reported
matrix = {}
for (w_name, (dtype, config)), (a_name, (impl, backend)) in tqdm(
    [(w, a) for w in weights.items() for a in attention.items()], desc="combinations"
):
    model, _ = load_causal_lm(name, dtype=dtype, device=lesson.device, attn_implementation=impl,
                              quantization_config=config)
    matrix[(w_name, a_name)] = measure_combination(model, backend, contexts, new_tokens=lesson.size("new_tokens"),
                                                   batch=lesson.size("batch"), **timing)
    del model
    if lesson.device == "cuda":
        torch.cuda.empty_cache()

# %%
short, long = contexts[0], contexts[-1]
print(f"{name} on {lesson.device}; prefill ms / peak MiB at {short} and {long} tokens; decode tok/s at batch 1 and "
      f"{lesson.size('batch')}")
print(f"{'weights':<10}{'attention':<12}{'MiB':>7}{'pf ' + str(short):>10}{'pk ' + str(short):>9}"
      f"{'pf ' + str(long):>10}{'pk ' + str(long):>9}{'tok/s':>8}{'batch':>9}")
for (w_name, a_name), r in matrix.items():
    if r.error:
        print(f"{w_name:<10}{a_name:<12}  refused: {r.error[:80]}")
        continue
    cells = [r.prefill_ms[short], r.peak_bytes[short], r.prefill_ms[long], r.peak_bytes[long]]
    shown = "".join(f"{'OOM':>10}" if v is None else (f"{v:>10.1f}" if i % 2 == 0 else f"{v / 2**20:>9.0f}")
                    for i, v in enumerate(cells))
    print(f"{w_name:<10}{a_name:<12}{r.footprint_bytes / 2**20:>7.0f}{shown}{r.decode_tokens_per_s:>8.1f}"
          f"{r.batch_tokens_per_s:>9.1f}")

# %%
import matplotlib.pyplot as plt

ran = {key: r for key, r in matrix.items() if not r.error and r.prefill_ms.get(long) is not None}
fig, ax = plt.subplots(figsize=(7, 4.5))
for (w_name, a_name), r in ran.items():
    ax.scatter(r.peak_bytes[long] / 2**20 + r.footprint_bytes / 2**20, r.decode_tokens_per_s, s=60)
    ax.annotate(f"{w_name}, {a_name}", (r.peak_bytes[long] / 2**20 + r.footprint_bytes / 2**20, r.decode_tokens_per_s),
                fontsize=8, xytext=(4, 4), textcoords="offset points")
ax.set(xlabel=f"weights + prefill peak at {long} tokens (MiB)", ylabel="decode tokens/s (batch 1)",
       title="memory against speed: down-left is small, up is fast")
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Exercise
# Before the next cell computes it: which measured combination (a key of `ran`) needs the least memory to
# serve the longest context `long`, counting its weights (`footprint_bytes`) plus its prefill peak (`peak_bytes[long]`)?
# Write it as `answer = ...` and run the check below it. A solution is in
# [`workshop/solutions/05.py`](../workshop/solutions/05.py).

# %% tags=["exercise"]
answer = ...  # your answer

# %%
from helpers.exercises import check

check("05", answer, ran=ran, long=long)

# %% [markdown]
# ## Which combination for which goal
# Computed from the measurements above (not typed): the best cell for each goal.

# %%
goals = {
    "fit the biggest model (smallest weights)": min(ran, key=lambda k: ran[k].footprint_bytes),
    f"longest context (least prefill memory at {long})": min(ran, key=lambda k: ran[k].peak_bytes[long]),
    "lowest latency (fastest batch-1 decode)": max(ran, key=lambda k: ran[k].decode_tokens_per_s),
    f"lowest time to first token at {long}": min(ran, key=lambda k: ran[k].prefill_ms[long]),
    f"highest throughput (decode at batch {lesson.size('batch')})": max(ran, key=lambda k: ran[k].batch_tokens_per_s),
}
for goal, (w_name, a_name) in goals.items():
    print(f"{goal:<50} -> {w_name} weights, {a_name}")

# %% [markdown]
# ### Quality of each weight format
# Attention kernels compute the same function (lesson 02), so quality depends on the weights alone. Perplexity of the
# real SmolLM2 in each format, on the course text:

# %%
from helpers.quality import perplexity

quality = {}
for w_name, (dtype, config) in weights.items():
    real, tok = load_causal_lm("smollm2-135m", dtype=dtype, device=lesson.device, quantization_config=config)
    quality[w_name] = perplexity(real, tok, max_tokens=lesson.size("eval_tokens"))
    del real
print("perplexity:", {k: round(v, 2) for k, v in quality.items()})

# %% [markdown]
# ## Why compute dtype matters for flash
# The seed set `bnb_4bit_compute_dtype=torch.float16` for a reason. Flash (and cuDNN) attention take only fp16/bf16.
# If the non-quantized parts of the model are float32 (load without a half dtype), the hidden states reaching attention
# are float32, and a flash-only `generate` fails with "No available kernel". The fix: a half dtype for the model and
# the compute.

# %%
from torch.nn.attention import SDPBackend, sdpa_kernel

from helpers.attention import probe_backends

broken, _ = load_causal_lm(name, dtype=torch.float32, device=lesson.device, attn_implementation="sdpa",
                           quantization_config=bnb_config("nf4", torch.float32))
prompt = torch.randint(0, broken.config.vocab_size, (1, 32), device=lesson.device)
try:
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        broken.generate(prompt, max_new_tokens=2, do_sample=False)
    print("flash ran on float32 states: this machine's flash kernel takes float32 (CPU), so no error here")
except RuntimeError as err:
    print(f"float32 model + nf4: {str(err).splitlines()[0]}")
del broken
fixed, _ = load_causal_lm(name, dtype=half, device=lesson.device, attn_implementation="sdpa",
                          quantization_config=bnb_config("nf4", half))
with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
    fixed.generate(prompt, max_new_tokens=2, do_sample=False)
print(f"{half} model + nf4 with {half} compute: flash runs")
q = torch.randn(1, 8, 64, 64, device=lesson.device)
print("flash on float32 inputs here:", probe_backends(q, q, q, is_causal=True)["flash"])
del fixed

# %% [markdown]
# ## Decode against the bandwidth bound
# At batch 1, each new token reads every weight once: tokens/s ≤ memory bandwidth ÷ weight bytes. How close does
# `generate` get? On a GPU we then remove Python and kernel-launch overhead with a **static KV cache** and
# compilation: with `cache_implementation="static"`, transformers compiles the decoding step with `torch.compile`
# (CUDA graphs), to see how much of the gap was overhead rather than memory. (Compiling `model.forward` by hand with
# `mode="reduce-overhead"` and calling `generate` failed on the H100 with "accessing tensor output of CUDAGraphs that
# has been overwritten": let `generate` manage the compiled step.)

# %%
from helpers.limits import decode_bound_tokens_per_s, memory_bandwidth

bandwidth, source = memory_bandwidth(lesson.device)
print(f"memory bandwidth {bandwidth / 1e9:.0f} GB/s ({source})")
bound_rows = {}
for w_name in weights:
    r = matrix[(w_name, "sdpa flash")] if not matrix[(w_name, "sdpa flash")].error else matrix[(w_name, "eager")]
    bound = decode_bound_tokens_per_s(r.footprint_bytes, bandwidth)
    bound_rows[w_name] = (r.decode_tokens_per_s, bound)
    print(f"{w_name:<10} {r.decode_tokens_per_s:8.1f} tok/s of a {bound:8.0f} tok/s bound: "
          f"{100 * r.decode_tokens_per_s / bound:5.1f}%")

# %%
from helpers.timing import benchmark_generation

compiled_speedup = None
if not lesson.size("compile"):
    print("skipped on the cpu profile: torch.compile with CUDA graphs is the GPU part of this lesson")
else:
    model, _ = load_causal_lm(name, dtype=half, device=lesson.device)
    prompt = torch.randint(0, model.config.vocab_size, (1, contexts[0]), device=lesson.device)
    plain = benchmark_generation(model, prompt, new_tokens=lesson.size("new_tokens"), **timing)
    bound = decode_bound_tokens_per_s(matrix[(lesson.size("half"), "eager")].footprint_bytes, bandwidth)
    try:  # a static cache makes transformers compile the decoding step itself (torch.compile, CUDA graphs)
        fast = benchmark_generation(model, prompt, new_tokens=lesson.size("new_tokens"), warmup=3,
                                    repeats=timing["repeats"], cache_implementation="static")
    except RuntimeError as err:
        fast = None
        print(f"static cache + compile failed here: {str(err).splitlines()[0][:200]}")
    for label, result in (("generate, dynamic cache", plain), ("static cache, compiled", fast)):
        if result is not None:
            print(f"{label:<30} {result.decode_tokens_per_s:8.1f} tok/s = "
                  f"{100 * result.decode_tokens_per_s / bound:5.1f}% of the {bound:.0f} tok/s bound")
    if fast is not None:
        compiled_speedup = fast.decode_tokens_per_s / plain.decode_tokens_per_s
        print(f"compiled static-cache decode: {compiled_speedup:.2f}x the eager generate")
    del model

# %% [markdown]
# The gap between the plain `generate` and the bound is mostly overhead: hundreds of small kernels per token,
# launched from Python. Compilation fuses kernels and CUDA graphs replay a whole step in one launch. The remaining gap is
# real work the bound ignores (attention over the cache, norms, sampling) and kernels that do not reach peak bandwidth.
# 4-bit weights need fewer bytes but add dequantization work, so their share of the bound is lower unless the kernel
# fuses the two (bitsandbytes' batch-1 4-bit kernels are the closest here).

# %%
lesson.record(
    **{f"decode_{w}_pct_of_bound": 100 * speed / bound for w, (speed, bound) in bound_rows.items()},
    **{f"ppl_{w}": v for w, v in quality.items()},
    **({"compiled_static_vs_eager_decode": compiled_speedup} if compiled_speedup else {}),
)
