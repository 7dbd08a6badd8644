# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] tags=["colab-badge"]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/efficient-inference-course/efficient-inference-course/blob/v0.2.0/notebooks/04_llm_int8.ipynb)
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

    bootstrap(home, lesson="04")

# %% [markdown]
# # 04 · LLM.int8(): mixed-precision decomposition
#
# The 2023 guide loads models with `load_in_8bit=True` (today: `quantization_config=BitsAndBytesConfig(load_in_8bit=True)`)
# and describes the method of the LLM.int8() paper (arXiv 2208.07339): each matrix product is split into a 16-bit
# product for the few **outlier feature dimensions** and an int8 product for everything else, "without loss of
# predictive performance". It also advises `generate()` over `pipeline()` for 8-bit models.
# This lesson finds the outliers in a real model, builds the decomposition from scratch, checks it against
# bitsandbytes, and measures memory, quality and speed, including whether int8 is slower than 16-bit.
#
# **Which SmolLM2 weights.** Offline, the course's `smollm2-135m` is the packaged **Q4_1 GGUF**, dequantized to 16
# bits when loaded: its "16-bit baseline" has already been through 4-bit quantization once, so every quality figure
# below (perplexity, answers) is relative to that model, not to the original. Where the Hub is reachable, loading
# `HuggingFaceTB/SmolLM2-135M-Instruct` with the same calls measures against the full-precision original.

# %%
from coursetools.lesson import start_lesson

lesson = start_lesson("04")

# %% [markdown]
# ## 2023 → today
# The guide wrote `AutoModelForCausalLM.from_pretrained(name, load_in_8bit=True)`. transformers 5 no longer reads a
# `load_in_8bit` keyword in `from_pretrained`: keywords the configuration does not use go on to the model's
# constructor, which refuses it. The keyword now lives in a `BitsAndBytesConfig`, passed as `quantization_config=`;
# `dtype=` (formerly `torch_dtype=`) is the dtype of everything that stays unquantized, and `device_map=` places the
# model as it loads (each int8 layer's weight is quantized on its way to the device). The cell runs the old call, then
# today's:

# %%
from collections import Counter

import torch
import transformers
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from helpers.models import load_tokenizer, pretrained_path, weights_in_use

name = "smollm2-135m"
print(weights_in_use(name))
try:
    AutoModelForCausalLM.from_pretrained(pretrained_path(name), load_in_8bit=True)  # the 2023 guide's call
    print(f"2023 call: still accepted by transformers {transformers.__version__}")
except TypeError as error:
    print(f"2023 call, transformers {transformers.__version__}: TypeError: {error}")

int8_model = AutoModelForCausalLM.from_pretrained(
    pretrained_path(name),
    quantization_config=BitsAndBytesConfig(load_in_8bit=True),
    dtype=torch.float16,
    device_map=lesson.device,
).eval()
tokenizer = load_tokenizer(name)
linear_kinds = Counter(type(m).__name__ for m in int8_model.modules() if isinstance(m, torch.nn.Linear))
print(f"today's call: linear layers by type {dict(linear_kinds)}")

# %% [markdown]
# ## Outlier features in a real model
# We feed real text through SmolLM2 (in float32) and record what enters every linear layer (forward hooks). For each
# feature dimension we keep the largest |value| over all tokens. LLM.int8() calls a dimension an outlier when any
# value reaches the threshold, 6.0 by default.

# %%
from helpers.outliers import capture_linear_inputs, feature_magnitudes
from helpers.quality import evaluation_text

model = AutoModelForCausalLM.from_pretrained(pretrained_path(name), dtype=torch.float32, device_map=lesson.device).eval()
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

# %%
def how_many(layer_kind: str) -> str:
    """Say how many input columns of one kind of layer reach the threshold at most, and whether that is a few (<= 1%)."""
    layer = max((n for n in counts if n.endswith(layer_kind)), key=counts.get)
    columns = magnitudes[layer].numel()
    few = "a few" if counts[layer] <= 0.01 * columns else "not a few"
    return f"at most {counts[layer]} of {columns} ({counts[layer] / columns:.1%}, {few}; in {layer})"


typical = magnitudes[worst].median().item()
print(f"columns reaching {threshold}: attention inputs (q/k/v_proj) {how_many('q_proj')}; "
      f"MLP inputs (gate/up_proj) {how_many('gate_proj')}; the MLP's inner activations (down_proj) {how_many('down_proj')}")
