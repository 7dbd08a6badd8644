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
# This lesson first runs that recipe as written, on the installed versions, and shows what each of its calls does
# today (the dtype the model gets, which attention kernel runs), and what became of `use_flash_attention_2`, the switch
# for flash attention that transformers added in late 2023 (the guide does not use it). Then it writes today's single
# `from_pretrained` call that asks for both, measures the whole matrix, weights {16-bit, nf4, int8} × attention
# {eager, SDPA flash, SDPA cuDNN}, at a short and a long context, finds what the quantized layers hold in memory beyond
# their weights, and asks how close decoding gets to the hardware's limit, with `generate` and with a compiled loop of
# our own.
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
# ### The seed's recipe, as written
# The guide's code, word for word, except two things this lesson's model needs: the checkpoint is the lesson's model
# (the guide's was `facebook/opt-350m`), and the prompt is random token ids rather than "Hello my dog is cute and"
# (the GPU profile's model has random weights and no tokenizer; every profile uses ids). `generate` gets an explicit
# length, greedy decoding and a pad token id (the guide relied on the model's defaults). The cell prints what the old
# context manager does on the
# installed PyTorch: its deprecation warning (once), the backend switches it leaves on (it has a fourth switch the seed
# did not set, `enable_cudnn`, default `True`, so its "flash only" still allows cuDNN attention), and which SDPA backend
# `generate` actually ran, read from the profiler (`backends_run`: the operator each backend runs as). Where
# `torch.backends.cuda.sdp_kernel` no longer exists, the cell shows the `AttributeError` and runs what it did instead:
# `sdpa_kernel` with flash and cuDNN.

# %%
import warnings

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from helpers.attention import allowed_backends, backends_run, reasons_by_backend
from helpers.models import pretrained_path, weights_in_use

name = lesson.size("model")
print(weights_in_use(name))
checkpoint = pretrained_path(name)
probe_tokens = lesson.size("probe_tokens")

quantization_config = BitsAndBytesConfig(
    load_in_4bit=True,
    bnb_4bit_compute_dtype=torch.float16
)
model = AutoModelForCausalLM.from_pretrained(checkpoint, quantization_config=quantization_config)
prompt = torch.randint(0, model.config.vocab_size, (1, lesson.size("prompt_tokens")), device=model.device)
inputs = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt)}

try:
    seed_context = torch.backends.cuda.sdp_kernel
except AttributeError as err:  # removed from this PyTorch: the seed's line fails here
    print(f"torch.backends.cuda.sdp_kernel: AttributeError: {err}")

    def seed_context(**switches):
        """What the seed's context did: allow flash and (its default enable_cudnn=True) cuDNN attention."""
        return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION])

caught = []  # every warning of the seed's calls, printed once each below


def seed_generate(model):
    """Run the seed's generate inside its context; return the backends it allowed, and the SDPA calls per backend
    that ran (None where PyTorch refused, with the error's first line and PyTorch's reasons per backend)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with seed_context(enable_flash=True, enable_math=False, enable_mem_efficient=False):
            allowed = allowed_backends()
            try:
                ran = backends_run(lambda: model.generate(**inputs, max_new_tokens=probe_tokens, do_sample=False,
                                                          pad_token_id=0))
                error = ""
            except RuntimeError as err:
                ran, error = None, str(err).splitlines()[0]
    caught.extend(seen)
    reasons = reasons_by_backend(str(w.message) for w in seen)
    return allowed, ran, error, reasons


def said(ran, error, reasons):
    """One line: which SDPA backends ran (calls each), or the refusal with PyTorch's reasons."""
    if ran is not None:
        return f"ran, SDPA calls by backend: {dict(ran)}"
    why = "; ".join(f"{backend}: {' '.join(lines)}" for backend, lines in reasons.items())
    return f"refused: {error}" + (f" ({why})" if why else "")


seed_allowed, seed_ran, seed_error, seed_reasons = seed_generate(model)
q_proj = model.model.layers[0].self_attn.q_proj
print(f"the seed's model: {type(q_proj).__name__} layers ({q_proj.weight.quant_state.quant_type}, computing in "
      f"{q_proj.compute_dtype}), everything else in {model.dtype}; attention {model.config._attn_implementation}")
print("backends the seed's context allows:", seed_allowed)
print("generate inside it:", said(seed_ran, seed_error, seed_reasons))
for message in dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught
                             if issubclass(w.category, (DeprecationWarning, FutureWarning))):
    print("seed's sdp_kernel:", message)
if lesson.device == "cpu":
    print("On a CPU there is no GPU flash kernel: SDPA's flash switch selects PyTorch's CPU implementation of the same "
          "algorithm (aten::_scaled_dot_product_flash_attention_for_cpu), which is what 'flash' means on this machine.")

# %% [markdown]
# ### The dtype a 4-bit model gets without `dtype=`
# The seed passes no dtype for the parts that stay unquantized (embeddings, norms, output head), and those parts make
# the hidden states attention receives. On a GPU, PyTorch's flash kernel takes only float16 and bfloat16 inputs (its
# rules are in PyTorch's `sdp_utils.cpp`; lesson 02 probes them), so this default decides whether the seed's "flash
# only" context can run.
#
# - **transformers 4.x** forced float16: `from_pretrained` left `dtype` at `None`, and the bitsandbytes quantizer
#   replaced `None` with `torch.float16`, logging "Overriding dtype=None with `dtype=torch.float16` due to requirements
#   of `bitsandbytes`" (read in transformers 4.57.1, `quantizers/quantizer_bnb_4bit.py`,
#   `Bnb4BitHfQuantizer.update_dtype`). So the seed's model was float16, which flash takes.
# - **transformers 5.x** takes the checkpoint's own dtype: `PreTrainedModel.from_pretrained` turns a missing `dtype`
#   into `"auto"`, `_get_dtype` resolves `"auto"` to the dtype the checkpoint's config names (else that of its first
#   floating-point weight), and the 4-bit quantizer no longer overrides it (`HfQuantizer.update_dtype` in
#   `quantizers/base.py` returns it unchanged; read in transformers 5.17.0, `modeling_utils.py`).
#
# The cell checks this on the installed version: the dtype the seed's model got against the one its checkpoint's
# config names, whether the installed 4-bit quantizer overrides `update_dtype`, and the same recipe on a config that
# says float32, as the config of a checkpoint saved in float32 does, run inside the seed's context again.

