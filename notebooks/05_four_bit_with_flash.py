# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] tags=["colab-badge"]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/efficient-inference-course/efficient-inference-course/blob/v0.2.0/notebooks/05_four_bit_with_flash.ipynb)
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

    bootstrap(home, lesson="05")

# %% [markdown]
# # 05 · Combining 4-bit weights with flash attention
#
# The 2023 guide's advanced recipe: load with `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float16)`
# and wrap `generate` in `torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=False, enable_mem_efficient=False)`.
# This lesson writes today's single `from_pretrained` call that asks for both, then measures the whole matrix, weights
# {16-bit, nf4, int8} × attention {eager, SDPA flash, SDPA cuDNN}, at a short and a long context, and asks how close
# decoding gets to the hardware's limit.
#
# **Which SmolLM2 weights.** Offline, the course's `smollm2-135m` is the packaged **Q4_1 GGUF**, dequantized to 16
# bits when loaded: its "16-bit baseline" has already been through 4-bit quantization once, so every quality figure
# below (perplexity) is relative to that model, not to the original. Where the Hub is reachable, the same calls load
# `HuggingFaceTB/SmolLM2-135M-Instruct` in full precision. The quality section prints which one this run uses; the
# timed model is the profile's `model` (on a GPU a Llama-1B-shaped model with random weights: speed and memory need
# only the shape), printed by the first code cell of the next section.

# %%
from coursetools.lesson import start_lesson

lesson = start_lesson("05")

# %% [markdown]
# ## 2023 → today
# The seed's calls, run on the installed versions: `from_pretrained(..., torch_dtype=torch.float16, load_in_4bit=True)`
# and the `torch.backends.cuda.sdp_kernel(...)` context. `torch_dtype` is now `dtype` (transformers warns and maps
# it), `load_in_4bit` is no longer a keyword of `from_pretrained` at all (it reaches the model's constructor, which
# refuses it), and `sdp_kernel` is deprecated in favour of `torch.nn.attention.sdpa_kernel`. The old context also has
# a fourth switch the seed did not set, `enable_cudnn`, which defaults to `True`: its "flash only" call still allows
# cuDNN attention, which GPUs of compute capability 9.x and 10.x with cuDNN 9.15.1 or newer (H100, H200) try first:
# lesson 02 prints which
# kernel runs on this machine. The cell prints what each backend switch reads inside that context.

# %%
import warnings

import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from helpers.models import pretrained_path, weights_in_use

name = lesson.size("model")
print(weights_in_use(name))
try:
    AutoModelForCausalLM.from_pretrained(pretrained_path(name), torch_dtype=torch.float16, load_in_4bit=True)
except TypeError as err:
    print(f"seed's from_pretrained(..., load_in_4bit=True): TypeError: {err}")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=False, enable_mem_efficient=False):
        switches = {"flash": torch.backends.cuda.flash_sdp_enabled(), "mem_efficient":
                    torch.backends.cuda.mem_efficient_sdp_enabled(), "math": torch.backends.cuda.math_sdp_enabled(),
                    "cudnn": torch.backends.cuda.cudnn_sdp_enabled()}
for warning in caught:
    print(f"seed's sdp_kernel: {warning.category.__name__}: {warning.message}")
print("backends allowed inside the seed's 'flash only' context:", [k for k, on in switches.items() if on])