print(f"in {worst} the largest |x| is {magnitudes[worst].max():.0f}, {magnitudes[worst].max() / typical:.0f}x the "
      f"median column's largest |x| ({typical:.2f}); {sum(c > 0 for c in counts.values())} of {len(counts)} linear "
      "layers have at least one outlier column")

# %% [markdown]
# The guide and the paper speak of a few outlier dimensions in the hidden states (the inputs of q/k/v and gate/up here);
# the lines above count them in SmolLM2 for each kind of input, including the MLP's inner activations that enter
# `down_proj`, which are a different quantity. Why they matter: int8 **absmax** quantization scales each row of the
# input by its largest value, so one int8 step is that value / 127. In a row that holds an outlier, the step is the
# outlier's |value| / 127, and every ordinary value smaller than half a step rounds to 0: its information is lost.
# (The median column's largest |x|, printed above, is the scale of the ordinary columns.) The cell after the next one
# measures both in the layer with the most outlier columns: the steps, and the share of its ordinary values that
# round to 0, with the outlier columns in the int8 rows and without them.
#
# ## The decomposition from scratch
# `helpers.outliers` holds it in a few lines: vector-wise int8 (one scale per row of the input, one per row of the
# weight), and LLM.int8(), which moves the outlier columns of the input into a 16-bit product:

# %%
import inspect

from helpers.outliers import int8_matmul, llm_int8_matmul, outlier_features, quantize_rows, relative_error

print(inspect.getsource(quantize_rows))
print(inspect.getsource(llm_int8_matmul))

# %%
x = inputs[worst]
weight = dict(model.named_modules())[worst].weight.detach().float().cpu()
exact = x @ weight.T
naive = int8_matmul(x, weight)
ours = llm_int8_matmul(x, weight, threshold)
outlier_columns = torch.isin(torch.arange(x.shape[1]), outlier_features(x, threshold))  # llm_int8_matmul's rule
print(f"layer {worst}: {int(outlier_columns.sum())} outlier columns of {x.shape[1]}")
ordinary = x[:, ~outlier_columns]
for label, rows in (("naive int8 (outliers in the rows)", x), ("LLM.int8() (outliers moved out)", x * ~outlier_columns)):
    codes, steps = quantize_rows(rows)  # one step per row: the row's largest |value| / 127
    lost = ((codes[:, ~outlier_columns] == 0) & (ordinary != 0)).float().mean().item()
    print(f"{label:<34}: int8 step median {steps.median():.3f} (largest {steps.max():.3f}); {lost:.1%} of the "
          "ordinary (non-outlier) values round to 0")
print(f"relative error vs float32: naive int8 {relative_error(naive, exact):.4f}, LLM.int8() {relative_error(ours, exact):.4f}")

# %% [markdown]
# ### Exercise
# With the threshold lowered to 3.0, how many input columns of this layer (`x`, tokens × features) would
# LLM.int8() send through the 16-bit product?
# Write it as `answer = ...` and run the check below it. A solution is in
# [`workshop/solutions/04.py`](../workshop/solutions/04.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/04.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer = ...  # your answer

# %%
from coursetools.exercises import check

check("04", answer, x=x)

# %% [markdown]
# Now the same product through bitsandbytes' `Linear8bitLt`, the layer `load_in_8bit=True` puts into a model. What it
# runs depends on the layer's mode and the input's device (bitsandbytes 0.50, `bitsandbytes.autograd._functions.matmul`;
# `Linear8bitLt.forward` passes `self.training` on):
# - **eval mode, any device**: the decomposition (with a threshold above 0; at 0.0 the int8 product alone). The input
#   is quantized row-wise to int8 with its outlier columns zeroed, multiplied by the int8 weight, and the outlier
#   columns are added back through a 16-bit product with those columns of the dequantized weight
#   (`int8_mixed_scaled_mm`). On a CPU the int8 product is `torch._int_mm` where the CPU has AVX-512, else a float32
#   product of the int8 values.
# - **training mode on CUDA** (and other devices except CPU and XPU): the same decomposition.
# - **training mode on a CPU or XPU**: no decomposition and no int8 input: the int8 weight is dequantized and a plain
#   `torch.nn.functional.linear` runs in the input's dtype (`MatMul8bitFp`, kept for fine-tuning speed there).
#
# A model from `from_pretrained` comes in eval mode; we call `.eval()` anyway.

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
# The same layer in training mode, on this machine's device: is its output closer to the decomposition (eval mode's
# output) or to a plain product with the dequantized int8 weight?