# %%
import transformers
from transformers import AutoConfig

from helpers.tables import table

stored = AutoConfig.from_pretrained(checkpoint).dtype
float32_config = AutoConfig.from_pretrained(checkpoint)
float32_config.dtype = torch.float32
float32_model = AutoModelForCausalLM.from_pretrained(checkpoint, config=float32_config,
                                                     quantization_config=quantization_config)
quantizer = type(model.hf_quantizer)
print(f"transformers {transformers.__version__}: {quantizer.__name__} overrides update_dtype: "
      f"{'update_dtype' in quantizer.__dict__}")
_, float32_ran, float32_error, float32_reasons = seed_generate(float32_model)
seed_dtypes = {"checkpoint's config": model.dtype, "config saying float32": float32_model.dtype}
display(table(["config names", "model gets", "generate inside the seed's context"],
              [[stored, model.dtype, said(seed_ran, seed_error, seed_reasons)],
               [torch.float32, float32_model.dtype, said(float32_ran, float32_error, float32_reasons)]]))
if seed_ran is not None and float32_ran is None:
    print(f"Only the 16-bit model runs in the seed's context here: from a checkpoint stored in float32, transformers "
          f"{transformers.__version__} gives the seed's recipe a model that context refuses; 4.x gave it float16 "
          "whatever the checkpoint stored.")
elif seed_ran is not None:
    print("Both run here: this machine's flash kernel takes float32 too (on a CPU, PyTorch's CPU flash does); a GPU's "
          "flash kernel takes only 16-bit inputs.")
elif float32_ran is None:
    print("Neither runs here: this machine has no flash or cuDNN attention for the seed's context to allow, whatever "
          "the dtype (lesson 02's probe says why).")
del model, float32_model

# %% [markdown]
# ### `use_flash_attention_2=True`, then `attn_implementation=`
# In late 2023 transformers spelled "use the flash-attn package" as `from_pretrained(..., use_flash_attention_2=True)`;
# it was replaced by `attn_implementation="flash_attention_2"`. Both, on the installed version (with the lesson's
# 16-bit dtype, `half`: bfloat16 on a large GPU, float16 on a T4, float32 on the CPU profile):

# %%
half = lesson.dtype("half")
for keywords in ({"use_flash_attention_2": True}, {"attn_implementation": "flash_attention_2"}):
    call = ", ".join(f"{key}={value!r}" for key, value in keywords.items())
    try:
        loaded = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=half, device_map=lesson.device, **keywords)
        print(f"from_pretrained(..., {call}): loaded, attention {loaded.config._attn_implementation}")
        del loaded
    except (TypeError, ImportError, ValueError, OSError, RuntimeError) as err:
        print(f"from_pretrained(..., {call}): {type(err).__name__}: {str(err).splitlines()[0]}")

# %% [markdown]
# The first is no keyword of `from_pretrained` any more: it travels on to the model's constructor, which refuses it
# (as `load_in_4bit=True` does, next). The second needs the separate flash-attn package (or, in transformers 5, the
# `kernels` package, which fetches a prebuilt kernel from the Hub instead). PyTorch's own flash kernel needs neither:
# `attn_implementation="sdpa"` with `torch.nn.attention.sdpa_kernel(SDPBackend.FLASH_ATTENTION)`, today's spelling of
# the seed's context, as in the call below.
#
# The seed's quick-start 4-bit spelling, `from_pretrained(model_name, device_map="auto", load_in_4bit=True)`, on the
# installed version: `load_in_4bit` is no longer a keyword of `from_pretrained` at all. (The seed's other loading
# keyword, `torch_dtype=torch.float16` in its BetterTransformer example, is now `dtype=`: transformers warns and maps
# it.)

# %%
try:
    AutoModelForCausalLM.from_pretrained(checkpoint, device_map="auto", load_in_4bit=True)
except TypeError as err:
    print(f"seed's from_pretrained(..., device_map='auto', load_in_4bit=True): TypeError: {err}")

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
#   memory-efficient, math) per call; `torch.nn.attention.sdpa_kernel(...)` restricts the choice (lesson 02).
#   Default `None`, which means `"sdpa"` where the model supports it and `"eager"` otherwise.
#   `model.set_attn_implementation("eager")` switches a loaded model.
# - `dtype=half`: the dtype of everything that stays unquantized (embeddings, norms, output head) and so of the hidden
#   states reaching attention; default `"auto"`: the checkpoint's own dtype (above).
# - `device_map=lesson.device`: where the weights go while loading; bitsandbytes quantizes them on that device. Left
#   out (`None`), a bitsandbytes model goes to the current CUDA GPU, or the CPU where there is none.
#
# `half` is this profile's 16-bit dtype (bfloat16 on a large GPU, float16 on a T4); the CPU profile uses float32 here
# (half precision can pay on a CPU only where it has bf16 matrix units; lesson 01 times the dtypes on the machine at
# hand).
#
# ### Exercise: write the call
# Before the next cell shows it: write the keywords of that `from_pretrained` call as a dict, `answer_call = {...}`:
# nf4 weights whose 4-bit products run in `half`, the rest of the model in `half`, SDPA attention (`device_map` may be
# left out; the check adds `lesson.device`). The check inspects each keyword, then loads the lesson's model with your
# dict and checks what came out. A solution is in [`workshop/solutions/05-call.py`](../workshop/solutions/05-call.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/05-call.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer_call = ...  # a dict: {"quantization_config": BitsAndBytesConfig(...), "attn_implementation": ..., "dtype": ...}

# %%
from coursetools.exercises import check

check("05-call", answer_call, half=half, path=checkpoint, device=lesson.device)

# %% [markdown]
# The call, then `generate` with only the flash kernel allowed (`sdpa_kernel(SDPBackend.FLASH_ATTENTION)`), and the
# SDPA backend that ran:

# %%
model = AutoModelForCausalLM.from_pretrained(
    checkpoint,
    quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=half),
    attn_implementation="sdpa",
    dtype=half,
    device_map=lesson.device,
).eval()
try:  # a GPU without a flash kernel (a T4) refuses: PyTorch warns why per backend, then raises
    with warnings.catch_warnings(), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        warnings.filterwarnings("ignore", message=".*(kernel not used|runtime disabled|Expected query)")
        flash_ran = backends_run(lambda: model.generate(**inputs, max_new_tokens=probe_tokens, do_sample=False,
                                                        pad_token_id=0))
    flash_error = ""
except RuntimeError as err:
    flash_ran, flash_error = None, str(err).splitlines()[0]
q_proj = model.model.layers[0].self_attn.q_proj
today_dtype = model.dtype
print(f"{type(q_proj).__name__}, {q_proj.weight.quant_state.quant_type}, computes in {q_proj.compute_dtype}; "
      f"attention {model.config._attn_implementation}; unquantized parts {today_dtype}")
print("generate with only flash allowed:", said(flash_ran, flash_error, {}))
del model

# %% [markdown]
# ## The matrix
# One model per weight format, loaded with the call above (`quantization_config=None` for 16-bit; `load_in_8bit=True`
# for LLM.int8(), lesson 04, whose kernels compute in float16, so that model is loaded with `dtype=torch.float16` and
# its attention gets float16 rather than `half`). The attention rows switch the same weights with
# `set_attn_implementation`: "eager", and "sdpa" with only the flash or only the cuDNN kernel allowed; a kernel the
# machine lacks shows up as a refusal, not a crash. On the CPU profile the "16-bit" row is float32 (see above).
#
# Memory (footprint, prefill peak) is measured once: on a GPU the same shapes allocate the same bytes, so it is not
# expected to vary between runs (not re-measured here); on a CPU it is the process's resident memory, which the
# allocator and the operating system move by some MiB, so small CPU differences are not findings. Times are measured in
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
    w_name: AutoModelForCausalLM.from_pretrained(checkpoint, quantization_config=config, attn_implementation="sdpa",
                                                 dtype=dtype, device_map=lesson.device).eval()
    for w_name, (dtype, config) in weights.items()
}
baseline = lesson.size("half")
attention = {"eager": ("eager", None), "sdpa flash": ("sdpa", "flash"), "sdpa cuDNN": ("sdpa", "cudnn")}
contexts = lesson.size("contexts")
short, long = contexts[0], contexts[-1]
batch = lesson.size("batch")
new_tokens = lesson.size("new_tokens")
# generation is long: a few interleaved rounds, each a paired comparison (fewer on a CPU, where it is slower still)
timing = {"warmup": lesson.warmup("matrix"), "rounds": lesson.rounds("matrix")}

# %% [markdown]
# ### Exercise: predict, then measure
# Before the next cell measures it: at batch 1, with SDPA attention, how many times as fast as the 16-bit model does
# the nf4 model decode? Each token reads every weight once, and the 4-bit layers store about a quarter of their 16-bit
# bytes, an eighth of float32's on the CPU profile (the embeddings and output head are not quantized, so the whole
# model shrinks less: the table's MiB column); but every
# 4-bit layer must also unpack and scale its codes (on a GPU at batch 1 inside bitsandbytes' one fused kernel per
# layer; on a CPU without AVX-512 bf16 into a dequantized copy first), and a step does more than read weights. Write a
# number as `prediction = ...` (1.0: as fast; 2.0: twice as fast; 0.5: half as fast); the check after the table
# compares it with the per-round ratios measured here, and says what the bytes alone would predict.
# A reasoned answer is in [`workshop/solutions/05-predict.py`](../workshop/solutions/05-predict.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/05-predict.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
prediction = ...  # a number: nf4's decode speed as a multiple of the 16-bit model's

# %%
from helpers.evaluation import measure_matrix

variants = {(w, a): (models[w], impl, backend) for w in weights for a, (impl, backend) in attention.items()}
matrix = measure_matrix(variants, contexts, new_tokens=new_tokens, batches=(1, batch), **timing)
ran = {key: r for key, r in matrix.items() if not r.error and r.peak_bytes.get(long) is not None}

# %% [markdown]
# ### Exercise
# The measurements are in `ran` (each combination that ran at every context: a `(weights, attention)` key), not yet
# printed. Before the next cell shows them: which combination needs the least memory to serve the longest context
# `long`, counting its weights (`ran[key].footprint_bytes`) plus its prefill peak above them
# (`ran[key].peak_bytes[long]`)?
# Write it as `answer = ...` and run the check below it. A solution is in
# [`workshop/solutions/05.py`](../workshop/solutions/05.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/05.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer = ...  # your answer

# %%
check("05", answer, ran=ran, long=long)

# %% [markdown]
# The whole matrix. Each decode speed is shown beside its share of the **bandwidth bound**: a decode step reads every
# weight once (`weight_bytes_per_token`: all parameters, the input embedding only where it is also the output head)
# plus each row's KV cache (`kv_cache_bytes`, at the middle step's length), so it cannot make more than
# bandwidth ÷ bytes steps a second (`decode_bound_tokens_per_s`); at batch `batch` one step makes `batch` tokens.

# %%
from statistics import median

from helpers.decoding import OVERHEAD_BOUND_SHARE, bound_share, kv_cache_bytes, weight_bytes_per_token
from helpers.limits import decode_bound_tokens_per_s, memory_bandwidth

bandwidth, bandwidth_source = memory_bandwidth(lesson.device)
# measure_matrix decodes after a prompt of its first context (here `short`): a middle step's KV cache is this long
decode_context = short + new_tokens // 2


def bytes_per_token(model, rows, context=decode_context):
    """Bytes one decode step reads per token it makes: every weight once plus each row's KV cache, over the rows."""
    kv = kv_cache_bytes(model.config, context, rows, element_bytes=model.dtype.itemsize)
    return (weight_bytes_per_token(model) + kv) / rows


def share(model, tokens_per_s, rows=1, context=decode_context):
    """A decode speed's share of its bandwidth bound (0-1), its KV cache `context` tokens long."""
    return bound_share(tokens_per_s, bytes_per_token(model, rows, context), bandwidth)[0]