# %% [markdown]
# ### Today's call: quantization and attention in one `from_pretrained`
# Each keyword, with its default in transformers 5.17 and bitsandbytes 0.50.2 (the pinned versions; the stamp at the
# top says which versions this run used):
#
# - `quantization_config=BitsAndBytesConfig(...)`: how to quantize while loading (default `None`: no quantization).
#   - `load_in_4bit=True`: replace every `nn.Linear` (except the output head) with bitsandbytes' `Linear4bit`
#     (default `False`).
#   - `bnb_4bit_quant_type="nf4"`: the 16 values a 4-bit code stands for (lesson 03); default `"fp4"`.
#   - `bnb_4bit_compute_dtype=half`: the dtype the 4-bit layers compute their matrix products in; default `None`,
#     which the config turns into `torch.float32`. `Linear4bit` casts its input to this dtype and its output **back
#     to the input's dtype**, so it does not change what the rest of the model (attention included) receives.
#   - left at their defaults here: `bnb_4bit_use_double_quant=False` (lesson 03), `bnb_4bit_quant_storage=None`
#     (packed into `torch.uint8`).
# - `attn_implementation="sdpa"`: PyTorch's `scaled_dot_product_attention`, which picks a kernel (flash, cuDNN,
#   memory-efficient, math) per call; `torch.nn.attention.sdpa_kernel([...])` restricts the choice (lesson 02).
#   Default `None`, which means `"sdpa"` where the model supports it and `"eager"` otherwise.
#   `"flash_attention_2"` needs the separate flash-attn package (transformers 5.17, the pinned version, falls back to a
#   prebuilt Hub kernel when the separate `kernels` package is installed instead).
#   `model.set_attn_implementation("eager")` switches a loaded model.
# - `dtype=half`: the dtype of everything that stays unquantized (embeddings, norms, output head) and so of the hidden
#   states reaching attention; default `"auto"`: the checkpoint's own dtype.
# - `device_map=lesson.device`: where the weights go while loading; bitsandbytes quantizes them on that device. Left
#   out (`None`), a bitsandbytes model goes to the current CUDA GPU, or the CPU where there is none.
#
# `half` is this profile's 16-bit dtype (bfloat16 on a large GPU, float16 on a T4); the CPU profile uses float32 here
# (half precision can pay on a CPU only where it has bf16 matrix units; lesson 01 times the dtypes on the machine at
# hand). The call, then `generate` with only the flash kernel allowed:

# %%
from torch.nn.attention import SDPBackend, sdpa_kernel

half = lesson.dtype("half")
model = AutoModelForCausalLM.from_pretrained(
    pretrained_path(name),
    quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=half),
    attn_implementation="sdpa",
    dtype=half,
    device_map=lesson.device,
).eval()
prompt = torch.randint(0, model.config.vocab_size, (1, 32), device=lesson.device)
try:  # a GPU without a flash kernel (a T4) refuses: PyTorch warns why per backend, then raises
    with warnings.catch_warnings(), sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        warnings.filterwarnings("ignore", message=".*(kernel not used|runtime disabled|Expected query)")
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=4, do_sample=False,
                             pad_token_id=0)
    flash_only = f"{out.shape[1] - prompt.shape[1]} tokens generated with only the flash kernel allowed"
except RuntimeError as err:
    flash_only = f"generate with only the flash kernel allowed: {str(err).splitlines()[0]}"
q_proj = model.model.layers[0].self_attn.q_proj
print(f"{type(q_proj).__name__}, {q_proj.weight.quant_state.quant_type}, computes in {q_proj.compute_dtype}; "
      f"attention {model.config._attn_implementation}; unquantized parts {model.dtype}; {flash_only}")
del model

# %% [markdown]
# ### Exercise: write the call
# Write the keywords of that `from_pretrained` call as a dict, `answer_call = {...}`: nf4 weights whose 4-bit products
# run in `half`, the rest of the model in `half`, SDPA attention (`device_map` may be left out; the check adds
# `lesson.device`). The check inspects each keyword, then loads the lesson's model with your dict and checks what came
# out. A solution is in [`workshop/solutions/05-call.py`](../workshop/solutions/05-call.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/05-call.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer_call = ...  # a dict: {"quantization_config": BitsAndBytesConfig(...), "attn_implementation": ..., "dtype": ...}

# %%
from coursetools.exercises import check

check("05-call", answer_call, half=half, path=pretrained_path(name), device=lesson.device)