# %%
weight_q, weight_scale = quantize_rows(weight.half().float())  # bitsandbytes quantizes the float16 weight it was given
plain = x @ (weight_q.float() * weight_scale).T  # dequantized int8 weight, unquantized input, no decomposition
with torch.no_grad():
    trained = bnb_layer.train()(x.half().to(lesson.device)).float().cpu()
bnb_layer.eval()
to_decomposition, to_plain = relative_error(trained, theirs), relative_error(trained, plain)
runs = "the decomposition" if to_decomposition < to_plain else "a plain product with the dequantized weight"
print(f"training mode on {lesson.device}: relative difference {to_decomposition:.4f} to the decomposition, "
      f"{to_plain:.4f} to the plain product: it runs {runs}")
dequantizes_here = torch.device(lesson.device).type in ("cpu", "xpu")  # bitsandbytes.autograd._functions.matmul
assert (to_plain < to_decomposition) == dequantizes_here, (to_decomposition, to_plain)

# %% [markdown]
# ## The call, keyword by keyword
# `BitsAndBytesConfig` (transformers 5, `transformers/utils/quantization_config.py`) has four keywords for int8:
#
# | keyword | what it does | default |
# |---|---|---|
# | `load_in_8bit` | replace every `nn.Linear` (except the skipped ones) by bitsandbytes' `Linear8bitLt` | `False` |
# | `llm_int8_threshold` | the outlier threshold of each `Linear8bitLt`; a float (an int such as `6` is refused with a `TypeError`); `0.0` turns the decomposition off: naive int8 | `6.0` |
# | `llm_int8_skip_modules` | module names kept out of int8. A name matches a module when, read as a regular expression, it matches the start of the module's full name (`re.match`, with no stop at a dot: `"model.layers.29.mlp"` matches its `gate_proj`, `up_proj`, `down_proj`, and `"model.layers.1"` matches layers 10-19 too), or when the full name ends with it (`"down_proj"` matches every layer's). `None` means transformers' own list: the output embedding (`lm_head`), tied weights and the last parameter's module. A list **replaces** that list | `None` |
# | `llm_int8_enable_fp32_cpu_offload` | allow a `device_map` dict that puts some modules on `"cpu"` or `"disk"` and the rest elsewhere; the modules it maps to `"cpu"` or `"disk"` are then not converted, and they stay in `dtype` (float16 here), not float32 as the name suggests. Without it such a map raises a `ValueError` before loading. With it, `device_map={"": "cpu"}` maps every module to the CPU: nothing is quantized | `False` |
#
# In `from_pretrained`: `quantization_config=` takes the config (default `None`: no quantization); `dtype=` is the dtype
# of what is not int8, norms, embeddings, `lm_head` (default `"auto"`: the checkpoint's); `device_map=` places the
# model (default `None`, which for bitsandbytes becomes the current GPU, else another accelerator if present, else the CPU).
# Here all four are written out, then a map that puts the last layer on the CPU is tried without the flag:

# %%
int8_config = BitsAndBytesConfig(
    load_in_8bit=True,
    llm_int8_threshold=6.0,
    llm_int8_skip_modules=None,
    llm_int8_enable_fp32_cpu_offload=False,
)
print("the opening cell's model kept in 16-bit:",
      [n for n, m in int8_model.named_modules() if type(m) is torch.nn.Linear])  # Linear8bitLt is a subclass

layers = model.config.num_hidden_layers
split_map = {part: lesson.device for part in ("model.embed_tokens", "model.rotary_emb", "model.norm", "lm_head")}
split_map |= {f"model.layers.{i}": lesson.device for i in range(layers - 1)} | {f"model.layers.{layers - 1}": "cpu"}
if lesson.device == "cpu":
    print("on a CPU every module is on the CPU anyway: transformers checks only maps not entirely on the CPU")
else:
    try:
        AutoModelForCausalLM.from_pretrained(pretrained_path(name), quantization_config=int8_config,
                                             dtype=torch.float16, device_map=split_map)
        print("the split map loaded without llm_int8_enable_fp32_cpu_offload")
    except ValueError as error:
        print(f"last layer on the CPU, flag off: ValueError: {str(error).split('. ')[0]}.")

# %% [markdown]
# ### Exercise: predict, then measure
# Below, the threshold sweep prints decode speeds, and the section after it times float16 against int8 in alternating
# rounds. Before running them: does int8 (threshold 6.0) decode **slower** than float16 at batch 1 on this machine?
# Write `answer_predict = True` or `False`; the check after the speed measurement compares it with this machine.
# A reasoned answer is in [`workshop/solutions/04-predict.py`](../workshop/solutions/04-predict.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/04-predict.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer_predict = ...  # True or False

