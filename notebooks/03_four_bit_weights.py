# %% [markdown] tags=["colab-badge"]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/efficient-inference-course/efficient-inference-course/blob/v0.2.0/notebooks/03_four_bit_weights.ipynb)
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

    bootstrap(home, lesson="03")

# %% [markdown]
# # 03 · 4-bit weights: FP4 and NF4 with bitsandbytes
#
# The 2023 guide: `AutoModelForCausalLM.from_pretrained("bigscience/bloom-2b5", device_map="auto", load_in_4bit=True)`,
# "up to 8× smaller than full precision". Today the options live in a `BitsAndBytesConfig`, and bitsandbytes 0.50
# runs 4-bit on CPUs too. This lesson opens the box (what a 4-bit weight *is*), then measures what it costs and
# saves: footprint, perplexity, answers, speed.
#
# **Which SmolLM2 weights.** Offline, the course's `smollm2-135m` is the packaged **Q4_1 GGUF**, dequantized to 16
# bits when loaded: its "16-bit baseline" has already been through 4-bit quantization once, so every quality figure
# below (perplexity, answers) is relative to that model, not to the original. Where the Hub is reachable, loading
# `HuggingFaceTB/SmolLM2-135M-Instruct` with the same calls measures against the full-precision original.

# %%
from helpers.lesson import start_lesson

lesson = start_lesson("03")

# %% [markdown]
# ## What 4-bit blockwise quantization does
# A weight matrix is cut into blocks of 64 values. Each block stores its largest magnitude (**absmax**, one float)
# and, for every weight, a 4-bit index into a **code book** of 16 values between -1 and 1. To use the weight,
# bitsandbytes multiplies the code by the block's absmax. Two code books exist:
# **FP4**, a tiny floating-point format, and **NF4**, whose 16 values are quantiles of a normal distribution:
# trained weights are roughly normal, so NF4 spends its codes where the weights are.

# %%
import matplotlib.pyplot as plt
import torch

from helpers.quantization import code_book

fig, ax = plt.subplots(figsize=(8, 1.8))
for row, kind in enumerate(("fp4", "nf4")):
    values = code_book(kind)
    ax.scatter(values, [row] * 16, s=40)
    print(f"{kind}: {[round(v, 3) for v in values.tolist()]}")
ax.set_yticks([0, 1], ["FP4", "NF4"])
ax.set_xlabel("value (× block absmax)")
ax.set_title("the 16 values of each 4-bit code book", loc="left")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Exercise
# A block's absmax is 1.2 and one of its weights is 0.3. Which index (0 to 15) of `code_book("nf4")` stores
# that weight?
# Write it as `answer = ...` and run the check below it. A solution is in
# [`workshop/solutions/03.py`](../workshop/solutions/03.py).

# %% tags=["exercise"]
answer = ...  # your answer

# %%
from helpers.exercises import check

check("03", answer)

# %% [markdown]
# The whole method in five lines (`helpers.quantization.quantize_from_scratch`), applied to a real weight matrix of
# SmolLM2, and checked against bitsandbytes' own kernels. For NF4 the two agree exactly; bitsandbytes' FP4 rounds a
# few values near the code book's tiny ±0.005 entries differently from "nearest code", so a small share differs.

# %%
import inspect

from helpers.models import load_causal_lm
from helpers.quantization import bitsandbytes_round_trip, quantize_from_scratch

print(inspect.getsource(quantize_from_scratch))
half = getattr(torch, lesson.size("half"))
model, tokenizer = load_causal_lm("smollm2-135m", dtype=torch.float32)
weight = model.model.layers[0].mlp.down_proj.weight.detach()
errors = {}
for kind in ("fp4", "nf4"):
    ours, theirs = quantize_from_scratch(weight, kind), bitsandbytes_round_trip(weight, kind)
    errors[kind] = (ours - weight).abs().mean().item()
    differ = (ours != theirs).float().mean().item()
    print(f"{kind}: mean |error| {errors[kind]:.5f}; ours and bitsandbytes differ on {100 * differ:.3f}% of weights")

# %%
# NBVAL_CHECK_OUTPUT
assert errors["nf4"] < errors["fp4"]
print("NF4 reconstructs this real weight matrix with less error than FP4")

# %% [markdown]
# Why NF4 wins: the weights of a block, divided by their absmax, pile up near zero like a bell curve. NF4's codes are
# dense where the weights are; FP4 wastes codes near ±1 and has few between 0.17 and 0.5.

# %%
blocks = weight.reshape(-1, 64)
normalised = (blocks / blocks.abs().amax(dim=1, keepdim=True)).flatten()
fig, ax = plt.subplots(figsize=(8, 3))
ax.hist(normalised.numpy(), bins=120, color="lightgray", density=True)
for kind, colour in (("fp4", "tab:blue"), ("nf4", "tab:orange")):
    for value in code_book(kind):
        ax.axvline(value, color=colour, alpha=0.6, ymax=0.3 if kind == "fp4" else 0.6)