# %% [markdown]
# ## The matrix
# One model per weight format, loaded with the call above (`quantization_config=None` for 16-bit; `load_in_8bit=True`
# for LLM.int8(), lesson 04, whose kernels compute in float16, so that model is loaded with `dtype=torch.float16` and
# its attention gets float16 rather than `half`). The attention rows switch the same weights with
# `set_attn_implementation`: "eager", and "sdpa" with only the flash or only the cuDNN kernel allowed; a kernel the
# machine lacks shows up as a refusal, not a crash. On the CPU profile the "16-bit" row is float32 (see above).
#
# Memory (footprint, prefill peak) is measured once: the same shapes allocate the same bytes, so it is not expected
# to vary between runs (not re-measured here). Times are measured in
# **interleaved rounds**: each round runs every combination once, prefill at each context and `generate` at batch 1
# and at a larger batch (from prompts of the short context's length), so a slow spell of the machine hits all
# combinations alike. Decode speed comes from two `generate` calls of the same round (1 token and `new_tokens`
# tokens): their difference is the decode steps.

# %%
weights = {
    lesson.size("half"): (half, None),
    "nf4": (half, BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=half)),
    "int8": (torch.float16, BitsAndBytesConfig(load_in_8bit=True)),
}
models = {
    w_name: AutoModelForCausalLM.from_pretrained(pretrained_path(name), quantization_config=config,
                                                 attn_implementation="sdpa", dtype=dtype,
                                                 device_map=lesson.device).eval()
    for w_name, (dtype, config) in weights.items()
}
attention = {"eager": ("eager", None), "sdpa flash": ("sdpa", "flash"), "sdpa cuDNN": ("sdpa", "cudnn")}
contexts = lesson.size("contexts")
short, long = contexts[0], contexts[-1]
batch = lesson.size("batch")
# generation is long: a few interleaved rounds, each a paired comparison (fewer on a CPU, where it is slower still)
timing = {"warmup": lesson.warmup("matrix"), "rounds": lesson.rounds("matrix")}

# %% [markdown]
# ### Exercise: predict, then measure
# Before the next cell measures it: does the nf4 model decode faster than the 16-bit one at batch 1, with SDPA
# attention? Each token reads every weight once; the 4-bit layers store about a quarter of their 16-bit bytes
# (the embeddings and output head stay 16-bit, so the whole model shrinks less: the table's MiB column), but every
# 4-bit layer must unpack and scale them first. Write `True` or `False` as `prediction = ...`; the check after the
# table compares it with this machine's interleaved measurement. A reasoned answer is in
# [`workshop/solutions/05-predict.py`](../workshop/solutions/05-predict.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/05-predict.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
prediction = ...  # True or False

# %%
from helpers.evaluation import measure_matrix

variants = {(w, a): (models[w], impl, backend) for w in weights for a, (impl, backend) in attention.items()}
matrix = measure_matrix(variants, contexts, new_tokens=lesson.size("new_tokens"), batches=(1, batch), **timing)

# %%
from statistics import median

print(f"{name} on {lesson.device}; medians of {timing['rounds']} interleaved rounds; prefill ms / peak MiB at {short} "
      f"and {long} tokens; decode tok/s at batch 1 and {batch}")
print(f"{'weights':<10}{'attention':<12}{'MiB':>7}{'pf ' + str(short):>10}{'pk ' + str(short):>9}"
      f"{'pf ' + str(long):>10}{'pk ' + str(long):>9}{'tok/s':>8}{'batch':>9}")
for (w_name, a_name), r in matrix.items():
    if r.error:
        print(f"{w_name:<10}{a_name:<12}  refused: {r.error[:80]}")
        continue
    cells = []
    for context in (short, long):
        ran_here = r.peak_bytes.get(context) is not None
        cells += [f"{median(r.prefill_ms[context]):>10.1f}" if ran_here else f"{'OOM':>10}",
                  f"{r.peak_bytes[context] / 2**20:>9.0f}" if ran_here else f"{'OOM':>9}"]
    print(f"{w_name:<10}{a_name:<12}{r.footprint_bytes / 2**20:>7.0f}{''.join(cells)}"
          f"{median(r.decode_tokens_per_s[1]):>8.1f}{median(r.decode_tokens_per_s[batch]):>9.1f}")