print(f"{name} on {lesson.device}; memory bandwidth {bandwidth / 1e9:.0f} GB/s ({bandwidth_source}); medians of "
      f"{timing['rounds']} interleaved rounds; prefill ms / peak MiB above the weights at {short} and {long} tokens; "
      f"decode tok/s and % of the bound at batch 1 and {batch}")
rows, refused = [], []
for (w_name, a_name), r in matrix.items():
    if r.error:
        refused.append(f"{w_name}, {a_name}: refused: {r.error[:80]}")
        continue
    cells = []
    for context in (short, long):
        ran_here = r.peak_bytes.get(context) is not None
        cells += [median(r.prefill_ms[context]) if ran_here else "OOM",
                  r.peak_bytes[context] / 2**20 if ran_here else "OOM"]
    one, many = median(r.decode_tokens_per_s[1]), median(r.decode_tokens_per_s[batch])
    rows.append([w_name, a_name, r.footprint_bytes / 2**20, *cells, one, 100 * share(models[w_name], one), many,
                 100 * share(models[w_name], many, batch)])
display(table(["weights", "attention", "MiB", f"prefill ms at {short}", f"peak MiB at {short}", f"prefill ms at {long}",
               f"peak MiB at {long}", "batch-1 tok/s", "batch-1 % of bound", f"batch-{batch} tok/s",
               f"batch-{batch} % of bound"], rows))
for line in refused:
    print(line)

# %% [markdown]
# The prediction's check: nf4 against the 16-bit weights, both with SDPA and only the flash kernel allowed (eager
# attention where flash was refused), as the median and quartiles of the per-round speed ratios, beside the ratio of
# their bytes per token and the 16-bit model's share of its bound.

# %%
from helpers.timing import compare, paired_ratio

row = "sdpa flash" if not (matrix[(baseline, "sdpa flash")].error or matrix[("nf4", "sdpa flash")].error) else "eager"
nf4_vs_half = paired_ratio(matrix[("nf4", row)].decode_tokens_per_s[1], matrix[(baseline, row)].decode_tokens_per_s[1])
byte_ratio = bytes_per_token(models[baseline], 1) / bytes_per_token(models["nf4"], 1)
base_share = share(models[baseline], median(matrix[(baseline, row)].decode_tokens_per_s[1]))
check("05-predict", prediction, ratio=nf4_vs_half, baseline=f"{baseline} ({row})", byte_ratio=byte_ratio,
      base_share=base_share)

# %%
import matplotlib.pyplot as plt

from helpers.timing import spread

fig, ax = plt.subplots(figsize=(7, 4.5))
for (w_name, a_name), r in ran.items():
    typical, low, high = spread(r.decode_tokens_per_s[1])
    spot = ((r.peak_bytes[long] + r.footprint_bytes) / 2**20, typical)
    ax.errorbar(*spot, yerr=[[typical - low], [high - typical]], fmt="o", capsize=3)
    ax.annotate(f"{w_name}, {a_name}: {100 * share(models[w_name], spot[1]):.1f}%", spot, fontsize=8, xytext=(4, 4),
                textcoords="offset points")
ax.set(xlabel=f"weights + prefill peak at {long} tokens (MiB)", ylabel="decode tokens/s (batch 1, quartiles of rounds)")
ax.set_title("memory against speed: left is small, up is fast (labels: % of the bandwidth bound)", fontsize=10)
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Which combination for which goal
# Computed from the measurements above, not typed. For a timed goal the leader is the best median, and every
# combination whose per-round ratios to the leader have quartiles that hold 1 is **tied** with it: the rounds cannot
# tell them apart. Memory is measured once (see above); combinations within 1% of the least memory are counted as tied.
# The "longest context" row ranks what serving `long` tokens needs in all: the weights plus the prefill peak above
# them, as the exercise above and the plot's x-axis count it. Each decode row carries its leaders' shares of the
# bandwidth bound (at batch `batch`, a step reads the weights plus `batch` sequences' KV cache and makes `batch`
# tokens), so a winner named on an overhead-bound row says so.

# %%
from coursetools.checks.lesson05 import goal_reading
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
for goal, (values, lower, tolerance) in per_round.items():
    decisions[goal] = leaders(values, lower_is_better=lower, tolerance=tolerance)
decode_goals = {"lowest latency (fastest batch-1 decode)": 1, f"highest throughput (decode at batch {batch})": batch}
leader_shares = {goal: {named([key]): share(models[key[0]], median(ran[key].decode_tokens_per_s[b]), b)
                        for key in decisions[goal]} for goal, b in decode_goals.items()}
display(table(["goal", "combination", "its decode's share of the bandwidth bound"],
              [[goal, ("tie: " if len(keys) > 1 else "") + named(keys),
                goal_reading(leader_shares[goal]) if goal in leader_shares else "- (not a decode speed)"]
               for goal, keys in decisions.items()]))
if any(s < OVERHEAD_BOUND_SHARE for by_name in leader_shares.values() for s in by_name.values()):
    print(f"Below {100 * OVERHEAD_BOUND_SHARE:.0f}% of its bandwidth bound a decode step is overhead-bound: reading "
          "the weights is a small part of a step, so a decode row marked so names the fastest at other work (around "
          "the kernels or in them), not the weight format whose bytes are fewest.")

# %% [markdown]
# ## What the peak memory holds
# The table's peak is what a prefill allocates above the weights. Activations have the same shapes in every format
# (and the same bytes where the unquantized dtype is the same), so where two formats' peaks differ, look at what their
# layers do. `layer_transients` looks inside: for every linear layer (bitsandbytes' layers are
# `nn.Linear` subclasses) it records the most memory one of its calls held beyond its own output: buffers the layer
# makes and frees itself. Beside each format's largest, the sizes it could be: that layer's weight in its compute
# dtype (a dequantized copy), an int32 product (tokens × outputs × 4 bytes) and an int8 copy of its input (tokens ×
# inputs). Measured with the attention row of the prediction check, at both contexts (on a GPU from the allocator's
# counters; on a CPU from the process's resident memory, coarser).

# %%
from contextlib import nullcontext

from helpers.memory import MiB, layer_transients

compute_dtype = {w_name: (config.bnb_4bit_compute_dtype if config is not None and config.load_in_4bit else dtype)
                 for w_name, (dtype, config) in weights.items()}


