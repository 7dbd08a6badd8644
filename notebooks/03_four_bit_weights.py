# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] tags=["colab-badge"]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/efficient-inference-course/efficient-inference-course/blob/v0.2.0/notebooks/03_four_bit_weights.ipynb)
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

    bootstrap(home, lesson="03")

# %% [markdown]
# # 03 · 4-bit weights: FP4 and NF4 with bitsandbytes
#
# The 2023 guide: `AutoModelForCausalLM.from_pretrained("bigscience/bloom-2b5", device_map="auto", load_in_4bit=True)`,
# "up to 8× smaller than full precision". Today the options live in a `BitsAndBytesConfig`, and bitsandbytes 0.50
# runs 4-bit on CPUs too. This lesson opens the box (what a 4-bit weight *is*), writes the call out keyword by
# keyword, then measures what it costs and saves: footprint, perplexity, answers, decode speed.
#
# **Which SmolLM2 weights.** Offline, the course's `smollm2-135m` is the packaged **Q4_1 GGUF**, dequantized to 16
# bits when loaded: its "16-bit baseline" has already been through 4-bit quantization once, so every quality figure
# below (perplexity, answers) is relative to that model, not to the original. Where the Hub is reachable,
# `pretrained_path("smollm2-135m")` is `HuggingFaceTB/SmolLM2-135M-Instruct` and the same calls measure against the
# full-precision original. The first code cell that loads it prints which one this run uses.

# %%
from coursetools.lesson import start_lesson

lesson = start_lesson("03")

# %% [markdown]
# ## 2023 → today
# `load_in_4bit=True` as a keyword of `from_pretrained` is what the 2023 guide shows. Here is what the installed
# transformers does with it (the guide's BLOOM is swapped for this course's SmolLM2):

# %%
import statistics

import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from helpers.models import load_tokenizer, pretrained_path, weights_in_use

print(weights_in_use("smollm2-135m"))
try:
    AutoModelForCausalLM.from_pretrained(pretrained_path("smollm2-135m"), load_in_4bit=True)
    print("accepted: this transformers still takes the keyword")
except (TypeError, ValueError) as err:
    print(f"{type(err).__name__}: {err}")
default = BitsAndBytesConfig(load_in_4bit=True)
print(f"today: quantization_config=BitsAndBytesConfig(load_in_4bit=True, ...); its defaults: "
      f"bnb_4bit_quant_type={default.bnb_4bit_quant_type!r}, bnb_4bit_compute_dtype={default.bnb_4bit_compute_dtype}, "
      f"bnb_4bit_use_double_quant={default.bnb_4bit_use_double_quant}, "
      f"bnb_4bit_quant_storage={default.bnb_4bit_quant_storage}")

# %% [markdown]
# The installed `from_pretrained` no longer reads `load_in_4bit` (the name is gone from
# `transformers/modeling_utils.py`; file and line numbers in this lesson are those of transformers 5.17 and
# bitsandbytes 0.50.2, the pinned versions and those of the stored outputs): keywords that the model's configuration
# does not take are passed on to the model's constructor (`model_kwargs`, lines 4178-4192 and 4267 of that file),
# which refuses them. The same request today is a
# `quantization_config=BitsAndBytesConfig(load_in_4bit=True, ...)`, written out below once we know what each of its
# keywords means.
#
# ## What 4-bit blockwise quantization does
# A weight matrix is cut into blocks of 64 values. Each block stores its largest magnitude (**absmax**, one float)
# and, for every weight, a 4-bit index into a **code book** of 16 values between -1 and 1. To use the weight,
# bitsandbytes multiplies the code by the block's absmax. Two code books exist:
# **FP4**, a tiny floating-point format, and **NF4**, whose 16 values are quantiles of a normal distribution:
# trained weights are roughly normal, so NF4 spends its codes where the weights are.

# %%
import matplotlib.pyplot as plt

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
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/03.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer = ...  # your answer

# %%
from coursetools.exercises import check

check("03", answer)

# %% [markdown]
# The whole method in five lines (`helpers.quantization.quantize_from_scratch`), applied to a real weight matrix of
# SmolLM2 loaded in float32 on the CPU, and compared with bitsandbytes' own kernels: the cell prints on what share of
# the weights the two differ. Both round to the nearest code, so they can only disagree on a weight that lies halfway
# between two codes (a tie, up to float rounding), where either code is nearest. The cell also prints how many of the
# differing weights lie on such a midpoint: its two nearest codes are equally far, within float32 rounding. The lesson's
# last cell checks that NF4's error is the smaller and that every difference lies on a midpoint.