# %% [markdown]
# ## The real model in 8-bit: sweeping the threshold
# We sweep `llm_int8_threshold` and measure footprint, perplexity, an answer, prefill time (the
# `prefill` column, in ms: lower is faster) and decode speed (`tok/s`). The timings in
# this table are medians of a few runs of each variant one after another: a first look; the float16/int8 comparison
# is timed properly (alternating rounds, with their spread) in the speed section.

# %%
from helpers.evaluation import REPORT_HEADER, evaluate_decoder
from helpers.widgets import progress

sizes = {k: lesson.size(k) for k in ("eval_tokens", "prompt_tokens", "new_tokens")}
timing = {"warmup": lesson.warmup("report"), "repeats": lesson.rounds("report")}  # generation is long: few repeats
fp16_model = AutoModelForCausalLM.from_pretrained(pretrained_path(name), dtype=torch.float16,
                                                  device_map=lesson.device).eval()
reports = {"float16": evaluate_decoder(fp16_model, tokenizer, **sizes, **timing)}
thresholds = lesson.size("thresholds")
for value in progress(thresholds, desc="thresholds"):
    sweep_model = AutoModelForCausalLM.from_pretrained(
        pretrained_path(name),
        quantization_config=BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=value),
        dtype=torch.float16,
        device_map=lesson.device,
    ).eval()
    reports[f"int8, threshold {value:g}"] = evaluate_decoder(sweep_model, tokenizer, **sizes, **timing)
    del sweep_model
print(REPORT_HEADER)
for variant, report in reports.items():
    print(report.row(variant))

# %%
from helpers.plots import line_chart

int8_reports = [reports[f"int8, threshold {t:g}"] for t in thresholds]
line_chart(thresholds, {"int8 perplexity": [r.perplexity for r in int8_reports],
                        "float16 perplexity": [reports["float16"].perplexity] * len(thresholds)},
           "perplexity against llm_int8_threshold (0 = decomposition off)", "threshold", "perplexity")
line_chart(thresholds, {"int8 decode": [r.decode_tokens_per_s for r in int8_reports],
                        "float16 decode": [reports["float16"].decode_tokens_per_s] * len(thresholds)},
           "decode speed against threshold (one after another: a first look)", "threshold", "tokens/s")

# %%
from helpers.quantization import predicted_footprint

fp16_ppl, naive_ppl, default_ppl = (reports[k].perplexity for k in ("float16", "int8, threshold 0", "int8, threshold 6"))


def versus(ppl: float, reference: float, name: str, tolerance: float = 0.005) -> str:
    """Say how a perplexity compares with a reference: higher, lower, or the same within the tolerance (relative)."""
    change = ppl / reference - 1
    if abs(change) <= tolerance:
        return f"the same as {name} within {tolerance:.1%}"
    return f"{abs(change):.1%} {'higher' if change > 0 else 'lower'} than {name}"


print(f"perplexity: naive int8 (threshold 0) {naive_ppl:.2f}, {versus(naive_ppl, fp16_ppl, 'float16')}; "
      f"LLM.int8() (threshold 6) {default_ppl:.2f}, {versus(default_ppl, fp16_ppl, 'float16')} and "
      f"{versus(default_ppl, naive_ppl, 'naive int8')}")
measured_share = reports["int8, threshold 6"].footprint_bytes / reports["float16"].footprint_bytes
predicted_share = sum(predicted_footprint(model, "int8").values()) / sum(predicted_footprint(model, "bf16").values())
print(f"int8 weights take {measured_share:.1%} of float16's bytes; predicted from what the quantizer converts (linear "
      f"weights at 1 byte and a scale per row, the rest at 2 bytes): {predicted_share:.1%}")

# %%
# NBVAL_CHECK_OUTPUT
assert default_ppl <= naive_ppl * 1.01
assert abs(measured_share / predicted_share - 1) < 0.01, (measured_share, predicted_share)
print("the decomposition is at least as good as naive int8 (within 1%); the int8 footprint is the predicted one "
      "(within 1%)")

# %% [markdown]
# ### Keeping layers out of int8: `llm_int8_skip_modules`
# We keep the four `down_proj` layers whose inputs have the most outlier columns (counted above) in 16-bit: those
# four layers then have no int8 error, for the extra memory the last line below prints, with whether that moves the
# model's perplexity beyond a 0.5% tolerance. `lm_head` is in transformers' default list; naming a list replaces the
# default, so we name it too.