ax.set_title("weights / block absmax (gray) and code values: FP4 blue, NF4 orange", loc="left")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The seed's spelling today
# `load_in_4bit=True` as a keyword of `from_pretrained` is what the 2023 guide shows. Here is what the installed
# transformers does with it:

# %%
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from helpers.models import resolve_source

folder, _ = resolve_source("smollm2-135m", AutoModelForCausalLM, needs_checkpoint=True)
try:
    AutoModelForCausalLM.from_pretrained(folder, load_in_4bit=True)
    print("accepted: this transformers still takes the keyword")
except (TypeError, ValueError) as err:
    print(f"{type(err).__name__}: {err}")
default = BitsAndBytesConfig(load_in_4bit=True)
print(f"today: quantization_config=BitsAndBytesConfig(load_in_4bit=True, ...); its defaults: "
      f"bnb_4bit_quant_type={default.bnb_4bit_quant_type!r}, bnb_4bit_compute_dtype={default.bnb_4bit_compute_dtype}")

# %% [markdown]
# Those defaults are FP4 (the worse code book) and float32 compute (each 4-bit weight is expanded to float32 for the
# matrix product, which is slower than half precision). Set both explicitly; `helpers.quantization.bnb_config` does.
#
# ## The real model, every variant
# For each variant we measure the footprint, perplexity on the course's evaluation text, a greedy answer, prefill
# (time to first token) and decode speed.

# %%
from tqdm.auto import tqdm

from helpers.evaluation import REPORT_HEADER, evaluate_decoder
from helpers.quantization import bnb_config

