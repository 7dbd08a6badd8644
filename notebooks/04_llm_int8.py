# %% [markdown] tags=["colab-badge"]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/efficient-inference-course/efficient-inference-course/blob/v0.2.0/notebooks/04_llm_int8.ipynb)
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

    bootstrap(home, lesson="04")

# %% [markdown]
# # 04 · LLM.int8(): mixed-precision decomposition
#
# The 2023 guide loads models with `load_in_8bit=True` (today: `quantization_config=BitsAndBytesConfig(load_in_8bit=True)`)
# and describes the method of the LLM.int8() paper (arXiv 2208.07339): each matrix product is split into a 16-bit
# product for the few **outlier feature dimensions** and an int8 product for everything else, "without loss of
# predictive performance". It also advises `generate()` over `pipeline()` for 8-bit models.
# This lesson finds the outliers in a real model, builds the decomposition from scratch, checks it against
# bitsandbytes, and measures memory, quality and speed, including where int8 is slow.
#
# **Which SmolLM2 weights.** Offline, the course's `smollm2-135m` is the packaged **Q4_1 GGUF**, dequantized to 16
# bits when loaded: its "16-bit baseline" has already been through 4-bit quantization once, so every quality figure
# below (perplexity, answers) is relative to that model, not to the original. Where the Hub is reachable, loading
# `HuggingFaceTB/SmolLM2-135M-Instruct` with the same calls measures against the full-precision original.

# %%
from helpers.lesson import start_lesson

lesson = start_lesson("04")

# %% [markdown]
# ## Outlier features in a real model
# We feed real text through SmolLM2 and record what enters every linear layer (forward hooks). For each feature
# dimension we keep the largest |value| over all tokens. LLM.int8() calls a dimension an outlier when any value
# reaches the threshold, 6.0 by default.

# %%
import torch

from helpers.models import load_causal_lm
from helpers.outliers import capture_linear_inputs, feature_magnitudes
from helpers.quality import evaluation_text

model, tokenizer = load_causal_lm("smollm2-135m", dtype=torch.float32, device=lesson.device)
text_ids = tokenizer(evaluation_text(), return_tensors="pt").input_ids[:, : lesson.size("capture_tokens")]
inputs = capture_linear_inputs(model, text_ids.to(lesson.device))
magnitudes = feature_magnitudes(inputs)
threshold = 6.0
counts = {name: int((m >= threshold).sum()) for name, m in magnitudes.items()}
per_layer = {kind: [counts[n] for n in counts if n.endswith(kind)] for kind in ("q_proj", "gate_proj", "down_proj")}
print(f"{len(inputs)} linear layers, {text_ids.shape[1]} tokens; dimensions over {threshold}:")
for kind, values in per_layer.items():  # q/k/v share one input, gate/up another
    print(f"  input of {kind:<9} per layer: {values}")

# %%
import matplotlib.pyplot as plt

worst = max(counts, key=counts.get)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
axes[0].plot(magnitudes[worst].numpy(), lw=0.8)
axes[0].axhline(threshold, color="red", ls="--", label=f"threshold {threshold}")
axes[0].set_yscale("log")
axes[0].set(title=f"max |x| per feature entering {worst}", xlabel="feature dimension")
axes[0].legend()
for kind, values in per_layer.items():
    axes[1].plot(values, marker=".", label=kind + " input")
axes[1].set(title=f"dimensions over {threshold}, per layer", xlabel="layer", ylabel="count")
axes[1].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# A few dimensions carry values hundreds of times larger than the rest. Why it matters: int8 **absmax** quantization
# scales each row of the input by its largest value. One outlier of 500 in a row stretches the scale so that all the
# ordinary values (around 1) round to a handful of int8 levels, and their information is lost.
#
# ## The decomposition from scratch
# `helpers.outliers` holds it in a few lines: vector-wise int8 (one scale per row of the input, one per row of the
# weight), and LLM.int8(), which moves the outlier columns of the input into a 16-bit product:

# %%
import inspect

from helpers.outliers import int8_matmul, llm_int8_matmul, quantize_rows, relative_error

print(inspect.getsource(quantize_rows))
print(inspect.getsource(llm_int8_matmul))