# %% [markdown]
# The prediction's check: nf4 against the 16-bit weights, both with SDPA and only the flash kernel allowed (eager
# attention where flash was refused), as the median and range of the per-round speed ratios. It prints them once
# `prediction` holds your answer; until then the table's tok/s column shows the two medians.

# %%
from helpers.timing import compare, paired_ratio

baseline = lesson.size("half")
row = "sdpa flash" if not (matrix[(baseline, "sdpa flash")].error or matrix[("nf4", "sdpa flash")].error) else "eager"
nf4_vs_half = paired_ratio(matrix[("nf4", row)].decode_tokens_per_s[1], matrix[(baseline, row)].decode_tokens_per_s[1])
check("05-predict", prediction, ratio=nf4_vs_half, baseline=f"{baseline} ({row})")

# %%
import matplotlib.pyplot as plt

ran = {key: r for key, r in matrix.items() if not r.error and r.peak_bytes.get(long) is not None}
fig, ax = plt.subplots(figsize=(7, 4.5))
for (w_name, a_name), r in ran.items():
    spot = ((r.peak_bytes[long] + r.footprint_bytes) / 2**20, median(r.decode_tokens_per_s[1]))
    ax.errorbar(*spot, yerr=[[spot[1] - min(r.decode_tokens_per_s[1])], [max(r.decode_tokens_per_s[1]) - spot[1]]],
                fmt="o", capsize=3)
    ax.annotate(f"{w_name}, {a_name}", spot, fontsize=8, xytext=(4, 4), textcoords="offset points")
ax.set(xlabel=f"weights + prefill peak at {long} tokens (MiB)", ylabel="decode tokens/s (batch 1, range of rounds)",
       title="memory against speed: left is small, up is fast")
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Exercise
# Before the next cell computes it: which measured combination (a key of `ran`) needs the least memory to
# serve the longest context `long`, counting its weights (`footprint_bytes`) plus its prefill peak (`peak_bytes[long]`)?
# Write it as `answer = ...` and run the check below it. A solution is in
# [`workshop/solutions/05.py`](../workshop/solutions/05.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/05.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer = ...  # your answer

# %%
check("05", answer, ran=ran, long=long)

# %% [markdown]
# ## Which combination for which goal
# Computed from the measurements above, not typed. For a timed goal the leader is the best median, and every
# combination whose per-round ratio to the leader has a range that holds 1 is **tied** with it: the rounds cannot
# tell them apart. Memory is measured once (see above); combinations within 1% of the least memory are counted as tied.
# The "longest context" row ranks what serving `long` tokens needs in all: the weights plus the prefill peak above
# them, as the exercise above and the plot's x-axis count it.

# %%
from helpers.evaluation import leaders

per_round = {
    "fit the biggest model (smallest weights)": ({k: [r.footprint_bytes] for k, r in ran.items()}, True, 0.01),
    f"longest context (least weights + prefill peak at {long})": (
        {k: [r.footprint_bytes + r.peak_bytes[long]] for k, r in ran.items()}, True, 0.01),
    "lowest latency (fastest batch-1 decode)": ({k: r.decode_tokens_per_s[1] for k, r in ran.items()}, False, 0.0),
    f"lowest time to first token at {long}": ({k: r.prefill_ms[long] for k, r in ran.items()}, True, 0.0),
    f"highest throughput (decode at batch {batch})": ({k: r.decode_tokens_per_s[batch] for k, r in ran.items()}, False,
                                                      0.0),
}


def named(keys: list) -> str:
    """Name the tied combinations, one weight format with every attention row said once."""
    groups = {w: [a for w2, a in keys if w2 == w] for w in dict.fromkeys(w for w, _ in keys)}
    every = {w: {a for w2, a in ran if w2 == w} for w in groups}
    return " | ".join(f"{w}, any attention" if set(a) == every[w] else f"{w}, {' or '.join(a)}"
                      for w, a in groups.items())