# %%
most = sorted((n for n in counts if n.endswith("down_proj")), key=counts.get)[-4:]
print("kept in float16:", {n: counts[n] for n in most})
skip_model = AutoModelForCausalLM.from_pretrained(
    pretrained_path(name),
    quantization_config=BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0,
                                           llm_int8_skip_modules=["lm_head", *most]),
    dtype=torch.float16,
    device_map=lesson.device,
).eval()
skipped = "int8, 4 down_proj in fp16"
reports[skipped] = evaluate_decoder(skip_model, tokenizer, **sizes, **timing)
print(REPORT_HEADER)
for variant in ("float16", "int8, threshold 6", skipped):
    print(reports[variant].row(variant))
extra_mib = (reports[skipped].footprint_bytes - reports["int8, threshold 6"].footprint_bytes) / 2**20
print(f"keeping them costs {extra_mib:.1f} MiB; perplexity {reports[skipped].perplexity:.2f} is "
      f"{versus(reports[skipped].perplexity, default_ppl, 'all-int8')} and "
      f"{versus(reports[skipped].perplexity, fp16_ppl, 'float16')}")
del skip_model

# %% [markdown]
# ### Exercise: write the call
# Write the `BitsAndBytesConfig` that loads SmolLM2 in int8 with threshold 6.0 and keeps `lm_head` and the three
# linear layers of the **last** decoder layer's MLP (`gate_proj`, `up_proj`, `down_proj`) in 16-bit, as
# `answer_call = BitsAndBytesConfig(...)`. The check applies transformers' own matching rule to this model's module
# names and says which layers your list would keep or miss. A solution is in
# [`workshop/solutions/04-call.py`](../workshop/solutions/04-call.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/04-call.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer_call = ...  # BitsAndBytesConfig(load_in_8bit=True, ...)

# %%
check("04-call", answer_call, model=model)

# %% [markdown]
# ## Speed, honestly
# An int8 layer reads half the weight bytes of a 16-bit one, but does more work per call: it quantizes its input rows,
# looks for outlier columns, runs an int8 product and, where some column reaches the threshold, a 16-bit one, and adds
# them (this lesson does not profile which of these steps costs the time). The bitsandbytes author said the
# int8 kernels were designed for training memory, not inference speed (bitsandbytes #490); users report 15–20% of
# fp16 speed (#181, #347); the paper reports BLOOM-176B 15–23% slower than 16-bit. A common expectation is that the
# relative cost shrinks at large batch, where each weight is reused by many rows. We time both at each batch size, in
# alternating rounds (float16, int8, float16, ...), and keep each round's int8/float16 ratio. On a GPU the timed
# model is `llama-1b-shape`: Llama-3.2-1B's shapes with random weights, so its activations need not have a trained
# model's outlier columns; the size of the 16-bit part, and with it int8's time, may differ for SmolLM2 or a real 1B
# model:

# %%
import statistics

from helpers.evaluation import interleaved_decode
from helpers.timing import compare, paired_ratio

large = lesson.size("large_shape") or name
rounds = lesson.rounds("decode")
speed_models = {
    label: AutoModelForCausalLM.from_pretrained(pretrained_path(large), dtype=torch.float16,
                                                quantization_config=config, device_map=lesson.device).eval()
    for label, config in (("float16", None), ("int8", BitsAndBytesConfig(load_in_8bit=True)))
}
speed_ratio, batch_speed = {}, {}
for batch in lesson.size("batches"):
    prompt = torch.randint(0, speed_models["float16"].config.vocab_size, (batch, lesson.size("prompt_tokens")),
                           device=lesson.device)
    rates = interleaved_decode({label: (m, prompt, {}) for label, m in speed_models.items()},
                               new_tokens=lesson.size("new_tokens"), warmup=lesson.warmup("decode"), rounds=rounds)
    speed_ratio[batch] = paired_ratio(rates["int8"], rates["float16"])
    batch_speed[batch] = {label: statistics.median(values) for label, values in rates.items()}
    print(f"{large}, batch {batch:>3}: float16 {batch_speed[batch]['float16']:8.1f} tok/s, int8 "
          f"{batch_speed[batch]['int8']:8.1f} tok/s: int8 {compare(speed_ratio[batch])}")
del speed_models

# %%
batches = lesson.size("batches")
small, big = speed_ratio[batches[0]], speed_ratio[batches[-1]]
if len(batches) == 1:
    print(f"this profile measures batch {batches[0]} only: how int8's relative cost changes with batch is not measured here")
