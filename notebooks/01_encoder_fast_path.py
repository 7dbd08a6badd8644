# %% [markdown] tags=["colab-badge"]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/efficient-inference-course/efficient-inference-course/blob/v0.2.0/notebooks/01_encoder_fast_path.ipynb)
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

    bootstrap(home, lesson="01")

# %% [markdown]
# # 01 · The encoder fast path: what BetterTransformer did, working today
#
# The 2023 guide this course grew from says: install `optimum`, call `model.to_bettertransformer()` on an
# encoder (BERT, RoBERTa, ...), and inference gets faster; call `model.reverse_bettertransformer()` before
# `save_pretrained`. **Both calls are gone**: transformers removed `to_bettertransformer` (PR #41367, 2025:
# "completely out-of-date and superseded") and optimum 2.x has no `optimum.bettertransformer`.
#
# What they switched on still exists, inside PyTorch: the fused inference **fast path** of
# `nn.TransformerEncoderLayer`, which with **nested tensors** skips the padding of a batch. transformers' own
# `attn_implementation="sdpa"` (the default now) uses fused attention but still computes every padded slot.
# Users noticed the difference (optimum #2083, transformers #31245). This lesson measures it and closes it.

# %%
from helpers.lesson import start_lesson

lesson = start_lesson("01")

# %% [markdown]
# ## The old call, today
# The seed's first step fails on current versions. We check rather than assume:

# %%
import importlib.metadata
import importlib.util

from transformers import PreTrainedModel

try:
    print("optimum", importlib.metadata.version("optimum"), "is installed")
    import optimum.bettertransformer  # noqa: F401  (the seed's import)
except importlib.metadata.PackageNotFoundError:
    print("optimum is not installed here (pip install optimum to see the next error yourself)")
except ModuleNotFoundError as err:
    print("import optimum.bettertransformer ->", err)
try:
    PreTrainedModel.to_bettertransformer  # the seed's call, on every transformers model
except AttributeError as err:
    print("model.to_bettertransformer() ->", err)
print("optimum's ONNX Runtime half (optimum.onnxruntime) importable:",
      importlib.util.find_spec("optimum") is not None and importlib.util.find_spec("optimum.onnxruntime") is not None)

# %% [markdown]
# Where BetterTransformer's users went: to transformers' own `sdpa` attention, and, for encoders served in
# production, to **ONNX Runtime**. optimum's ONNX half now lives in a separate package, `optimum-onnx`, whose 0.1
# release requires `transformers<4.58` and `optimum~=2.1.0` (its package metadata), so it cannot be installed beside
# transformers 5 (nor beside this optimum).
# This lesson exports with PyTorch's own `torch.onnx.export` and runs the file with `onnxruntime` directly, and
# measures it beside the other variants.

# %% [markdown]
# ## Why padding wastes work
# A batch must be rectangular, so shorter sentences are padded to the longest. Every layer then computes on
# the padding too, and the attention mask throws the result away. Here is a real batch of sentences:

# %%
from helpers.batches import padding_fraction, sentences
from helpers.models import load_encoder
from helpers.plots import bar_chart

_, tokenizer = load_encoder("minilm-l6")
real_batch = tokenizer(sentences(lesson.size("batch")), padding=True, truncation=True,
                       max_length=lesson.size("length"), return_tensors="pt")
lengths = real_batch["attention_mask"].sum(1)
print(f"{len(lengths)} sentences, padded to {real_batch['input_ids'].shape[1]} tokens: "
      f"{100 * padding_fraction(real_batch['attention_mask']):.0f}% of the batch is padding")
bar_chart({f"sentence {i}": int(n) for i, n in enumerate(lengths)}, "real tokens per sentence", "tokens")

# %% [markdown]
# ### Exercise
# Attention computes a score for every pair of positions, so a sentence padded to `padded_to` tokens computes
# `padded_to**2` scores where it needs `length**2`. What share (0 to 1) of this batch's attention scores is padding
# work? (`lengths` holds the real lengths; the padded length is `real_batch["input_ids"].shape[1]`.)
# Write it as `answer = ...` and run the check below it. A solution is in
# [`workshop/solutions/01.py`](../workshop/solutions/01.py).

# %% tags=["exercise"]
answer = ...  # your answer

# %%
from helpers.exercises import check

check("01", answer, lengths=lengths.tolist(), padded_to=real_batch["input_ids"].shape[1])