# %%
import inspect

from helpers.quantization import bitsandbytes_round_trip, quantize_from_scratch

print(inspect.getsource(quantize_from_scratch))
half = getattr(torch, lesson.size("half"))
model = AutoModelForCausalLM.from_pretrained(pretrained_path("smollm2-135m"), dtype=torch.float32, device_map="cpu")
weight = model.model.layers[0].mlp.down_proj.weight.detach()
blocks = weight.reshape(-1, 64)
normalised = (blocks / blocks.abs().amax(dim=1, keepdim=True)).reshape(weight.shape)
errors, off_midpoint = {}, {}
for kind in ("fp4", "nf4"):
    ours, theirs = quantize_from_scratch(weight, kind), bitsandbytes_round_trip(weight, kind)
    errors[kind] = (ours - weight).abs().mean().item()
    differ = ours != theirs
    codes = code_book(kind).unique()  # FP4 has +0 and -0: one value, else every tiny weight would look like a tie
    nearest_two = (normalised[differ].unsqueeze(-1) - codes).abs().sort(dim=-1).values[:, :2]
    ties = int((nearest_two[:, 1] - nearest_two[:, 0] <= 1e-6).sum())
    off_midpoint[kind] = int(differ.sum()) - ties
    agreement = ("is identical to bitsandbytes'" if ties + off_midpoint[kind] == 0 else
                 f"differs from bitsandbytes' on {100 * differ.float().mean():.3f}% of the weights, "
                 f"{ties} of {int(differ.sum())} of them on a midpoint between two codes")
    print(f"{kind}: mean |error| {errors[kind]:.5f}; ours {agreement}")
del model

# %% [markdown]
# Where NF4's smaller error can come from, in the two code books printed above: FP4 spends four of its 16 codes
# within ±0.005 of zero (−0.005, two zeros, +0.005) and has none between 0.005 and 0.167 in magnitude; NF4 has
# −0.091, 0.08 and 0.161 there, and three codes a side above 0.17 and below 0.5 in magnitude where FP4 has two. If the weights of a block, divided
# by their absmax, pile up near zero like a bell curve, NF4's codes sit where the weights are. The histogram below
# shows this matrix's distribution against both code books.

# %%
fig, ax = plt.subplots(figsize=(8, 3))
ax.hist(normalised.flatten().numpy(), bins=120, color="lightgray", density=True)
for kind, colour in (("fp4", "tab:blue"), ("nf4", "tab:orange")):
    for value in code_book(kind):
        ax.axvline(value, color=colour, alpha=0.6, ymax=0.3 if kind == "fp4" else 0.6)