decisions = {}
width = max(map(len, per_round))
for goal, (values, lower, tolerance) in per_round.items():
    decisions[goal] = leaders(values, lower_is_better=lower, tolerance=tolerance)
    verdict = "tie: " if len(decisions[goal]) > 1 else ""
    print(f"{goal:<{width}} -> {verdict}{named(decisions[goal])}")

# %% [markdown]
# ### Quality of each weight format
# The attention kernels compute the same function up to rounding (lesson 02), so quality is the weights' business.
# Perplexity of the real SmolLM2 in each format, on the course text, loaded with the same calls:

# %%
from helpers.models import load_tokenizer
from helpers.quality import perplexity

print(weights_in_use("smollm2-135m"))
tokenizer = load_tokenizer("smollm2-135m")
quality = {}
for w_name, (dtype, config) in weights.items():
    real = AutoModelForCausalLM.from_pretrained(pretrained_path("smollm2-135m"), quantization_config=config,
                                                dtype=dtype, device_map=lesson.device).eval()
    quality[w_name] = perplexity(real, tokenizer, max_tokens=lesson.size("eval_tokens"))
    del real
print("perplexity:", {k: round(v, 2) for k, v in quality.items()})

# %% [markdown]
# ## What the compute dtype does, and what it does not
# The seed set `bnb_4bit_compute_dtype=torch.float16`, and the usual explanation is that flash attention needs it:
# flash and cuDNN attention take only 16-bit inputs. But `Linear4bit` casts its result back to the dtype of its
# input (bitsandbytes' `Linear4bit.forward`), so the compute dtype never reaches attention: the dtype attention sees
# is that of the hidden states, set by `dtype=`. The two keywords are separate, so the experiment varies them
# separately: nf4 models with `dtype` ∈ {float32, 16-bit} × `bnb_4bit_compute_dtype` ∈ {float32, 16-bit}. For each,
# the dtype the query projection hands to attention, and whether a `generate` allowing only the flash kernel runs.
# (The CPU profile uses bfloat16 as the 16-bit dtype in this section only.)

# %%
low = half if half != torch.float32 else torch.bfloat16
grid = {}
for model_dtype in (torch.float32, low):
    for compute_dtype in (torch.float32, low):
        nf4_model = AutoModelForCausalLM.from_pretrained(
            pretrained_path(name),
            quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                   bnb_4bit_compute_dtype=compute_dtype),
            attn_implementation="sdpa", dtype=model_dtype, device_map=lesson.device,
        ).eval()
        seen = []
        hook = nf4_model.model.layers[0].self_attn.q_proj.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        try:
            # a refused kernel makes PyTorch warn once per backend why, then raise: the error line says it all
            with warnings.catch_warnings(), sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                warnings.filterwarnings("ignore", message=".*(kernel not used|runtime disabled|Expected query)")
                nf4_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=2, do_sample=False,
                                   pad_token_id=0)
            outcome = "runs"
        except RuntimeError as err:
            outcome = str(err).splitlines()[0]
        hook.remove()
        grid[(model_dtype, compute_dtype)] = (seen[0], outcome)
        if model_dtype == low:  # kept for the timing below: same weights, only the compute dtype differs
            grid[(model_dtype, compute_dtype)] += (nf4_model,)
        del nf4_model
print(f"{'dtype=':<16}{'compute dtype':<16}{'attention gets':<16}flash-only generate")
for (model_dtype, compute_dtype), (received, outcome, *_) in grid.items():
    print(f"{str(model_dtype):<16}{str(compute_dtype):<16}{str(received):<16}{outcome}")

# %%
outcomes = {key: outcome for key, (_, outcome, *_) in grid.items()}
if all(received == model_dtype for (model_dtype, _), (received, *_) in grid.items()):
    print("Attention received the dtype set by dtype= in all four, whatever bnb_4bit_compute_dtype was.")
else:
    print("Attention received a dtype other than dtype='s in some row: see the table.")