# %% [markdown]
# ## Four ways to run the same encoder (five on a GPU)
# * **HF eager**: transformers' plain PyTorch attention (matmul, softmax, matmul).
# * **HF sdpa**: transformers calling `F.scaled_dot_product_attention`, a fused attention kernel. Padding is
#   still computed.
# * **fast path**: `helpers.fast_path.to_fast_path(model)` copies each BERT layer into an
#   `nn.TransformerEncoderLayer` (query/key/value fused into one projection) and runs them as an
#   `nn.TransformerEncoder` with `enable_nested_tensor=True`: in eval mode and without gradients, PyTorch packs the
#   real tokens into a nested tensor and runs fused kernels on them alone. This is what `to_bettertransformer()` did.
# * **ONNX Runtime**: the model exported once with `torch.onnx.export` (opset 17, the batch and token axes dynamic)
#   into the course cache, then run by an `onnxruntime.InferenceSession`, on the GPU with the CUDA execution provider
#   where `onnxruntime-gpu` is installed, else on the CPU (the line "ONNX Runtime runs on" says which). **On a GPU
#   machine without `onnxruntime-gpu`, its row compares a CPU with a GPU**: it says what the CPU build costs there,
#   nothing about ONNX Runtime on a GPU. The export uses the TorchScript exporter (`dynamo=False`, with
#   `dynamic_axes`), which torch 2.9+ marks deprecated in favour of `dynamo=True` (which takes `dynamic_shapes` and
#   needs the `onnxscript` package); the helper silences the exporter's warnings.
# * **HF sdpa, compiled** (GPU only): `torch.compile` of the sdpa model, the PyTorch-native way to fuse the rest.
#
# The export, all of it:

# %%
import inspect

from helpers.onnx_runtime import export_encoder

print(inspect.getsource(export_encoder))

# %% [markdown]
# Timings are interleaved: each round runs every variant once, in turn, after untimed warm-up rounds. Shown: the
# median and the interquartile range (IQR); a comparison between two variants uses the per-round ratios, and its
# "interval" is the lowest to the highest of them (not a confidence interval); a range that includes 1 is reported as
# no measurable difference.
#
# First, the real all-MiniLM-L6-v2 on a batch of random token ids with half its slots padding:

# %%
import torch

from helpers.batches import padded_batch
from helpers.fast_path import encoder_variants
from helpers.onnx_runtime import OrtEncoder
from helpers.timing import benchmark_interleaved, compare, paired_ratio

ids, mask = padded_batch(tokenizer.vocab_size, lesson.size("batch"), lesson.size("length"), 0.5, device=lesson.device)
variants = encoder_variants("minilm-l6", torch.float32, lesson.device)
variants["ONNX Runtime"] = OrtEncoder(export_encoder("minilm-l6", variants["HF eager"]), lesson.device)
if lesson.device == "cuda":
    variants["HF sdpa, compiled"] = torch.compile(variants["HF sdpa"])
print("ONNX Runtime runs on:", variants["ONNX Runtime"].provider)


def time_variants(models, ids, mask):
    """Interleaved timings of every variant on one batch."""
    return benchmark_interleaved({name: (lambda m=m: m(input_ids=ids, attention_mask=mask)) for name, m in models.items()},
                                 device=lesson.device, **lesson.timing)


def versus(timings, a, b):
    """Per-round speed of a against b (b's time over a's): median, lowest, highest."""
    return paired_ratio(list(timings[b].times_ms), list(timings[a].times_ms))


timings = time_variants(variants, ids, mask)
for name, timing in timings.items():
    print(f"{name:<18} {timing}")
for other in [name for name in variants if name != "fast path"]:
    print(f"fast path vs {other}: {compare(versus(timings, 'fast path', other))}")
print(f"ONNX Runtime vs HF sdpa: {compare(versus(timings, 'ONNX Runtime', 'HF sdpa'))}")
print(f"({100 * padding_fraction(mask):.0f}% padding, float32)")
bar_chart({name: t.median for name, t in timings.items()}, f"MiniLM, batch {ids.shape[0]}x{ids.shape[1]}, float32", "ms")

# %% [markdown]
# ## Is it the same model? Correctness per dtype
# A speed-up is worthless if the answers change. We compare every variant against float32 HF eager: the largest
# absolute difference of any real token's hidden state, and the lowest cosine similarity of the sentence
# embeddings (mean of token states, what all-MiniLM-L6-v2 is used for). Half precision (float16/bfloat16) differs
# by rounding alone; embeddings should stay at cosine ≈ 1.

# %%
from helpers.fast_path import agreement, hidden_states

reference = hidden_states(variants["HF eager"], ids, mask)
rows = []
for dtype_name in lesson.size("dtypes"):
    dtype = getattr(torch, dtype_name)
    for name, model in encoder_variants("minilm-l6", dtype, lesson.device).items():
        rows.append({"dtype": dtype_name, "variant": name, **agreement(hidden_states(model, ids, mask), reference, mask)})