ax.set_title("weights / block absmax (gray) and code values: FP4 blue, NF4 orange", loc="left")
ax.set_xlabel("weight / its block's absmax (the bars at ±1 are each block's largest weight itself)")
ax.set_ylabel("density (code lines: position only)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The call, keyword by keyword
# `BitsAndBytesConfig` (read in the installed `transformers/utils/quantization_config.py`, `__init__` at lines
# 440-493) and what `from_pretrained` does with it (`transformers/quantizers/quantizer_bnb_4bit.py`,
# `transformers/integrations/bitsandbytes.py`):
#
# | keyword | what it does | default |
# |---|---|---|
# | `load_in_4bit` | replace linear layers with bitsandbytes `Linear4bit` | `False` (nothing is quantized) |
# | `bnb_4bit_quant_type` | the code book: `"fp4"` or `"nf4"` | `"fp4"` |
# | `bnb_4bit_compute_dtype` | the dtype the matrix product runs in: each 4-bit weight is decoded to it (inside bitsandbytes' fused kernel for a few input rows, into a dequantized copy of the whole weight for many); the layer's output is cast back to the input's dtype (`Linear4bit.forward`, `bitsandbytes/nn/modules.py` lines 609-637); on a CPU with AVX512-BF16, whose fused kernel takes repacked weights, the input goes to bfloat16 whatever this says (`bitsandbytes/backends/cpu/ops.py`: "cpu fused op only support bf16 for now") | `None`, which becomes `torch.float32` |
# | `bnb_4bit_use_double_quant` | quantize the absmax scales themselves: 8-bit codes, one float32 scale per 256 of them (`quantize_4bit`, `bitsandbytes/functional.py` lines 938-940) | `False` |
# | `bnb_4bit_quant_storage` | the dtype the packed 4-bit pairs are stored in (two codes a byte in `uint8`) | `None`, which becomes `torch.uint8` |
# | `llm_int8_skip_modules` | module names kept unquantized (despite its name, 4-bit uses it too) | `None`: the output head, the module of the model's last parameter and weights tied to them (`get_keys_to_not_convert`, `transformers/quantizers/base.py` lines 38-62) |
#
# Only modules whose type is exactly `torch.nn.Linear` (or GPT-2's `Conv1D`) are replaced (`replace_with_bnb_linear`,
# `isinstance(module, Conv1D) or type(module) is nn.Linear`, line 189 of `integrations/bitsandbytes.py`): embeddings and norms are never quantized, and the output head
# is skipped by default. In `from_pretrained`, `dtype` (default `"auto"`: the checkpoint's `config.json` dtype;
# `modeling_utils.py` lines 3946 and 4099-4100) is the dtype of everything that stays unquantized, and `device_map`
# (default `None`, which the 4-bit quantizer turns into the current GPU, else another accelerator if present, else the
# CPU: `update_device_map`, lines
# 102-119 of `quantizer_bnb_4bit.py`) is where the weights are quantized and kept. The call of this
# lesson, for NF4 with the lesson's 16-bit dtype as compute dtype:

# %%
from helpers.memory import MiB, model_footprint

nf4_config = BitsAndBytesConfig(
    load_in_4bit=True,
    bnb_4bit_quant_type="nf4",
    bnb_4bit_compute_dtype=half,
    bnb_4bit_use_double_quant=False,
    bnb_4bit_quant_storage=torch.uint8,
)
model = AutoModelForCausalLM.from_pretrained(
    pretrained_path("smollm2-135m"), quantization_config=nf4_config, dtype=half, device_map=lesson.device
).eval()
kinds: dict[str, list[str]] = {}
for name, module in model.named_modules():
    if not list(module.children()):
        kinds.setdefault(type(module).__name__, []).append(name)
for kind, names in kinds.items():
    print(f"{len(names):>4} {kind:<22} e.g. {names[-1]}")
print(f"lm_head shares the embedding's weight: {model.lm_head.weight is model.model.embed_tokens.weight}")
del model

# %% [markdown]
# ### Exercise: write the call
# Write the `BitsAndBytesConfig` for **NF4** weights, the lesson's 16-bit dtype `half` (bfloat16, float16 on a T4) as
# compute dtype, and **double quantization** of the scales. The check reads its fields and says which keyword is
# wrong or missing. A solution is in [`workshop/solutions/03-call.py`](../workshop/solutions/03-call.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/03-call.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer_call = ...  # BitsAndBytesConfig(...)

# %%
check("03-call", answer_call, half=half)

# %% [markdown]
# ## The real model, every variant
# Six loads of the same checkpoint: float32, the 16-bit dtype, then four `BitsAndBytesConfig`s written out. For each
# we measure the footprint as loaded, perplexity on the course's evaluation text and a greedy answer; decode speeds
# are timed afterwards, all variants in turn in each round.
#
# ### Exercise: predict, then measure
# Every linear weight in 4 bits plus one float32 absmax per 64 weights is 4.5 bits instead of 16. Predict the
# **measured** footprint of SmolLM2 in NF4 as a fraction of its 16-bit footprint (a number such as 0.3). The check
# after the measurement compares it with this machine's figure. A reasoned prediction is in
# [`workshop/solutions/03-predict.py`](../workshop/solutions/03-predict.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/03-predict.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer_predict = ...  # nf4 footprint / 16-bit footprint, a number

# %%
from helpers.quality import ask, perplexity
from helpers.tables import table

half_name = lesson.size("half")
configs = {
    "float32": (torch.float32, None),
    half_name: (half, None),
    "fp4": (half, BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="fp4", bnb_4bit_compute_dtype=half)),
    "nf4": (half, nf4_config),
    "nf4 + double quant": (half, BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                    bnb_4bit_compute_dtype=half, bnb_4bit_use_double_quant=True)),
    "nf4, float32 compute": (half, BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                      bnb_4bit_compute_dtype=torch.float32)),
}
tokenizer = load_tokenizer("smollm2-135m")
models, footprint, ppl, answers = {}, {}, {}, {}
for name, (dtype, config) in configs.items():
    models[name] = AutoModelForCausalLM.from_pretrained(
        pretrained_path("smollm2-135m"), quantization_config=config, dtype=dtype, device_map=lesson.device
    ).eval()
    footprint[name] = model_footprint(models[name])
    ppl[name] = perplexity(models[name], tokenizer, max_tokens=lesson.size("eval_tokens"))
    answers[name] = ask(models[name], tokenizer, "What is the capital of France?")