# %%
x = inputs[worst]
weight = dict(model.named_modules())[worst].weight.detach().float().cpu()
exact = x @ weight.T
naive = int8_matmul(x, weight)
ours = llm_int8_matmul(x, weight, threshold)
print(f"layer {worst}: {int((x.abs().amax(0) >= threshold).sum())} outlier columns of {x.shape[1]}")
print(f"relative error vs float32: naive int8 {relative_error(naive, exact):.4f}, LLM.int8() {relative_error(ours, exact):.4f}")

# %% [markdown]
# ### Exercise
# With the threshold lowered to 3.0, how many input columns of this layer (`x`, tokens × features) would
# LLM.int8() send through the 16-bit product?
# Write it as `answer = ...` and run the check below it. A solution is in
# [`workshop/solutions/04.py`](../workshop/solutions/04.py).

# %% tags=["exercise"]
answer = ...  # your answer

# %%
from helpers.exercises import check

check("04", answer, x=x)

# %% [markdown]
# Now the same product through bitsandbytes' `Linear8bitLt`, the layer `load_in_8bit` puts into a model (in eval
# mode. In training mode on a CPU or XPU, bitsandbytes 0.50 dequantizes the weights and runs a plain product instead
# of decomposing; on CUDA it decomposes in both modes: `bitsandbytes.autograd._functions.matmul`):

# %%
import bitsandbytes as bnb

bnb_layer = bnb.nn.Linear8bitLt(weight.shape[1], weight.shape[0], bias=False, has_fp16_weights=False,
                                threshold=threshold)
bnb_layer.weight = bnb.nn.Int8Params(weight.half(), requires_grad=False, has_fp16_weights=False)
bnb_layer = bnb_layer.to(lesson.device).eval()
with torch.inference_mode():
    theirs = bnb_layer(x.half().to(lesson.device)).float().cpu()
agreement = relative_error(ours, theirs)
print(f"bitsandbytes relative error vs float32: {relative_error(theirs, exact):.4f}; ours vs bitsandbytes: {agreement:.4f}")

# %%
# NBVAL_CHECK_OUTPUT
assert agreement < 0.01, agreement
assert relative_error(ours, exact) < relative_error(naive, exact)
print("our decomposition matches bitsandbytes within 1% relative difference, and beats naive int8")

# %% [markdown]
# ## The real model in 8-bit
# `BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=...)`. A threshold of 0 turns the decomposition off:
# that *is* naive int8. We sweep the threshold and measure footprint, perplexity and decode speed.

# %%
from tqdm.auto import tqdm

from helpers.evaluation import REPORT_HEADER, evaluate_decoder
from helpers.quantization import bnb_config

sizes = {k: lesson.size(k) for k in ("eval_tokens", "prompt_tokens", "new_tokens")}
timing = {"warmup": 1, "repeats": 3}  # generation is long: few repeats, medians still reported
reports = {"float16": evaluate_decoder(*load_causal_lm("smollm2-135m", dtype=torch.float16, device=lesson.device),
                                        **sizes, **timing)}
for value in tqdm(lesson.size("thresholds"), desc="thresholds"):
    int8_model, tok = load_causal_lm("smollm2-135m", dtype=torch.float16, device=lesson.device,
                                     quantization_config=bnb_config("int8", llm_int8_threshold=value))
    reports[f"int8, threshold {value:g}"] = evaluate_decoder(int8_model, tok, **sizes, **timing)
print(REPORT_HEADER)
for name, report in reports.items():
    print(report.row(name))

# %%
from helpers.plots import line_chart

thresholds = lesson.size("thresholds")
int8_reports = [reports[f"int8, threshold {t:g}"] for t in thresholds]
line_chart(thresholds, {"int8 perplexity": [r.perplexity for r in int8_reports],
                        "float16 perplexity": [reports["float16"].perplexity] * len(thresholds)},
           "perplexity against llm_int8_threshold (0 = decomposition off)", "threshold", "perplexity")
line_chart(thresholds, {"int8 decode": [r.decode_tokens_per_s for r in int8_reports],
                        "float16 decode": [reports["float16"].decode_tokens_per_s] * len(thresholds)},
           "decode speed against threshold", "threshold", "tokens/s")

# %%
# NBVAL_CHECK_OUTPUT
naive_ppl, default_ppl = reports["int8, threshold 0"].perplexity, reports["int8, threshold 6"].perplexity
assert default_ppl <= naive_ppl * 1.01
assert reports["int8, threshold 6"].footprint_bytes < 0.7 * reports["float16"].footprint_bytes
print("the decomposition is at least as good as naive int8; int8 weights take well under 70% of float16")