def candidates(model, layer, tokens, w_name):
    """The sizes a layer's transient could have, by what they would be."""
    linear = model.get_submodule(layer)
    return {f"its weight in {str(compute_dtype[w_name]).removeprefix('torch.')}":
            linear.out_features * linear.in_features * compute_dtype[w_name].itemsize,
            "an int32 product": tokens * linear.out_features * 4,
            "an int8 copy of its input": tokens * linear.in_features}


def reading(transient, sizes):
    """Which candidate size, or pair of them, the transient matches within 5%, or that none does."""
    pairs = {f"{a} + {b}": sizes[a] + sizes[b] for i, a in enumerate(sizes) for b in list(sizes)[i + 1:]}
    options = dict(sizes) | pairs
    found = [what for what, size in options.items() if abs(transient - size) <= 0.05 * size]
    return f"the size of {' or '.join(found)}" if found else "none of these sizes"


transients = {}
try:
    for w_name, model in models.items():
        model.set_attn_implementation(attention[row][0])
        for context in (c for c in contexts if matrix[(w_name, row)].peak_bytes.get(c) is not None):
            ids = torch.randint(0, model.config.vocab_size, (1, context), device=lesson.device)
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION) if row == "sdpa flash" else nullcontext():
                found = layer_transients(model, lambda: model(input_ids=ids, logits_to_keep=1), lesson.device)
            layer = max(found, key=found.get)
            transients[(w_name, context)] = (found[layer], layer, candidates(model, layer, context, w_name))
except OSError as err:  # a CPU outside Linux: no /proc to read the resident set's high-water mark from
    print(f"per-layer memory needs a GPU or Linux's /proc here: {err}")
# a reading below zero is the resident set's noise on a CPU (a call cannot hold less than nothing): shown as 0
display(table(["weights", "tokens", "peak MiB", "largest MiB", "in layer", "candidate sizes (MiB)"],
              [[w_name, context, matrix[(w_name, row)].peak_bytes[context] / MiB, max(transient, 0) / MiB, layer,
                ", ".join(f"{what} {size / MiB:.1f}" for what, size in sizes.items())]
               for (w_name, context), (transient, layer, sizes) in transients.items()]))

# %% [markdown]
# What the numbers say, computed from them: each quantized format's peak against the 16-bit model's at the same
# context, and whether the difference is what its layers hold beyond their outputs.

# %%
peak_readings = {}
for (w_name, context), (transient, layer, sizes) in transients.items():
    if w_name == baseline or (baseline, context) not in transients:
        continue
    extra = matrix[(w_name, row)].peak_bytes[context] - matrix[(baseline, row)].peak_bytes[context]
    held = transient - transients[(baseline, context)][0]  # beyond what the 16-bit model's layers hold
    line = (f"{w_name} at {context} tokens: peak {extra / MiB:+.1f} MiB against {baseline}'s; its largest layer "
            f"transient ({layer}) is {max(transient, 0) / MiB:.1f} MiB, {reading(transient, sizes)}")
    small = max(0.01 * matrix[(baseline, row)].peak_bytes[context], MiB)
    than = f"{abs(held) / MiB:.1f} MiB {'more' if held >= 0 else 'less'} than {baseline}'s"
    if models[w_name].dtype.itemsize != models[baseline].dtype.itemsize:  # int8's float16 against float32 on a CPU
        line += (f"; its activations are {models[w_name].dtype}, {baseline}'s {models[baseline].dtype}: the peaks "
                 "differ in activation bytes too, so the buffer alone cannot account for the difference")
    elif abs(extra) <= small and abs(held) <= small:
        line += f"; neither the peaks nor what the layers hold differ from {baseline}'s"
    elif abs(extra) <= small:
        line += f", {than}; yet the peaks are equal: the peak is reached where it is not held"
    elif abs(held) <= small:  # no extra buffer to match: "matches" would only say the peak differs by < 2 x small
        line += (f", {than}, within {small / MiB:.1f} MiB of it: no extra buffer of a layer accounts for the peak "
                 "difference")
    elif abs(extra - held) <= max(0.1 * abs(held), small):
        line += f", {than}: the peak difference matches that extra buffer"
    else:
        line += f", {than}: the peak difference does not match that extra buffer alone"
    peak_readings[(w_name, context)] = line
    print(line)

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
# on a GPU, flash and cuDNN attention take only 16-bit inputs. But `Linear4bit` casts its result back to the dtype of
# its input (bitsandbytes' `Linear4bit.forward`), so the compute dtype never reaches attention: the dtype attention
# sees is that of the hidden states, set by `dtype=` (or, left out, by the checkpoint, as above). The two keywords are
# separate, so the experiment varies them separately: nf4 models with `dtype` ∈ {float32, 16-bit} ×
# `bnb_4bit_compute_dtype` ∈ {float32, 16-bit}. For each, the dtype the query projection hands to attention, and
# whether a `generate` allowing only the flash kernel runs. (The CPU profile uses bfloat16 as the 16-bit dtype in this
# section only.)

# %%
low = half if half != torch.float32 else torch.bfloat16
grid = {}
for model_dtype in (torch.float32, low):
    for compute_dtype_tried in (torch.float32, low):
        nf4_model = AutoModelForCausalLM.from_pretrained(
            checkpoint,
            quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                   bnb_4bit_compute_dtype=compute_dtype_tried),
            attn_implementation="sdpa", dtype=model_dtype, device_map=lesson.device,
        ).eval()
        seen = []
        hook = nf4_model.model.layers[0].self_attn.q_proj.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        try:
            # a refused kernel makes PyTorch warn once per backend why, then raise: the error line says it all
            with warnings.catch_warnings(), sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                warnings.filterwarnings("ignore", message=".*(kernel not used|runtime disabled|Expected query)")
                nf4_model.generate(**inputs, max_new_tokens=probe_tokens, do_sample=False, pad_token_id=0)
            outcome = "runs"
        except RuntimeError as err:
            outcome = str(err).splitlines()[0]
        hook.remove()
        grid[(model_dtype, compute_dtype_tried)] = (seen[0], outcome)
        if model_dtype == low:  # kept for the timing below: same weights, only the compute dtype differs
            grid[(model_dtype, compute_dtype_tried)] += (nf4_model,)
        del nf4_model