weights = weights_in_use("smollm2-135m")
base = "SmolLM2 from its Q4_1 GGUF" if "Q4_1" in weights else "SmolLM2 as published"  # what every perplexity is of
print(f"perplexity ({lesson.size('eval_tokens')} tokens of the course's text) and answers relative to: {weights}")
display(table(["variant", "MiB", f"perplexity ({base})", "answer"],
              [[name, footprint[name] / MiB, ppl[name], repr(answers[name][:60])] for name in configs]))

# %%
from helpers.decoding import bound_share, kv_cache_bytes, weight_bytes_per_token
from helpers.evaluation import interleaved_decode
from helpers.limits import memory_bandwidth
from helpers.timing import compare, paired_ratio, spread

bandwidth, bandwidth_source = memory_bandwidth(lesson.device)
prompt_tokens = lesson.size("prompt_tokens")
prompt = torch.randint(0, models[half_name].config.vocab_size, (1, prompt_tokens), device=lesson.device)
tok_s = interleaved_decode({name: (model, prompt, {}) for name, model in models.items()},
                           new_tokens=lesson.size("new_tokens"), warmup=lesson.warmup(), rounds=lesson.rounds())
speed = {name: paired_ratio(tok_s[name], tok_s[half_name]) for name in models}  # > 1: faster than half
read = {name: weight_bytes_per_token(model) for name, model in models.items()}


def step_bytes(model: torch.nn.Module, weight_bytes: int) -> int:
    """Bytes a decode step reads at least: the weights once and the prompt's KV cache."""
    return weight_bytes + kv_cache_bytes(model.config, prompt_tokens, element_bytes=model.dtype.itemsize)


shares = {name: bound_share(statistics.median(tok_s[name]), step_bytes(models[name], read[name]), bandwidth)
          for name in models}
display(table(["variant", "tok/s", "quartiles", "read MiB/step", "% of bound", f"vs {half_name}"],
              [[name, spread(tok_s[name])[0], "{1:.3g}-{2:.3g}".format(*spread(tok_s[name])),
                step_bytes(models[name], read[name]) / MiB, 100 * shares[name][0],
                "-" if name == half_name else compare(speed[name])] for name in models]))
print(f"decode at batch 1, {prompt_tokens}-token prompt, {lesson.rounds()} interleaved rounds; bandwidth "
      f"{bandwidth / 1e9:.0f} GB/s ({bandwidth_source}); {half_name}'s step is at {shares[half_name][1]}")
repacked = [name for name in models if model_footprint(models[name]) != footprint[name]]
if repacked:
    print(f"after running, the footprint changed for {', '.join(repacked)}: on a CPU with AVX512-BF16, bitsandbytes "
          "repacks 4-bit weights at their first forward (scales as bfloat16 per block, double quantization undone)")

# %%
from helpers.plots import bar_chart, interval_bars

bar_chart({n: b / MiB for n, b in footprint.items()}, "SmolLM2-135M footprint as loaded", "MiB")
bar_chart(ppl, f"perplexity of {base} (lower is better)", "perplexity")
interval_bars({n: spread(t) for n, t in tok_s.items()}, f"decode speed on {lesson.device}, batch 1", "tokens/s")

# %% [markdown]
# What the two defaults (FP4 code book, float32 compute) and the non-default double quantization change on this
# machine, read from the rows above:

# %%
fp4_cost = ppl["fp4"] / ppl["nf4"]
compute_cost = paired_ratio(tok_s["nf4, float32 compute"], tok_s["nf4"])  # > 1: float32 compute is faster
double_saves = footprint["nf4"] - footprint["nf4 + double quant"]
print(f"- FP4 instead of NF4: perplexity of {base} {ppl['fp4']:.2f} vs {ppl['nf4']:.2f} "
      f"({'higher' if fp4_cost > 1 else 'not higher'}, x{fp4_cost:.2f})")
# weights repacked for bitsandbytes' CPU kernel, which computes in bf16 whatever the compute dtype
quant_states = [getattr(getattr(m, "weight", None), "quant_state", None) for m in models["nf4, float32 compute"].modules()]
same_kernel = any(getattr(state, "packing_format_for_cpu", False) for state in quant_states)
if same_kernel:
    print(f"- float32 instead of {half_name} compute: not a comparison on this machine: its weights were repacked for "
          "bitsandbytes' CPU kernel, which computes in bfloat16 whatever the compute dtype, so both rows ran the same "
          f"kernel (the rounds say {compare(compute_cost)}: the spread of the machine, not a compute dtype)")