if all(outcome == "runs" for outcome in outcomes.values()):
    print("Flash ran in all four: this machine's flash kernel takes float32 inputs too, so neither keyword matters "
          "for it here.")
elif not any(outcome == "runs" for outcome in outcomes.values()):
    print("Flash ran in none of the four: this GPU runs no flash kernel (see lesson 02's probe), so neither keyword "
          "can change that here.")
elif all(outcomes[(m, torch.float32)] == outcomes[(m, low)] for m in (torch.float32, low)):
    print("Whether flash ran was decided by dtype= alone: the same with either compute dtype.")
else:
    print("Here the compute dtype changed whether flash ran: see the table.")

# %% [markdown]
# What the compute dtype does change is the 4-bit layers' own arithmetic. Both 16-bit models above keep the same
# weights and attention; only their matrix products run in float32 or in 16 bits. Interleaved, as before: prefill at
# the longest context and decode at batch 1.

# %%
by_compute = {f"compute {c}": (grid[(low, c)][2], "sdpa", None) for c in (torch.float32, low)}
compute_runs = measure_matrix(by_compute, [long], new_tokens=lesson.size("new_tokens"), batches=(1,), **timing)
slow, fast = (compute_runs[f"compute {c}"] for c in (torch.float32, low))
if slow.error or fast.error:
    print("a compute dtype was refused here:", slow.error or fast.error)
else:
    prefill_gain = paired_ratio(slow.prefill_ms[long], fast.prefill_ms[long])  # > 1: 16-bit compute takes less time
    decode_gain = paired_ratio(fast.decode_tokens_per_s[1], slow.decode_tokens_per_s[1])
    print(f"with dtype={low}, bnb_4bit_compute_dtype={low} against float32: prefill at {long} tokens "
          f"{compare(prefill_gain)}, batch-1 decode {compare(decode_gain)}")
del by_compute, grid

# %% [markdown]
# ## Decode against the bandwidth bound
# At batch 1, each new token reads every weight once: tokens/s ≤ memory bandwidth ÷ weight bytes. How close does
# `generate` get? Each format's share of its own bound, from the same rounds as the matrix, in the attention row of
# the prediction check (SDPA with only flash allowed where both ran it, else eager), median and range:

# %%
from helpers.limits import decode_bound_tokens_per_s, memory_bandwidth

bandwidth, source = memory_bandwidth(lesson.device)
print(f"memory bandwidth {bandwidth / 1e9:.0f} GB/s ({source})")
shares = {}
for w_name in weights:
    r = matrix[(w_name, row)]
    bound = decode_bound_tokens_per_s(r.footprint_bytes, bandwidth)
    shares[w_name] = [100 * speed / bound for speed in r.decode_tokens_per_s[1]]
    print(f"{w_name:<10} {median(r.decode_tokens_per_s[1]):8.1f} tok/s of a {bound:8.0f} tok/s bound: "
          f"{median(shares[w_name]):5.1f}% (rounds {min(shares[w_name]):.1f}-{max(shares[w_name]):.1f}%)")
closest = leaders(shares, lower_is_better=False)
print("closest to its bound:", " and ".join(closest) + (" (tied)" if len(closest) > 1 else ""))

# %% [markdown]
# On a GPU we then try to remove Python and kernel-launch overhead with a **static KV cache**: with
# `cache_implementation="static"`, `generate` compiles the decoding step with `torch.compile` (its default mode,
# "reduce-overhead", replays the step as a CUDA graph) when it may. It may not for every model: `generate` skips
# compilation when the model's quantizer says it is not compileable (transformers' `_valid_auto_compile_criteria`),
# and the bitsandbytes 4-bit quantizer inherits "not compileable" from the base class. The cell prints that flag and,
# after the runs, whether `generate` built a compiled step (`model._compiled_call`). It then compares, for the 16-bit and nf4 models, the
# static-cache `generate` with a plain `generate` (a dynamic cache, nothing compiled); both use SDPA attention with
# the kernel SDPA picks by itself, and the same prompt of the short context. The 16-bit ratio is the lesson's
# headline, so it gets more interleaved rounds than the matrix, after warm-up rounds that hold the compilation and
# the CUDA-graph capture: a static `generate` of `new_tokens` compiles its one decode-step shape on its first call,
# and every timed round uses that shape again. (Not run in this notebook: compiling `model.forward` by hand with
# `mode="reduce-overhead"` and then calling `generate` can fail with "accessing tensor output of CUDAGraphs that has
# been overwritten", as it did on an H100 while this lesson was written; here `generate` manages the compiled step.)