display(table(["dtype=", "compute dtype", "attention gets", "flash-only generate"],
              [[model_dtype, compute_dtype_tried, received, outcome]
               for (model_dtype, compute_dtype_tried), (received, outcome, *_) in grid.items()]))

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
# the longest context and decode at batch 1 after a prompt of that length, each decode beside its share of the
# bandwidth bound (its KV cache counted at that length).

# %%
by_compute = {f"compute {c}": (grid[(low, c)][2], "sdpa", None) for c in (torch.float32, low)}
compute_runs = measure_matrix(by_compute, [long], new_tokens=new_tokens, batches=(1,), **timing)
slow, fast = (compute_runs[f"compute {c}"] for c in (torch.float32, low))
if slow.error or fast.error:
    print("a compute dtype was refused here:", slow.error or fast.error)
else:
    prefill_gain = paired_ratio(slow.prefill_ms[long], fast.prefill_ms[long])  # > 1: 16-bit compute takes less time
    decode_gain = paired_ratio(fast.decode_tokens_per_s[1], slow.decode_tokens_per_s[1])
    compute_share = {label: share(by_compute[label][0], median(r.decode_tokens_per_s[1]),  # decoded after `long`
                                  context=long + new_tokens // 2) for label, r in compute_runs.items()}
    print(f"with dtype={low}, bnb_4bit_compute_dtype={low} against float32: prefill at {long} tokens "
          f"{compare(prefill_gain)}, batch-1 decode {compare(decode_gain)}")
    print("decode shares of the bandwidth bound: " + ", ".join(f"{label} {100 * s:.1f}%"
                                                              for label, s in compute_share.items()))
    if min(compute_share.values()) < OVERHEAD_BOUND_SHARE:
        print(f"A decode here is below {100 * OVERHEAD_BOUND_SHARE:.0f}% of its bound: overhead-bound, "
              "reading the weights is a small part of a step, so the decode comparison measures other work than "
              "reading the weights (both read the same ones); this lesson does not profile a step, so which of that "
              "work the compute dtype changes is not measured here.")
del by_compute, grid

# %% [markdown]
# ## Decode against the bandwidth bound
# At batch 1, each new token reads every weight once, plus the KV cache: tokens/s ≤ memory bandwidth ÷ bytes per
# token. How close does `generate` get? Each format's share of its own bound, from the same rounds as the matrix, in
# the attention row of the prediction check (SDPA with only flash allowed where both ran it, else eager), median and
# range of the rounds, and what the share says:

# %%
shares, rows, bound_readings = {}, [], {}
for w_name in weights:
    r, model = matrix[(w_name, row)], models[w_name]
    if r.error or not r.decode_tokens_per_s.get(1):  # refused or failed in this row: said, not timed
        print(f"{w_name} with {row}: not measured ({r.error or 'no decode timing'})")
        continue
    shares[w_name] = [100 * share(model, speed) for speed in r.decode_tokens_per_s[1]]
    typical = median(r.decode_tokens_per_s[1])
    bound_readings[w_name] = bound_share(typical, bytes_per_token(model, 1), bandwidth)[1]
    bound = decode_bound_tokens_per_s(bytes_per_token(model, 1), bandwidth)
    rows.append([w_name, typical, bound, f"{min(shares[w_name]):.3g}-{max(shares[w_name]):.3g}"])
display(table(["weights", "tok/s", "bound tok/s", "% of bound, range of rounds"], rows))
for w_name, said_now in bound_readings.items():
    print(f"{w_name}: {said_now}")
closest = leaders(shares, lower_is_better=False)
print("closest to its bound:", " and ".join(closest) + (" (tied)" if len(closest) > 1 else ""))
if max(median(v) for v in shares.values()) < 100 * OVERHEAD_BOUND_SHARE:
    print(f"Every format is below {100 * OVERHEAD_BOUND_SHARE:.0f}% of its bound: all overhead-bound, so this ranks "
          "how little other work than reading the weights each format's step does, not how well a format turns the "
          "bytes it saves into speed.")

# %% [markdown]
# ## A static cache, and a compiled loop of our own
# A decode step of `generate` launches every layer's kernels one by one from Python. Two ways to do less of that
# work, measured against plain `generate` (its default dynamic cache, nothing compiled), for the 16-bit and nf4
# models:
# - **`generate(..., cache_implementation="static")`**: the KV cache is allocated once at its full length, and on a
#   GPU `generate` then compiles its decoding step (`torch.compile`, `mode="reduce-overhead"`: replayed as a CUDA
#   graph) when it may. It may not for every model: it skips compilation when the model's quantizer says it is not
#   compileable (transformers' `_valid_auto_compile_criteria`), and the bitsandbytes quantizers inherit "not
#   compileable" from the base class. The cell prints that flag and whether `generate` built a compiled step
#   (`model._compiled_call`).
# - **the course's own loop, `StaticGreedy`** (lesson 07 explains it line by line): a static cache, the next position
#   kept on the GPU, and one compiled step (`fullgraph=True`, `mode="reduce-overhead"`) on the profiles that compile
#   (`compile_mode` below; a CPU does not). nf4 runs in it **uncompiled**, for the reason `generate` does not compile
#   it: its quantizer is not compileable.
#
# Compiling uses `torch.compile`'s default settings here, not the tuned ones of lessons 07 and 08
# (`use_compiler_settings()`): their coordinate-descent tuning times kernel variants while compiling, which costs
# minutes of this lesson's run, and the question here is the work around the kernels (a CUDA graph replays a step's
# launches whatever the kernels inside it), not the kernels' own speed. So the own loop's figures here are not lesson
# 07's.
#
# Timing as in lesson 07 (`decode_step_ms`): each way runs untimed first (compiling happens there), then the ways take
# turns in rounds; one measurement is the time of `new_tokens` tokens minus that of one, over `new_tokens - 1`.
# `compile_events` counts the graphs compiled and CUDA graphs recorded inside the timed rounds, which should be none.
# The 16-bit comparison is the lesson's headline, so on the GPU profile it gets more rounds than nf4's
# (`lesson.rounds("static")` and `lesson.rounds("static_nf4")`; the table below prints each count). All use SDPA
# with the kernel SDPA picks by itself, and a prompt of `short` tokens. Each way's bound counts the KV cache its
# attention reads: a static cache's attention spans the whole cache at every step (`short + new_tokens` tokens in the
# own loop, one fewer in `generate`'s; masked beyond the tokens so far), the dynamic cache's only the tokens so far.

# %%
from collections import Counter

from helpers.decoding import StaticGreedy, counted
from helpers.timing import decode_step_ms, interleaved

compile_mode = lesson.size("compile_mode")  # None on the cpu profile: compiling there would take minutes of CI time
quantizers = {w_name: getattr(models[w_name], "hf_quantizer", None) for w_name in (baseline, "nf4")}
compileable = {w_name: quantizer.is_compileable if quantizer else True for w_name, quantizer in quantizers.items()}
for w_name, quantizer in quantizers.items():
    if not compileable[w_name]:
        print(f"{w_name}: its quantizer ({type(quantizer).__name__}) is not compileable, so generate does not compile "
              "it and the own loop runs it uncompiled")
    elif not compile_mode:
        print(f"{w_name}: this profile compiles nothing (compile_mode None), so the own loop runs uncompiled")


def ways_to_decode(model, prompt, loop_mode):
    """Return each way's run(n), which decodes n tokens greedily after the prompt."""
    mask = torch.ones_like(prompt)

    def generate(n, **options):
        return model.generate(prompt, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                              pad_token_id=0, **options)

    loop = StaticGreedy(model, max_cache_len=prompt.shape[1] + new_tokens, compile_mode=loop_mode)
    return {"generate, dynamic cache": generate,
            "generate, static cache": lambda n: generate(n, cache_implementation="static"),
            "own loop, " + ("compiled step" if loop_mode else "uncompiled step"): lambda n: loop(prompt, n)}


loop_ms, events, compiled_by_generate = {}, {}, {}
measurements = {baseline: "static", "nf4": "static_nf4"}  # the syllabus names the rounds and warm-ups of each
for w_name, measurement in measurements.items():
    model = models[w_name]
    model.set_attn_implementation("sdpa")
    prompt_ids = torch.randint(0, model.config.vocab_size, (1, short), device=lesson.device)
    ways = ways_to_decode(model, prompt_ids, compile_mode if compileable[w_name] else None)
    with torch.inference_mode():  # as the timed rounds run: otherwise generate's static step compiles again in round 1
        for _ in range(lesson.warmup(measurement)):  # compiling and CUDA-graph capture happen here
            for run in ways.values():
                run(new_tokens), run(1)
    events[w_name] = {way: Counter() for way in ways}
    loop_ms[w_name] = interleaved({way: counted(decode_step_ms(run, new_tokens, lesson.device), events[w_name][way])
                                   for way, run in ways.items()}, lesson.rounds(measurement))
    compiled_by_generate[w_name] = hasattr(model, "_compiled_call")
print("generate built a compiled step:", ", ".join(f"{w} {built}" for w, built in compiled_by_generate.items()))
display(table(["weights", "decoding", "timed rounds", "graphs compiled in them", "CUDA graphs recorded in them"],
              [[w_name, way, lesson.rounds(measurements[w_name]), e["graphs compiled"], e["CUDA graphs recorded"]]
               for w_name, ways_events in events.items() for way, e in ways_events.items()]))
for w_name, ways_events in events.items():
    for way, e in ways_events.items():
        if e["graphs compiled"] or e["CUDA graphs recorded"]:  # the warm-ups should have done all of it
            print(f"{w_name}, {way}: {e['graphs compiled']} graphs compiled and {e['CUDA graphs recorded']} CUDA graphs "
                  "recorded inside the timed rounds, so its times below include that work, not decoding alone")

# %%
loop_shares, loop_ratios, loop_readings, rows = {}, {}, {}, []


def kv_length(way: str) -> int:
    """The KV cache a step of this way reads: the dynamic cache's middle step, a static cache's whole length."""
    return {"generate, dynamic cache": decode_context, "generate, static cache": short + new_tokens - 1}.get(
        way, short + new_tokens)  # generate sizes its static cache max_length - 1; the own loop prompt + new tokens


for w_name, ways_ms in loop_ms.items():
    dynamic, *others = ways_ms
    for way, ms in ways_ms.items():
        typical = 1e3 / median(ms)
        # a static cache's attention spans its whole length at every step (transformers' StaticLayer.get_mask_sizes
        # returns max_cache_len), the dynamic cache's only the tokens so far
        reading_now = bound_share(typical, bytes_per_token(models[w_name], 1, kv_length(way)), bandwidth)
        loop_shares[(w_name, way)], loop_readings[(w_name, way)] = reading_now
        if way == "own loop, compiled step" or (way == "generate, static cache" and compiled_by_generate[w_name]):
            loop_readings[(w_name, way)] += (
                "; compiled with torch.compile's default settings, not the tuned ones with which lesson 07 measures "
                "how near a compiled loop gets to the bound, so its speed-up here is of this path, not a verdict on "
                "compiling at its best")
        versus = "-" if way == dynamic else compare(paired_ratio(ways_ms[dynamic], ms))
        if way != dynamic:
            loop_ratios[(w_name, way)] = paired_ratio(ways_ms[dynamic], ms)
        rows.append([w_name, way, typical, 100 * loop_shares[(w_name, way)], versus])
display(table(["weights", "decoding", "tok/s", "% of bound", "against generate, dynamic cache"], rows))
for (w_name, way), said_now in loop_readings.items():
    print(f"{w_name}, {way}: {said_now}")

# %% [markdown]
# The lines above read each way by its share of the bound, and say of each compiled way that it was compiled with
# default settings: how near a tuned compiled loop gets to the bound is lesson 07's measurement, so a speed-up here is
# one of this path, not of compiling at its best. Where a compiled step decodes faster than an overhead-bound base, it
# does less work per step, around its kernels or in them (`torch.compile` can fuse operations); this lesson does not
# profile a step (lesson 07 does), so which part of the work each way saves is not measured here.
# Where the loop is not compiled (nf4, and every way on a CPU), the comparison measures the static cache and the loop's
# bookkeeping alone.
#
# The recorded results: each format's share of its bound with plain `generate` (the matrix), the perplexities, and,
# where this profile compiles, the 16-bit model's compiled ways against plain `generate`
# (`compiled_static_vs_dynamic_decode` where `generate` built a compiled step, `own_loop_vs_dynamic_decode`) and each
# format's share of its bound in the own loop. Ratios carry their rounds' quartiles widened by the run-to-run
# variation between machines.

# %%
own = {w_name: next(way for way in ways_ms if way.startswith("own loop")) for w_name, ways_ms in loop_ms.items()}
headline = {}
if compile_mode:
    if compiled_by_generate[baseline]:
        headline["compiled_static_vs_dynamic_decode"] = loop_ratios[(baseline, "generate, static cache")]
    else:
        print(f"not recorded: generate built no compiled step for {baseline} here")
    headline["own_loop_vs_dynamic_decode"] = loop_ratios[(baseline, own[baseline])]
    for w_name, ways_ms in loop_ms.items():
        headline[f"own_loop_{w_name}_pct_of_bound"] = spread([100 * share(models[w_name], 1e3 / ms,
                                                                          context=kv_length(own[w_name]))
                                                              for ms in ways_ms[own[w_name]]])
lesson.record(
    **{f"decode_{w_name}_pct_of_bound": spread(v) for w_name, v in shares.items()},
    **headline,
    **{f"ppl_{w}": v for w, v in quality.items()},
)

# %% [markdown]
# ## Summary
# What this run measured, read from the variables above:

# %%
seed_dtype = seed_dtypes["checkpoint's config"]
print(f"The seed's recipe without dtype=: a {seed_dtype} model (its checkpoint's config "
      f"names {stored}); generate in its 'flash only' context {said(seed_ran, seed_error, seed_reasons)}.")
print(f"Today's call with only flash allowed: {said(flash_ran, flash_error, {})}.")
rows = []
for w_name in weights:
    r = matrix[(w_name, row)]
    peak = r.peak_bytes[long] / MiB if r.peak_bytes.get(long) is not None else "out of memory"
    measured = w_name in shares  # refused or failed in this row: not measured (said under the bound table)
    rows.append([w_name, r.footprint_bytes / MiB, peak,
                 median(r.decode_tokens_per_s[1]) if measured else "not measured",
                 median(shares[w_name]) if measured else "-", quality[w_name]])
display(table(["weights", "weights MiB", f"prefill peak above them at {long} tokens, MiB", "batch-1 tok/s",
               "% of its bound", "perplexity"], rows))
print(f"nf4 against {baseline} at batch 1 ({row}): {compare(nf4_vs_half)}; its bytes alone would give "
      f"{byte_ratio:.2f}x")
for w_name, said_now in bound_readings.items():
    print(f"{w_name} at batch 1 ({row}): {said_now}")
for line in peak_readings.values():
    print(line)
for (w_name, way), said_now in loop_readings.items():
    versus = f"; against generate with a dynamic cache {compare(loop_ratios[(w_name, way)])}" if (
        (w_name, way) in loop_ratios) else ""
    print(f"{w_name}, {way}: {said_now}{versus}")

# %% [markdown]
# The lesson's checks, last so that a failing one leaves the measurements above recorded: the layers each format
# quantizes (the linear layers of the decoder blocks, scales included) shrink as the formats say, from 16-bit to int8
# to nf4 (the whole model need not: its unquantized rest is `half` in the nf4 model and float16 in the int8 one, which
# on the CPU profile, where `half` is float32, makes the int8 model the smaller); each model has the dtype it was
# loaded for (the seed's the one its checkpoint names, without `dtype=`); and the SDPA backends that ran are among
# those allowed: flash or cuDNN in the seed's context, only flash in today's call, which runs wherever the machine has
# a flash kernel (a CPU's, or a GPU of sm 8.0 or newer). Whether a call ran is checked too: the seed's model, where it
# is 16-bit, and today's call run wherever there is a flash kernel; the float32 model runs in the seed's context on a
# CPU only (a GPU's flash and cuDNN kernels take 16-bit inputs alone).

# %%
from coursetools.checks.lesson05 import allowed_problem, backend_problem, dtype_problem, footprint_order_problem
from helpers.memory import stored_bytes


def quantized_layer_bytes(model):
    """Bytes of the linear layers in the decoder blocks, the layers a weight format quantizes (scales included)."""
    return sum(stored_bytes(m.weight) for m in model.model.layers.modules() if isinstance(m, torch.nn.Linear))


layer_bytes = {w_name: quantized_layer_bytes(model) for w_name, model in models.items()}
has_flash = lesson.device == "cpu" or lesson.capability >= (8, 0)
takes_seed_dtype = lesson.device == "cpu" or seed_dtype in (torch.float16, torch.bfloat16)
# the seed's model runs where a flash kernel takes its dtype; None, no claim: a GPU older than sm 8.0 may run cuDNN
seed_runs = (True if has_flash else None) if takes_seed_dtype else False
problems = [
    footprint_order_problem(layer_bytes, [baseline, "int8", "nf4"]),
    dtype_problem({**seed_dtypes, "today's call": today_dtype, **{w: m.dtype for w, m in models.items()}},
                  {"checkpoint's config": stored, "config saying float32": torch.float32, "today's call": half,
                   **{w_name: dtype for w_name, (dtype, _) in weights.items()}}),
    allowed_problem(seed_allowed, {"flash", "cudnn"}),  # the seed's flash-only switches leave cuDNN on
    backend_problem(seed_ran, {"flash", "cudnn"}, should_run=seed_runs),
    backend_problem(float32_ran, {"flash", "cudnn"}, should_run=lesson.device == "cpu"),
    backend_problem(flash_ran, {"flash"}, should_run=has_flash),
]
problems = [problem for problem in problems if problem]
assert not problems, problems
sizes = ", ".join(f"{layer_bytes[w_name] / MiB:.0f} MiB in {w_name}" for w_name in layer_bytes)
print(f"checks passed: the quantized layers take {sizes} | every model has the dtype it was loaded for | the seed's "
      "context allows flash and cuDNN | SDPA ran only allowed backends, and ran or was refused where this machine's "
      "kernels say")