half_name = lesson.size("half")
variants = {
    "float32": (torch.float32, None),
    half_name: (half, None),
    "fp4": (half, bnb_config("fp4", half)),
    "nf4": (half, bnb_config("nf4", half)),
    "nf4 + double quant": (half, bnb_config("nf4-dq", half)),
    "nf4, float32 compute": (half, bnb_config("nf4", torch.float32)),
}
reports, models = {}, {}
for name, (dtype, config) in tqdm(variants.items(), desc="variants"):
    model, tokenizer = load_causal_lm("smollm2-135m", dtype=dtype, device=lesson.device, quantization_config=config)
    reports[name] = evaluate_decoder(model, tokenizer, eval_tokens=lesson.size("eval_tokens"),
                                     prompt_tokens=lesson.size("prompt_tokens"), new_tokens=lesson.size("new_tokens"),
                                     warmup=lesson.profile.warmup, repeats=max(2, lesson.profile.repeats // 2))
    models[name] = model
print(REPORT_HEADER)
for name, report in reports.items():
    print(report.row(name))

# %%
from helpers.plots import bar_chart

bar_chart({n: r.footprint_bytes / 2**20 for n, r in reports.items()}, "SmolLM2-135M footprint", "MiB")
bar_chart({n: r.perplexity for n, r in reports.items()}, "perplexity (lower is better)", "perplexity")
bar_chart({n: r.decode_tokens_per_s for n, r in reports.items()}, f"decode speed on {lesson.device}", "tokens/s")

# %%
# NBVAL_CHECK_OUTPUT
assert reports["nf4"].footprint_bytes < 0.5 * reports[half_name].footprint_bytes
assert reports["nf4"].perplexity < reports["fp4"].perplexity
assert all("Paris" in r.answer for n, r in reports.items() if n != "fp4")
print("4-bit halves the half-precision footprint or better; NF4 beats FP4 on perplexity; answers stay right")

# %% [markdown]
# ## Why not 8× smaller? What stays unquantized
# Only the linear layers inside the transformer blocks become 4-bit. Embeddings (here tied with the output layer),
# norms and the output head stay in the load dtype. In a 135 M model the 49 152 × 576 embedding is a large share of
# all weights, so the saving is far from 8×. In an 8 B model it is a small share.

# %%
from helpers.quantization import footprint_by_kind

for name in (half_name, "nf4"):
    table = footprint_by_kind(models[name])
    total = sum(table.values())
    print(f"{name}: " + ", ".join(f"{kind} {size / 2**20:.0f} MiB ({100 * size / total:.0f}%)"
                                  for kind, size in sorted(table.items(), key=lambda kv: -kv[1])))
del models

# %% [markdown]
# ## At scale: which model fits which GPU
# Analytic sizes (parameters × bits per weight, scales included; no activations or KV cache) for a Llama-3-8B shape,
# against common GPUs. The claims "8× smaller than fp32" and "4× smaller than fp16" are checked with the scales
# counted.

# %%
from helpers.models import checkpoint_bytes
from helpers.quantization import bits_per_weight

params_8b = checkpoint_bytes("llama3-8b-shape") // 2
gpus = {"T4 (16 GB)": 16e9, "A10 (24 GB)": 24e9, "A100 / H100 (80 GB)": 80e9}
print(f"Llama-3-8B shape: {params_8b / 1e9:.2f} B parameters")
print(f"{'precision':<10}{'bits':>7}{'GB':>8}   " + "".join(f"{g:>22}" for g in gpus))
for scheme in ("fp32", "bf16", "int8", "nf4", "nf4-dq"):
    size = params_8b * bits_per_weight(scheme) / 8
    fits = "".join(f"{'fits' if size < 0.9 * memory else 'does not fit':>22}" for memory in gpus.values())
    print(f"{scheme:<10}{bits_per_weight(scheme):>7.3f}{size / 1e9:>8.1f}   {fits}")
print(f"fp32 / nf4 = {32 / bits_per_weight('nf4'):.2f}x (the '8x' claim, minus the absmax scales); "
      f"bf16 / nf4 = {16 / bits_per_weight('nf4'):.2f}x; with double quantization "
      f"{32 / bits_per_weight('nf4-dq'):.2f}x and {16 / bits_per_weight('nf4-dq'):.2f}x")

# %% [markdown]
# ## At scale, measured (GPU)
# The same comparison on a synthetic Llama-3-8B-shaped model (random weights: footprint and speed are real,
# there is no text quality to measure). Llama-3-8B's input embedding and output head (128 256 × 4 096 each) stay in
# bf16 by default, about 2 GB. The third variant also quantizes the output head (`llm_int8_skip_modules=[]`
# overrides the default skip list) and uses double quantization: the smallest footprint bitsandbytes gives, at a
# quality cost a real model would show (the head turns hidden states into token scores). A model that **ties** its head
# to the input embedding (the T4 profile's Llama-3.2-1B shape does) cannot take that variant: the head's weight *is*
# the embedding's, so after loading the 4-bit head layer holds the embedding's 16-bit weight, and the first forward
# pass fails with an `AssertionError` in `fix_4bit_weight_quant_state_from_module` (seen here under T4 emulation).
# The cell skips that variant for tied models.

# %%
large = lesson.size("large_shape")
large_reports = {}
if large is None:
    print("skipped on the cpu profile: an 8B-shaped model is far too slow on a CPU")
else:
    from helpers.placement import empty_model

    large_variants = {half_name: None, "nf4": bnb_config("nf4", half)}
    if empty_model(large).config.tie_word_embeddings:
        print(f"{large} ties its output head to the input embedding: the head-quantized variant is skipped")
    else:
        large_variants["nf4-dq, head quantized"] = bnb_config("nf4-dq", half, llm_int8_skip_modules=[])
    for name, config in large_variants.items():
        model, _ = load_causal_lm(large, dtype=half, device=lesson.device, quantization_config=config)
        large_reports[name] = evaluate_decoder(model, None, eval_tokens=0, prompt_tokens=lesson.size("prompt_tokens"),
                                               new_tokens=lesson.size("new_tokens"), warmup=lesson.profile.warmup,
                                               repeats=max(2, lesson.profile.repeats // 2))
        del model
        torch.cuda.empty_cache()
    print(REPORT_HEADER)
    for name, report in large_reports.items():
        print(report.row(name))
    base = large_reports[half_name]
    for name, report in large_reports.items():
        print(f"{large}, {name}: footprint {report.footprint_bytes / base.footprint_bytes:.3f} of {half_name}, "
              f"decode {report.decode_tokens_per_s / base.decode_tokens_per_s:.2f}x its speed")
    large_ratio = min(r.footprint_bytes for r in large_reports.values()) / base.footprint_bytes

# %% [markdown]
# ## Reading the speed numbers
# 4-bit saves memory; it does not automatically save time. At batch 1, decoding reads every weight once per token,
# so 4× fewer bytes *could* mean up to 4× more tokens/s, but each 4-bit weight must first be expanded (dequantized)
# to the compute dtype. bitsandbytes' 0.40 release reported 4-bit batch-1 inference 3.4× faster on Ampere and 4.0× on
# Hopper than 16-bit *matrix-vector products*; end-to-end `generate` includes much more (attention, norms, Python,
# kernel launches), and users commonly see 4-bit decode slower than bf16 (bitsandbytes #611, transformers #24762).
# The table above is what this machine does. Lesson 05 puts these numbers against the memory-bandwidth bound.

# %%
lesson.record(
    **{f"{name.replace(' ', '_')}_ppl": r.perplexity for name, r in reports.items()},
    nf4_vs_half_footprint=reports["nf4"].footprint_bytes / reports[half_name].footprint_bytes,
    **({"large_nf4_vs_half_footprint": large_ratio} if large_reports else {}),
)