# %%
from helpers.evaluation import interleaved_decode

print(f"nf4 quantizer is_compileable: {models['nf4'].hf_quantizer.is_compileable}")
# warm-up rounds: the first compiles the decode step and captures its CUDA graph, the others settle what follows.
# The 16-bit ratio is the recorded headline, so as a precaution it gets four times the matrix's rounds (a round is
# short: one model, batch 1); nf4, which generate does not compile, keeps the matrix's.
rounds_of = {baseline: 4 * timing["rounds"], "nf4": timing["rounds"]}
static_speedup, compiled = {}, {}
if not lesson.size("compile"):
    print("timing skipped on the cpu profile: torch.compile with CUDA graphs is the GPU part of this lesson")
else:
    for w_name, rounds in rounds_of.items():
        model = models[w_name]
        model.set_attn_implementation("sdpa")
        prompt = torch.randint(0, model.config.vocab_size, (1, short), device=lesson.device)
        runs = {"dynamic": (model, prompt, {}), "static": (model, prompt, {"cache_implementation": "static"})}
        try:
            speeds = interleaved_decode(runs, new_tokens=lesson.size("new_tokens"), warmup=lesson.warmup("static"), rounds=rounds)
        except RuntimeError as err:
            print(f"{w_name}: static cache failed here: {str(err).splitlines()[0][:200]}")
            continue
        static_speedup[w_name] = paired_ratio(speeds["static"], speeds["dynamic"])
        compiled[w_name] = hasattr(model, "_compiled_call")
        bound = decode_bound_tokens_per_s(matrix[(w_name, row)].footprint_bytes, bandwidth)
        print(f"{w_name}: compiled step built: {compiled[w_name]}; plain generate {median(speeds['dynamic']):.1f} "
              f"tok/s, static cache {median(speeds['static']):.1f} tok/s ({100 * median(speeds['static']) / bound:.1f}%"
              f" of the bound), {rounds} rounds: static cache {compare(static_speedup[w_name])}")

# %% [markdown]
# Where a compiled step was built, the static line measures the static cache and the compiled step together; where
# the line says no compiled step was built (a quantizer that is not compileable), it measures the cache alone, on
# those weights. Where the compiled step decodes faster, the usual explanation is overhead: a decode step launches
# many small kernels from Python, and a CUDA graph replays them in one launch. This lesson does not profile the step,
# so that is the expected cause, not a measured one; nor does it break down the gap still left to the bound
# (candidates: work the bound ignores, such as attention over the cache, norms and the argmax over the vocabulary, and
# kernels that do not reach peak bandwidth). 4-bit weights need fewer bytes but add dequantization work; the shares
# above say which format gets closest to its bound on this machine.
#
# The recorded results: each format's share of its bound, the perplexities, and, where `generate` compiled the 16-bit
# model's step, its compiled static-cache decode against plain `generate` (`compiled_static_vs_dynamic_decode`).
# Ratios carry their rounds' range widened by the run-to-run variation between machines.

# %%
from helpers.timing import spread

headline = {}
if compiled.get(baseline):
    headline["compiled_static_vs_dynamic_decode"] = static_speedup[baseline]
elif lesson.size("compile"):
    print(f"not recorded: generate built no compiled step for {baseline} here")
lesson.record(
    **{f"decode_{w_name}_pct_of_bound": spread(v) for w_name, v in shares.items()},
    **headline,
    **{f"ppl_{w}": v for w, v in quality.items()},
)