for name in [name for name in variants if name not in ("HF eager", "HF sdpa", "fast path")]:  # float32 only
    rows.append({"dtype": "float32", "variant": name,
                 **agreement(hidden_states(variants[name], ids, mask), reference, mask)})
for row in rows:
    print(f"{row['dtype']:<9} {row['variant']:<18} max |diff| {row['max_abs_diff']:.2e}   min cosine {row['min_cosine']:.6f}")

# %% [markdown]
# In float32 on a GPU the fast path differs from eager far more than sdpa or ONNX Runtime do (the table shows by how
# much); why is not measured here (its fused kernels may use reduced-precision products). What the embeddings are used
# for, cosine similarity, is unchanged. The check below therefore allows 1e-4 on a CPU and 0.1 on a GPU for float32.

# %%
# NBVAL_CHECK_OUTPUT
assert all(row["min_cosine"] > 0.999 for row in rows)
assert all(row["max_abs_diff"] < (1e-4 if lesson.device == "cpu" else 0.1) for row in rows if row["dtype"] == "float32")
print("every variant gives the same embeddings (cosine > 0.999)")

# %% [markdown]
# ## The speed-up grows with padding
# The fast path's gain over `sdpa` comes from skipping padded slots, so it should grow with the share of padding.
# We sweep it on the same model and batch size. Skipping half the slots could at best halve the time (2x), three
# quarters 4x; the measured gains show how much of that the fast path turns into speed, and at 0% padding what its
# conversion costs:

# %%
from tqdm.auto import tqdm

from helpers.plots import line_chart

paddings = lesson.size("paddings")
sweep, sweep_ratio = {name: [] for name in variants}, []
for padding in tqdm(paddings, desc="padding sweep"):
    ids_p, mask_p = padded_batch(tokenizer.vocab_size, lesson.size("batch"), lesson.size("length"), padding,
                                 device=lesson.device)
    result = time_variants(variants, ids_p, mask_p)
    for name, timing in result.items():
        sweep[name].append(timing.median)
    sweep_ratio.append(versus(result, "fast path", "HF sdpa"))
    print(f"padding {padding:.0%}: fast path vs HF sdpa {compare(sweep_ratio[-1])}; ONNX Runtime vs HF sdpa "
          f"{compare(versus(result, 'ONNX Runtime', 'HF sdpa'))}")
grows = sweep_ratio[-1][1] > sweep_ratio[0][2]  # the most-padded batch's lowest round beats the least-padded's highest
print("the fast path's gain over HF sdpa " + ("grows with padding" if grows else
      "does not grow measurably with padding here (the ranges of the first and last batch overlap)"))
line_chart([100 * p for p in paddings], sweep, "MiniLM forward time against padding (float32)", "padding (%)", "ms")

# %% [markdown]
# ## Half precision
# On a GPU, float16 and bfloat16 run on tensor cores; on a CPU, half precision pays only where the processor has
# native bf16 matrix units (AMX, recent Arm). The fast path adds a question of its own: its nested-tensor kernels
# are not equally complete for every dtype (PyTorch warns when it falls back to a generic kernel, as for bfloat16 on
# CUDA). Does the fast path keep its lead in each dtype? Measured here; where it loses in a dtype without such a
# warning, the reason is not measured in this lesson:

# %%
dtype_timings = {}
for dtype_name in lesson.size("dtypes"):
    models = encoder_variants("minilm-l6", getattr(torch, dtype_name), lesson.device)
    result = time_variants(models, ids, mask)
    dtype_timings.update({f"{name}, {dtype_name}": timing.median for name, timing in result.items()})
    print(f"{dtype_name}: fast path vs HF sdpa {compare(versus(result, 'fast path', 'HF sdpa'))}")
bar_chart(dtype_timings, f"MiniLM at 50% padding on {lesson.device}", "ms")

# %% [markdown]
# ## At scale: a BERT-base-shaped encoder (GPU)
# MiniLM is small (22 M parameters). A BERT-base shape (110 M parameters, synthetic weights: speed is real, outputs are
# not meaningful) at batch 64 × 512 with about half padding, in float16, is the case the optimum and transformers issue
# threads reported. Compare with MiniLM in float16 above: model size and dtype both differ from the float32 headline,
# so a different winner here would not say which of the two made the difference.

# %%
large = lesson.size("large_shape")
large_speedup = None
if large is None:
    print("skipped on the cpu profile: a BERT-base-shaped batch of this size takes minutes on a CPU")