# %% [markdown]
# ### Keeping layers out of int8: `llm_int8_skip_modules`
# The outliers concentrate in the inputs of the last layers' `down_proj`. Keeping those layers in 16-bit costs a
# little memory and removes their int8 error entirely. (`lm_head` is skipped by default; naming the list replaces
# the default, so we name it too.)

# %%
last = [n for n in counts if n.endswith("down_proj")][-4:]
skip_model, tok = load_causal_lm("smollm2-135m", dtype=torch.float16, device=lesson.device,
                                 quantization_config=bnb_config("int8", llm_int8_skip_modules=["lm_head", *last]))
reports["int8, last 4 down_proj in fp16"] = evaluate_decoder(skip_model, tok, **sizes, **timing)
print(REPORT_HEADER)
for name in ("float16", "int8, threshold 6", "int8, last 4 down_proj in fp16"):
    print(reports[name].row(name))
del skip_model, int8_model

# %% [markdown]
# ## Speed, honestly
# int8 halves the weight memory but, at small batch, decodes *slower* than 16-bit: every layer quantizes its input
# rows, finds outlier columns, runs two matrix products and adds them, and those extra steps cost more than the
# bytes saved. The bitsandbytes author said the int8 kernels were designed for training memory, not inference speed
# (bitsandbytes #490); users report 15–20% of fp16 speed (#181, #347). The paper itself reports BLOOM-176B 15–23%
# *slower* than 16-bit. int8 pays when the model would not fit otherwise, and its relative cost shrinks at large batch,
# where each weight is reused by many rows. Measured here, at each batch size:

# %%
from helpers.timing import benchmark_generation

large = lesson.size("large_shape") or "smollm2-135m"
batch_speed = {}
for name, config in (("float16", None), ("int8", bnb_config("int8"))):
    speed_model, _ = load_causal_lm(large, dtype=torch.float16, device=lesson.device, quantization_config=config)
    for batch in lesson.size("batches"):
        prompt = torch.randint(0, speed_model.config.vocab_size, (batch, lesson.size("prompt_tokens")),
                               device=lesson.device)
        result = benchmark_generation(speed_model, prompt, new_tokens=lesson.size("new_tokens"), **timing)
        batch_speed[(name, batch)] = result.decode_tokens_per_s * batch
    del speed_model
for batch in lesson.size("batches"):
    fp16, int8 = batch_speed[("float16", batch)], batch_speed[("int8", batch)]
    print(f"{large}, batch {batch:>3}: float16 {fp16:8.1f} tok/s, int8 {int8:8.1f} tok/s ({int8 / fp16:.2f}x)")

# %% [markdown]
# ## `generate()` or `pipeline()`?
# The guide recommended `generate()` for 8-bit models. A `pipeline` wraps the same `generate` call with tokenizing and
# decoding; we time both on the same prompt and the same number of new tokens:

# %%
from transformers import pipeline

from helpers.quality import chat_inputs
from helpers.timing import benchmark_each

int8_model, tok = load_causal_lm("smollm2-135m", dtype=torch.float16, device=lesson.device,
                                 quantization_config=bnb_config("int8"))
question = "What is the capital of France?"
encoded = chat_inputs(tok, question, int8_model.device)
generator = pipeline("text-generation", model=int8_model, tokenizer=tok)
new = lesson.size("new_tokens")
ways = benchmark_each({
    "model.generate": lambda: int8_model.generate(**encoded, max_new_tokens=new, min_new_tokens=new, do_sample=False),
    "pipeline": lambda: generator([{"role": "user", "content": question}], max_new_tokens=new, min_new_tokens=new,
                                  do_sample=False),
}, device=lesson.device, **timing)
for name, result in ways.items():
    print(f"{name:<15} {result}")
print(f"pipeline / generate: {ways['pipeline'].median / ways['model.generate'].median:.2f}x")

# %% [markdown]
# The pipeline adds its own tokenizing, chat templating and decoding around the same `generate`; the gap is that
# overhead, whatever the model's precision. Use `generate()` when you measure or batch; a pipeline is fine for a demo.

# %%
lesson.record(
    outlier_dims_max_layer=max(counts.values()),
    ppl_float16=reports["float16"].perplexity,
    ppl_int8_naive=naive_ppl,
    ppl_int8_threshold6=default_ppl,
    int8_vs_fp16_decode_batch1=batch_speed[("int8", 1)] / batch_speed[("float16", 1)],
)