elif big[1] > small[2]:
    print(f"int8's relative cost shrinks from batch {batches[0]} to {batches[-1]}: its speed relative to float16 rises "
          f"from {small[0]:.2f}x to {big[0]:.2f}x (per-round ranges do not overlap), as expected")
elif big[2] < small[1]:
    print(f"int8's relative cost grows from batch {batches[0]} to {batches[-1]}: its speed relative to float16 falls "
          f"from {small[0]:.2f}x to {big[0]:.2f}x (per-round ranges do not overlap), the opposite of the expectation")
else:
    print(f"no measurable change from batch {batches[0]} ({small[0]:.2f}x, {small[1]:.2f}-{small[2]:.2f}) to batch "
          f"{batches[-1]} ({big[0]:.2f}x, {big[1]:.2f}-{big[2]:.2f}): the per-round ranges overlap")

# %%
check("04-predict", answer_predict, ratio=speed_ratio[batches[0]])

# %% [markdown]
# ## `generate()` or `pipeline()`?
# The guide recommended `generate()` for 8-bit models. A `pipeline` wraps the same `generate` call with tokenizing,
# chat templating and decoding; we time both on the same question with one `GenerationConfig` (the same number of new
# tokens, greedy), in alternating rounds, with the int8 model of the opening cell, and check that both generate the
# same tokens:

# %%
from transformers import GenerationConfig, pipeline

from helpers.quality import chat_inputs
from helpers.timing import benchmark_interleaved

question = "What is the capital of France?"
encoded = chat_inputs(tokenizer, question, int8_model.device)
generator = pipeline("text-generation", model=int8_model, tokenizer=tokenizer)
new = lesson.size("new_tokens")
# One GenerationConfig for both calls: the pipeline hands a call's own generation_config to generate() in place of the
# one it prepared; loose keywords would join that one, which transformers 5.17 warns about on every call. Greedy is
# do_sample=False set, not left unset (None): 5.23's pipeline adds its sampling default (do_sample=True) only to a
# config that leaves do_sample unset, and 5.17's generate() keeps every value that is set; the assert below checks it.
settings = GenerationConfig(max_new_tokens=new, min_new_tokens=new, do_sample=False)
messages = [{"role": "user", "content": question}]
# clean_up_tokenization_spaces=False: the clean-up is for WordPiece; this BPE tokenizer skips it and warns when asked
ways = benchmark_interleaved({
    "model.generate": lambda: int8_model.generate(**encoded, generation_config=settings),
    "pipeline": lambda: generator(messages, generation_config=settings, clean_up_tokenization_spaces=False),
}, device=lesson.device, warmup=lesson.warmup("decode"), repeats=rounds)
with torch.inference_mode():
    by_generate = int8_model.generate(**encoded, generation_config=settings)[0, encoded["input_ids"].shape[1]:]
    by_pipeline = generator(messages, generation_config=settings, return_tensors=True)[0]["generated_token_ids"]
assert by_pipeline[-len(by_generate):] == by_generate.tolist(), "the two calls generated different tokens"
print(f"both calls generate the same {len(by_generate)} tokens")
for way, result in ways.items():
    print(f"{way:<15} {result}")
pipeline_ratio = paired_ratio(ways["model.generate"].times_ms, ways["pipeline"].times_ms)
overhead = ways["pipeline"].median - ways["model.generate"].median
print(f"pipeline against generate: {compare(pipeline_ratio)}")
if pipeline_ratio[1] <= 1.0 <= pipeline_ratio[2]:
    print(f"the pipeline's tokenizing, templating and decoding ({overhead:+.1f} ms median) are lost in the spread of "
          f"generating {new} tokens: for speed the choice does not matter here; generate() still gives the control "
          "(batches of token ids, exact lengths) that measuring needs")
elif pipeline_ratio[0] < 1.0:
    print(f"the pipeline costs {overhead:.1f} ms more per call: its tokenizing, templating and decoding around the same "
          "generate()")
else:
    print(f"the pipeline was faster by {-overhead:.1f} ms, outside the per-round spread: it runs the same generate() "
          "for the same number of tokens, so this is not about the model's precision")

# %%
lesson.record(
    outlier_dims_max_layer=max(counts.values()),
    ppl_float16=fp16_ppl,
    ppl_int8_naive=naive_ppl,
    ppl_int8_threshold6=default_ppl,
    int8_vs_fp16_decode_batch1=speed_ratio[1],
)