else:
    print(f"- float32 instead of {half_name} compute: decode {compare(compute_cost)}; the nf4 step is at "
          f"{shares['nf4'][1]}")
print(f"- double quantization {'saves' if double_saves > 0 else 'does not save'} {abs(double_saves) / MiB:.1f} MiB as loaded "
      f"({100 * abs(double_saves) / footprint['nf4']:.1f}% of the nf4 model); perplexity of {base} "
      f"{ppl['nf4 + double quant']:.2f} vs {ppl['nf4']:.2f}")

# %%
from helpers.models import empty_model
from helpers.quantization import predicted_footprint

small = empty_model("smollm2-135m")  # the structure on the meta device: no memory for weights
kept = predicted_footprint(small, "nf4")["unquantized"] / predicted_footprint(small, "bf16")["unquantized"]
check("03-predict", answer_predict, measured=footprint["nf4"] / footprint[half_name], unquantized_share=kept)

# %% [markdown]
# ## Why not 8× smaller? What stays unquantized
# Only the linear layers inside the transformer blocks become 4-bit. Embeddings (here tied with the output layer),
# norms and the output head stay in the load dtype. The cell counts each kind's bytes in both models, and the share
# of the 16-bit bytes that stays 16-bit in SmolLM2 and in a Llama-3-8B shape (both built on the meta device).

# %%
from helpers.quantization import bits_per_weight, footprint_by_kind

for name in (half_name, "nf4"):
    by_kind = footprint_by_kind(models[name])
    total = sum(by_kind.values())
    print(f"{name}: " + ", ".join(f"{kind} {size / MiB:.0f} MiB ({100 * size / total:.0f}%)"
                                  for kind, size in sorted(by_kind.items(), key=lambda kv: -kv[1])))
del models
shapes = {"smollm2-135m": small, "llama3-8b-shape": empty_model("llama3-8b-shape")}
share = {}
for name, shape in shapes.items():
    share[name] = predicted_footprint(shape, "nf4")["unquantized"] / predicted_footprint(shape, "bf16")["unquantized"]
    ratio = sum(predicted_footprint(shape, "nf4").values()) / sum(predicted_footprint(shape, "bf16").values())
    print(f"{name}: {100 * share[name]:.1f}% of the 16-bit bytes stay 16-bit under nf4; nf4 / bf16 = {ratio:.2f} "
          f"(every weight at {bits_per_weight('nf4'):g} bits: {bits_per_weight('nf4') / 16:.2f})")
smaller = share["llama3-8b-shape"] < share["smollm2-135m"]
print(f"the share that stays 16-bit is {'smaller' if smaller else 'not smaller'} in the 8B shape than in SmolLM2")

# %% [markdown]
# ## At scale: which model fits which GPU
# Predicted sizes of a Llama-3-8B shape against common GPUs, counted module by module on the meta device
# (`helpers.quantization.predicted_footprint`): what transformers' quantizer converts (every `nn.Linear` but the
# output head) at the scheme's bytes, scales included; everything else (embedding, head, norms) in the scheme's
# unquantized dtype (16 bits; 32 in the fp32 row, which quantizes nothing). Decoding
# also needs the **KV cache**: at the context below, batch 1, 16-bit keys and values (`helpers.decoding.kv_cache_bytes`).
# A row "fits" when weights and cache leave 10% of the GPU free, an assumed margin for the CUDA context, activations
# and the allocator (not measured here). The same function predicts SmolLM2's footprint, set against the measurement
# right after (the lesson's last cell checks that they agree within 1%).

# %%
from helpers.decoding import kv_cache_bytes
from helpers.quantization import bits_per_weight

context = 8192
big = shapes["llama3-8b-shape"]
cache = kv_cache_bytes(big.config, context)
gpus = {"T4 (16 GB)": 16e9, "A10 (24 GB)": 24e9, "A100 / H100 (80 GB)": 80e9}
print(f"Llama-3-8B shape: {big.num_parameters() / 1e9:.2f} B parameters; KV cache at {context} tokens: "
      f"{cache / 1e9:.2f} GB")
sizes = {scheme: sum(predicted_footprint(big, scheme).values()) for scheme in ("fp32", "bf16", "int8", "nf4", "nf4-dq")}
display(table(["scheme", "bits", "weights GB", "+ cache GB", *gpus],
              [[scheme, bits_per_weight(scheme), size / 1e9, (size + cache) / 1e9,
                *("fits" if size + cache < 0.9 * memory else "does not fit" for memory in gpus.values())]
               for scheme, size in sizes.items()]))