else:
    ids_l, mask_l = padded_batch(30000, lesson.size("batch"), lesson.size("length"), 0.48, device=lesson.device)
    large_variants = encoder_variants(large, torch.float16, lesson.device)
    large_timings = time_variants(large_variants, ids_l, mask_l)
    large_ratio = versus(large_timings, "fast path", "HF sdpa")
    large_speedup = large_ratio[0]
    large_check = agreement(hidden_states(large_variants["fast path"], ids_l, mask_l),
                            hidden_states(large_variants["HF eager"], ids_l, mask_l), mask_l)
    for name, timing in large_timings.items():
        print(f"{name:<10} {timing}")
    print(f"{large}, float16, {100 * padding_fraction(mask_l):.0f}% padding: fast path vs HF sdpa {compare(large_ratio)}; "
          f"max |diff| {large_check['max_abs_diff']:.3f}, min cosine {large_check['min_cosine']:.5f}")
    bar_chart({n: t.median for n, t in large_timings.items()}, f"{large}, {tuple(ids_l.shape)}, float16", "ms")

# %% [markdown]
# ## Reverse before saving
# The seed's second rule still holds: save the *transformers* model, not the converted one, so anyone can load
# it with `from_pretrained`. `from_fast_path` rebuilds a plain transformers model with exactly the fast path's
# weights (it splits the fused query/key/value projection back into three).

# %%
import tempfile

from transformers import AutoModel

from helpers.fast_path import from_fast_path

restored = from_fast_path(variants["fast path"])
with tempfile.TemporaryDirectory() as folder:
    restored.save_pretrained(folder)
    reloaded = AutoModel.from_pretrained(folder, attn_implementation="eager").to(lesson.device).eval()
round_trip = agreement(hidden_states(reloaded, ids, mask), reference, mask)
print(f"saved, reloaded with from_pretrained: max |diff| {round_trip['max_abs_diff']:.1e} vs the original")

# %%
# NBVAL_CHECK_OUTPUT
assert round_trip["max_abs_diff"] == 0.0
print("the round trip is exact")

# %% [markdown]
# ## What to use today
# Decided by this machine's measurements above (float32, half the batch padding):

# %%
fastest = min(timings, key=lambda name: timings[name].median)
print(f"fastest here: {fastest}; against HF sdpa: "
      + ("-" if fastest == "HF sdpa" else compare(versus(timings, fastest, "HF sdpa"))))
for name in ("fast path", "ONNX Runtime", "HF sdpa, compiled"):
    if name in timings and name != fastest:
        print(f"{name} against {fastest}: {compare(versus(timings, name, fastest))}")
print("the fast path's gain " + ("grows" if grows else "does not measurably grow") + " with padding (sweep above)")

# %% [markdown]
# * **Default**: `from_pretrained(..., attn_implementation="sdpa")` (already the default for BERT in
#   transformers 5). Fused attention, no conversion, works for training too, but computes padding.
# * **Padded inference batches of a BERT-family encoder**: whichever of the fast path, ONNX Runtime and (on a GPU)
#   `torch.compile` won above, **in the dtype you serve in**: the verdict above is float32's, and the half-precision
#   section can reverse it. The fast path needs eval mode, no gradients, a padding mask and no autocast; it is skipped
#   while `torch.compile` traces, so compiling a fast-path model loses it silently. The fast path is inference-only and supports only `gelu`/`relu`, absolute positions, no head masks:
#   `to_fast_path` refuses anything else with the reason. ONNX Runtime needs an export per model and, for GPUs, the
#   `onnxruntime-gpu` build.
# * **Caveat**: PyTorch calls the `nn.TransformerEncoderLayer` layers a reference implementation, and the nested
#   tensor API they use a prototype (its warning is silenced in these lessons), and no longer prioritises nested tensors
#   (pytorch #155065). The direction it points to is *variable-length attention*
#   (`torch.nn.attention.varlen.varlen_attn`): pack real tokens end to end and pass their offsets, no padding at
#   all. It runs Flash or cuDNN attention, so it needs a CUDA GPU and half precision; the check below only says whether
#   this torch has the module. transformers' `flash_attention_2` does the same unpadding but needs the flash-attn package or Hub kernels.
#   Build new code on unpadded (varlen) attention; use the fast path for today's speed on existing encoders.
# * **Sort by length** before batching: less padding makes every variant faster, and leaves the fast path less to
#   skip (its gain over sdpa shrinks as the sweep shows).
# * The real sentences at the top of this lesson include a few long code passages, which set the padded width: a
#   batch's padding share depends on its longest members.

# %%
import torch.nn.attention

print("varlen attention in this torch:", importlib.util.find_spec("torch.nn.attention.varlen") is not None)

# %%
lesson.record(
    minilm_fast_vs_eager=versus(timings, "fast path", "HF eager")[0],
    minilm_fast_vs_sdpa=versus(timings, "fast path", "HF sdpa")[0],
    minilm_ort_vs_sdpa=versus(timings, "ONNX Runtime", "HF sdpa")[0],
    **({"bert_base_fast_vs_sdpa": large_speedup} if large_speedup is not None else {}),
)