print(f"per weight: fp32 / nf4 = {32 / bits_per_weight('nf4'):.2f}x (the '8x' claim, minus the absmax scales), "
      f"bf16 / nf4 = {16 / bits_per_weight('nf4'):.2f}x; whole model: fp32 / nf4 = {sizes['fp32'] / sizes['nf4']:.2f}x, "
      f"bf16 / nf4 = {sizes['bf16'] / sizes['nf4']:.2f}x, bf16 / nf4-dq = {sizes['bf16'] / sizes['nf4-dq']:.2f}x")

# %%
small = shapes["smollm2-135m"]
small_predicted = {name: sum(predicted_footprint(small, scheme).values())
                   for name, scheme in ((half_name, "bf16"), ("nf4", "nf4"), ("nf4 + double quant", "nf4-dq"))}
display(table(["SmolLM2", "predicted MiB", "measured MiB", "predicted / measured"],
              [[name, bytes_ / MiB, footprint[name] / MiB, f"{bytes_ / footprint[name]:.4f}"]
               for name, bytes_ in small_predicted.items()]))

# %% [markdown]
# ## At scale, measured (GPU)
# The same comparison on a synthetic Llama-3-8B-shaped model (random weights: footprint and speed are real, there is no
# text quality to measure). Each variant's decode speed is printed in tokens/s with the quartiles of its rounds, its
# share of the bandwidth bound (weights once and the prompt's KV cache per step) and its ratio to the 16-bit model
# (the quartiles of the per-round ratios). Llama-3-8B's input embedding and output head (128 256 × 4 096 each) stay in
# bf16 by default, about 2 GB. The third variant also quantizes the output head (`llm_int8_skip_modules=[]`
# replaces the default skip list) and uses double quantization: every `nn.Linear` in 4 bits, at a
# quality cost that random weights cannot show (the head turns hidden states into token scores). A model that
# **ties** its head to the input embedding (the T4 profile's Llama-3.2-1B shape does) cannot take that variant: the
# head's weight *is* the embedding's, so after loading the 4-bit head layer holds the embedding's 16-bit weight, and the
# first forward pass fails in `fix_4bit_weight_quant_state_from_module` (in bitsandbytes 0.50.2 that function asserts
# `module.weight.shape[1] == 1`, which a 16-bit weight does not meet). The first cell below tries that variant on
# SmolLM2, which ties them too, and prints what its head layer holds and what its first forward pass does (just
# before the assertion, the same function logs "FP4 quantization state not initialized": its message for any 4-bit
# layer without a quantization state, nf4 too; the tied weight was never quantized). The second
# skips the variant for tied models, sets each footprint against the prediction, and the lesson's last cell checks that
# they agree within 1%.

# %%
import traceback

head_quantized = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=half,
                                    bnb_4bit_use_double_quant=True, llm_int8_skip_modules=[])
tied = AutoModelForCausalLM.from_pretrained(pretrained_path("smollm2-135m"), quantization_config=head_quantized,
                                            dtype=half, device_map=lesson.device).eval()
print(f"SmolLM2 ties head and embedding: {tied.config.tie_word_embeddings}; its head is a {type(tied.lm_head).__name__} "
      f"holding a {tied.lm_head.weight.dtype} weight of shape {tuple(tied.lm_head.weight.shape)}")
try:
    with torch.inference_mode():
        tied(prompt[:, :8])
    print("its first forward pass ran")
except Exception as error:  # shown, not hidden: this is what the variant does to a tied model
    where = traceback.extract_tb(error.__traceback__)[-1]
    print(f"its first forward pass raised {type(error).__name__} in {where.name} "
          f"({where.filename.split('site-packages/')[-1]}, line {where.lineno})")
del tied

# %%
large = lesson.size("large_shape")
large_footprint, large_predicted, large_read, large_speed = {}, {}, {}, {}
if large is None:
    print("skipped on the cpu profile: an 8B-shaped model is far too slow on a CPU")
else:
    shape = empty_model(large)
    large_configs = {
        half_name: (None, "bf16", None),
        "nf4": (nf4_config, "nf4", None),
    }
    if shape.config.tie_word_embeddings:
        print(f"{large} ties its output head to the input embedding: the head-quantized variant is skipped")
    else:
        large_configs["nf4-dq, head quantized"] = (
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=half,
                               bnb_4bit_use_double_quant=True, llm_int8_skip_modules=[]), "nf4-dq", [])
    large_models = {}
    for name, (config, scheme, skip) in large_configs.items():
        large_models[name] = AutoModelForCausalLM.from_pretrained(
            pretrained_path(large), quantization_config=config, dtype=half, device_map=lesson.device
        ).eval()
        large_footprint[name] = model_footprint(large_models[name])
        large_read[name] = weight_bytes_per_token(large_models[name])
        large_predicted[name] = sum(predicted_footprint(shape, scheme, skip_modules=skip).values())
    prompt = torch.randint(0, shape.config.vocab_size, (1, prompt_tokens), device=lesson.device)
    large_tok_s = interleaved_decode({name: (model, prompt, {}) for name, model in large_models.items()},
                                     new_tokens=lesson.size("new_tokens"), warmup=lesson.warmup(), rounds=lesson.rounds())
    large_shares = {}
    for name, model in large_models.items():
        large_speed[name] = paired_ratio(large_tok_s[name], large_tok_s[half_name])
        large_shares[name] = bound_share(statistics.median(large_tok_s[name]), step_bytes(model, large_read[name]),
                                         bandwidth)
    display(table([large, "MiB measured", "MiB predicted", f"footprint / {half_name}", "tok/s", "quartiles",
                   "% of bound", f"decode vs {half_name}"],
                  [[name, large_footprint[name] / MiB, large_predicted[name] / MiB,
                    large_footprint[name] / large_footprint[half_name], spread(large_tok_s[name])[0],
                    "{1:.3g}-{2:.3g}".format(*spread(large_tok_s[name])), 100 * large_shares[name][0],
                    "-" if name == half_name else compare(large_speed[name])] for name in large_models]))
    print(f"batch 1, {prompt_tokens}-token prompt, {lesson.rounds()} interleaved rounds; {half_name}'s step is at "
          f"{large_shares[half_name][1]}")
    del large_models
    torch.cuda.empty_cache()

# %% [markdown]
# ## Reading the speed numbers
# 4-bit saves memory; whether it saves time is a measurement. At batch 1, decoding reads every weight once per token,
# and a 4-bit weight is 4.5 bits with its scale against 16 (the ratio `bf16 / nf4` after "per weight:" under the table
# of GPUs above). Fewer bytes read *could* mean that many times more tokens/s for the linear layers, less for the whole
# model, whose embedding, head and norms stay 16-bit (on a GPU the last line below prints the bound for the 8B shape); but each
# 4-bit weight must still be decoded (code-book value × block absmax) to the compute dtype. At decode, one input row a
# step on a CUDA GPU, bitsandbytes 0.50.2 does this inside one fused kernel (`bitsandbytes::gemm_4bit`: always for up to 4 rows, up
# to 1536 where its per-GPU heuristic prefers it; `matmul_4bit` in `bitsandbytes/autograd/_functions.py`, the dispatch
# in `bitsandbytes/backends/cuda/ops.py`), so no 16-bit copy of the weight goes to memory; longer inputs, such as a long
# prefill, dequantize the whole weight first. Whether a ratio below says anything about that kernel depends on the
# 16-bit step's share of its bandwidth bound, printed beside it: below a fifth of the bound the step is overhead-bound
# (launches, Python, waits for the GPU), and a ratio there is the loop's, not the kernel's or the weight format's.
# bitsandbytes' [0.40.0 release notes](https://github.com/bitsandbytes-foundation/bitsandbytes/releases/tag/0.40.0) expected 4-bit
# batch-1 *matrix multiplications* to be 3.4× faster than 16-bit on Ampere and 4.0× on Ada/Hopper, for an inner
# dimension of at least 4096 (the 8B shape's hidden size; SmolLM2's inner dimensions are 576 and 1536); end-to-end `generate` includes much more (attention, norms, Python,
# kernel launches), and users have reported 4-bit decode slower than bf16 (bitsandbytes #611, transformers #24762).
# SmolLM2's float32 model reads twice the weight bytes of the 16-bit one per decode step: if the bytes read set the
# pace, it would decode at half the speed. The cell sets the measured float32 ratio against that, then prints the
# 4-bit ratios. This machine, from the interleaved rounds above:

# %%
bytes_ratio = read["float32"] / read[half_name]
_, low, high = speed["float32"]  # float32 tok/s over 16-bit tok/s, per round
if low > 1 / bytes_ratio:
    pace = "above the ratio its bytes predict: at this size the bytes read do not set the pace"
elif high < 1 / bytes_ratio:
    pace = "slower than the bytes alone explain"
else:
    pace = "as the bytes read predict"
print(f"SmolLM2, {half_name}'s step is at {shares[half_name][1]}")
print(f"SmolLM2, float32 vs {half_name}: {bytes_ratio:.2f}x the weight bytes per step; decode "
      f"{compare(speed['float32'])}, {pace} (bytes bound: {1 / bytes_ratio:.2f}x the {half_name} speed)")
print(f"SmolLM2, nf4 vs {half_name}: decode {compare(speed['nf4'])}")
if large_speed:
    print(f"{large}, nf4 vs {half_name}: decode {compare(large_speed['nf4'])}; {half_name}'s step is at "
          f"{large_shares[half_name][1]}")
    large_bytes_ratio = large_read["nf4"] / large_read[half_name]
    print(f"{large}: a decode step of nf4 reads {large_bytes_ratio:.2f} of the 16-bit weight bytes (the input embedding "
          f"is not read whole unless tied to the head): the bandwidth bound alone would allow {1 / large_bytes_ratio:.2f}x")

# %% [markdown]
# Lesson 07 puts decode speeds against the memory-bandwidth bound; lesson 08 asks whether other 4-bit kernels decode
# faster than 16-bit.

# %%
lesson.record(
    **{f"{name.replace(' ', '_')}_ppl": value for name, value in ppl.items()},
    nf4_vs_half_footprint=footprint["nf4"] / footprint[half_name],
    nf4_vs_half_decode=speed["nf4"],
    **({"large_nf4_vs_half_footprint": large_footprint["nf4"] / large_footprint[half_name],
        "large_nf4_vs_half_decode": large_speed["nf4"]} if large_footprint else {}),
)

# %% [markdown]
# ## Summary
# What this run measured, read from the variables above:

# %%
print(f"perplexities are of {base}, on {lesson.size('eval_tokens')} tokens of the course's text")
for name in configs:
    median_tok_s, low, high = spread(tok_s[name])
    print(f"SmolLM2, {name}: {footprint[name] / MiB:.1f} MiB, perplexity {ppl[name]:.2f}, decode {median_tok_s:.1f} "
          f"tok/s (quartiles {low:.1f}-{high:.1f}), {100 * shares[name][0]:.1f}% of its bound")
print(f"SmolLM2, nf4 against {half_name}: footprint x{footprint['nf4'] / footprint[half_name]:.2f} (every weight at "
      f"{bits_per_weight('nf4'):g} bits would give x{bits_per_weight('nf4') / 16:.2f}), decode {compare(speed['nf4'])}; "
      f"{half_name}'s step is at {shares[half_name][1]}")
print(f"Llama-3-8B shape, predicted: bf16 / nf4 = {sizes['bf16'] / sizes['nf4']:.2f}x; "
      f"{100 * share['llama3-8b-shape']:.1f}% of its 16-bit bytes stay 16-bit under nf4")
for name in large_speed:
    median_tok_s, low, high = spread(large_tok_s[name])
    print(f"{large}, {name}: {large_footprint[name] / MiB:.0f} MiB, decode {median_tok_s:.1f} tok/s (quartiles "
          f"{low:.1f}-{high:.1f}), {100 * large_shares[name][0]:.1f}% of its bound"
          + ("" if name == half_name else f", against {half_name} {compare(large_speed[name])}"))

# %% [markdown]
# The lesson's checks, last so that a failing one leaves the measurements above recorded: NF4 reconstructs the real
# weight matrix with less error than FP4, and ours differs from bitsandbytes' only on midpoints; every 4-bit variant
# takes less than half the 16-bit footprint, NF4's perplexity is below FP4's, and the 16-bit and NF4 variants name
# Paris (FP4's answer is printed, not checked: whether its greedy answer survives float16 compute, the t4 profile, has
# not been checked); the module-by-module prediction matches each measured footprint within 1%.

# %%
from coursetools.checks.lesson03 import PREDICTION_TOLERANCE, prediction_problem, round_trip_problem, variants_problem

four_bit = [name for name, (_, config) in configs.items() if config is not None]
problems = [round_trip_problem(errors, off_midpoint),
            variants_problem(footprint, ppl, answers, half_name, four_bit),
            prediction_problem(small_predicted, {name: footprint[name] for name in small_predicted}),
            prediction_problem(large_predicted, large_footprint)]
problems = [problem for problem in problems if problem]
assert not problems, problems
print(f"checks passed: NF4's round-trip error {errors['nf4']:.5f} < FP4's {errors['fp4']:.5f}, differences only on "
      f"midpoints | each of {', '.join(four_bit)} under half the {half_name} footprint, nf4 perplexity below fp4's, Paris "
      f"from {half_name} and nf4 | {len(small_predicted) + len(large_predicted)} footprints within "
      f"{PREDICTION_TOLERANCE:.0%} of the prediction")
