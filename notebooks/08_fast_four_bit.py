# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] tags=["colab-badge"]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/efficient-inference-course/efficient-inference-course/blob/v0.2.0/notebooks/08_fast_four_bit.ipynb)
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

    bootstrap(home, lesson="08")

# %% [markdown]
# # 08 · Can 4-bit weights decode faster than 16-bit?
#
# Lessons 03–05 measured bitsandbytes' 4-bit and 8-bit weights as **memory** tools: smaller, and slower at batch 1 in
# `generate` steps far below their bandwidth bound (overhead-bound: such a step says nothing about the bytes).
# Lesson 07 showed why speed needs more than fewer bytes: decoding is only as fast as the bytes read per token *and*
# the overhead around the kernels. This lesson puts both together: 4-bit weights whose matrix-vector kernel reads the
# packed weights directly (torchao's int4 weight-only, using PyTorch's `tinygemm` kernel), inside the compiled
# static-cache step of lesson 07 (built to need no host wait per step, the runtime calls below count the waits it makes;
# weights unwrapped, compiled whole, one set of compiler settings for every format). Beside it: int4 with the output head quantized too, bitsandbytes nf4, torchao int8, and
# float8 weights (weight-only: stored in 8 bits, computed in 16).
#
# The 2023 guide's 4-bit was bitsandbytes only; torchao did not exist in this form then.

# %%
from coursetools.lesson import start_lesson

lesson = start_lesson("08")

# %% [markdown]
# ## The calls
# Every variant is one `from_pretrained` with a `quantization_config`:
# - **`TorchAoConfig(quant_type)`** (transformers) hands the model's linear layers to torchao's `quantize_` with
#   `quant_type`, an `AOBaseConfig`. Its other keywords: `modules_to_not_convert` (default `None`: every linear layer
#   except the output head), `include_input_output_embeddings=False`, `untie_embedding_weights=False`.
# - **`TorchAoConfig(quant_type, modules_to_not_convert=[])`**: an explicit empty list leaves no module out, so the
#   output head is quantized too (`int4+head` below). The head of the Llama-3-8B shape is 128256 x 4096; where int4
#   runs, the decode table's bytes per token show what quantizing it saves.
# - **`Int4WeightOnlyConfig(group_size=64, int4_packing_format="tile_packed_to_4d")`**: 4-bit integer weights with one
#   bfloat16 scale and zero point per `group_size` weights of a row (default 128; 64 is the group size of the torchao
#   README's Llama-3 int4 figure), activations stay 16-bit. Its kernel needs bfloat16 and an Ampere or newer GPU. The packing format picks the kernel: `"tile_packed_to_4d"` is the layout of
#   `torch.ops.aten._weight_int4pack_mm` (tinygemm), which ships with PyTorch's CUDA build; the default `"plain"` needs
#   the separate `mslk` kernel package.
# - **`Int8WeightOnlyConfig()`**: 8-bit integer weights with one scale per row (`granularity=PerRow()`); the
#   product runs in 16-bit after the weights are converted, which `torch.compile` may fuse into one kernel (the
#   one-layer measurement below shows whether compiling made its kernels faster here; it times kernels and does not
#   list them, so it cannot say whether they were fused).
# - **`Float8WeightOnlyConfig()`**: float8 (e4m3) weights with a scale per row; the product runs in 16-bit.
# - **`BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=...)`**: lesson 03.
# - `set_inductor_config=False`: torchao's configs otherwise change global `torch.compile` settings for everything
#   compiled later in the process, so the first quantized model loaded would change how the 16-bit one compiles.
#   Instead, every variant here (16-bit too) compiles with the same settings, set once below with lesson 07's
#   `use_compiler_settings()`: torchao's recommended ones (coordinate-descent tuning and more), printed below.

# %% [markdown]
# On a T4 (compute capability 7.5, no bfloat16 kernels), neither int4 nor float8 runs: the cell below says why and
# measures what a T4 can run instead, torchao's int8 weight-only and bitsandbytes' nf4, against float16. Under the
# course's t4 profile a larger GPU stands in for a T4 (`lesson.capability` is then the T4's), so the same variants
# are left out there.
#
# torchao needs a recent PyTorch (its kernels load on torch 2.11 or newer); where this runtime's torch or torchao cannot
# run it (`torchao_unusable` says why: a Colab runtime keeps its own torch), the torchao variants are skipped with that
# reason and the rest of the lesson runs with 16-bit and nf4.

# %%
import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, TorchAoConfig

from coursetools.compat import torchao_unusable
from helpers.decoding import use_compiler_settings

dtype = lesson.dtype("dtype")
configs = {"nf4": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)}
torchao_why_not = torchao_unusable()
if torchao_why_not is None:
    from torchao.quantization import Float8WeightOnlyConfig, Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_

    int4 = Int4WeightOnlyConfig(group_size=lesson.size("group_size"), int4_packing_format="tile_packed_to_4d",
                                set_inductor_config=False)
    configs |= {
        "int4": TorchAoConfig(int4),
        "int4+head": TorchAoConfig(int4, modules_to_not_convert=[]),
        "int8": TorchAoConfig(Int8WeightOnlyConfig(set_inductor_config=False)),
        "fp8": TorchAoConfig(Float8WeightOnlyConfig(set_inductor_config=False)),
    }
gpu = lesson.device == "cuda"
capability = lesson.capability  # under the t4 profile, a T4's (7.5), whatever GPU emulates it
int4_why_not = (None if gpu and capability >= (8, 0) and dtype == torch.bfloat16 else
                "tinygemm's int4 kernel needs a CUDA GPU of compute capability 8.0 or newer and bfloat16")
why_not = {
    "int4": int4_why_not,
    "int4+head": int4_why_not,
    "fp8": None if capability >= (8, 9) else
    "float8 weights are measured here on GPUs of compute capability 8.9 or newer (Ada, Hopper) only",
}
if torchao_why_not is not None:
    why_not |= dict.fromkeys(("int4", "int4+head", "int8", "fp8"), torchao_why_not)
variants = [v for v in lesson.size("variants") if why_not.get(v) is None]
for v in lesson.size("variants"):
    if why_not.get(v):
        print(f"{v}: skipped on this machine ({why_not[v]})")
print("measured here:", [str(dtype).removeprefix("torch."), *variants])
print("compiler settings for every compiled variant:", use_compiler_settings())

# %% [markdown]
# ### Exercise: write the call
# Write `answer_call`, the `quantization_config` that loads a model with torchao's 4-bit integer weights (16-bit
# activations) with one scale and zero point per **32** weights (finer than the 64 above: more scale bytes, less
# rounding error), in the layout of `tinygemm`, the int4 kernel PyTorch's CUDA build ships, and leaving
# `torch.compile`'s global settings alone (`Int4WeightOnlyConfig`'s defaults: `group_size=128`,
# `int4_packing_format="plain"`, `set_inductor_config=True`). The check reads the config's fields and says which keyword
# is wrong (quantizing with it needs a CUDA GPU). A solution is in
# [`workshop/solutions/08-call.py`](../workshop/solutions/08-call.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/08-call.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer_call = ...  # TorchAoConfig(...)

# %%
from coursetools.exercises import check

check("08-call", answer_call, group_size=32)

# %% [markdown]
# ## Does `generate` compile a quantized model?
# With a static cache, `generate` compiles its decoding step only when the model's quantizer says it can be compiled
# (`hf_quantizer.is_compileable`, checked in `GenerationMixin._valid_auto_compile_criteria`). Asked of the installed
# transformers:

# %%
from transformers.quantizers import AutoHfQuantizer

compileable = {v: AutoHfQuantizer.from_config(configs[v]).is_compileable for v in variants}
for v, ok in compileable.items():
    print(f"{v:<5} {type(configs[v]).__name__:<19} its quantizer allows compiling: {ok}")

# %% [markdown]
# (`generate` also compiles only on a GPU and with a static cache.) So the variants below decode in lesson 07's own
# loop (`StaticGreedy`), compiled where transformers allows it and
# uncompiled where it does not (bitsandbytes): each as `generate` with a static cache would run it, without its
# per-step bookkeeping.

# %% [markdown]
# ### Exercise: predict, then measure
# Before the measurement below: on the largest shape (`lesson.size("shapes")[-1]`), will the first quantized variant
# measured here (`variants[0]`, the first after the 16-bit base in "measured here" above: int4 on a GPU that runs it)
# decode **measurably faster** than the 16-bit base at batch 1, in lesson 07's loop (compiled on a GPU): faster in
# the middle half of the interleaved rounds (the quartiles of the per-round ratios above 1)? Write `answer_predict = True` or `False`; the check after the decode table
# compares it with the per-round speed ratios. A solution is in
# [`workshop/solutions/08-predict.py`](../workshop/solutions/08-predict.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/08-predict.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer_predict = ...  # True or False

# %% [markdown]
# Each variant loads, runs once untimed (compiling happens there: its seconds are printed, with the graphs compiled
# and how many of them inductor loaded from its cache on disk, as in lesson 07), then all decode in interleaved
# rounds; `compile_events` (lesson 07) counts compilations and CUDA-graph recordings inside the timed rounds, which
# should be none. A variant that fails to load or compile is reported with its error and left out.

# %%
import time
from collections import Counter
from functools import partial

from coursetools.checks.lesson08 import head_problem
from helpers.decoding import (RUNTIME_CALLS, StaticGreedy, compile_events, counted, kv_cache_bytes,
                              runtime_calls_per_step, step_split, top_kernels, weight_bytes_per_token)
from helpers.limits import decode_bound_tokens_per_s, memory_bandwidth
from helpers.memory import GiB, model_footprint
from helpers.models import pretrained_path
from helpers.tables import table
from helpers.timing import compare, decode_step_ms, interleaved, paired_ratio, spread, verdict


prompt_len, new_tokens, rounds = lesson.size("prompt_tokens"), lesson.size("new_tokens"), lesson.rounds()
# tokens a profiled run decodes, and profiled rounds: collecting the profiler's events of an uncompiled step (nf4)
# takes seconds per token, and a step's wall time is the difference of two runs, noisier the fewer tokens it spans
profile_tokens, profile_rounds = lesson.size("profile_tokens"), lesson.rounds("profile")
base = str(dtype).removeprefix("torch.")
bandwidth, bandwidth_source = memory_bandwidth(lesson.device)
print(f"memory bandwidth {bandwidth / 1e9:.0f} GB/s ({bandwidth_source})")


def load(name, variant):
    """Load a course model in one variant: the 16-bit base, or with that variant's quantization_config."""
    config = None if variant == base else configs[variant]
    return AutoModelForCausalLM.from_pretrained(pretrained_path(name), dtype=dtype, device_map=lesson.device,
                                                quantization_config=config)


largest = lesson.size("shapes")[-1]
shapes, failed = {}, {}
for name in lesson.size("shapes"):
    models, runs, footprint, nbytes, warmup_s, warmup_events = {}, {}, {}, {}, {}, {}
    for v in [base, *variants]:
        try:
            model = load(name, v)
            if not models:
                prompt = torch.randint(0, model.config.vocab_size, (1, prompt_len), device=lesson.device)
                kv = kv_cache_bytes(model.config, prompt_len + new_tokens // 2, element_bytes=dtype.itemsize)
            footprint[v], nbytes[v] = model_footprint(model), weight_bytes_per_token(model) + kv
            loop = StaticGreedy(model, prompt_len + new_tokens,
                                compile_mode=lesson.size("compile_mode") if compileable.get(v, True) else None)
            runs[v] = lambda n, loop=loop, prompt=prompt: loop(prompt, n)
            began = time.perf_counter()
            with compile_events() as warmup_events[v]:
                runs[v](new_tokens), runs[v](1)  # warm-up: compilation happens here
            warmup_s[v] = time.perf_counter() - began
            models[v] = model
        except Exception as error:  # noqa: BLE001 - a variant this machine cannot run is reported, not fatal
            failed[(name, v)] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            runs.pop(v, None)
            print(f"{name}, {v}: left out ({failed[(name, v)]})")
    events = {v: Counter() for v in runs}
    ms = interleaved({v: counted(decode_step_ms(run, new_tokens, lesson.device), events[v]) for v, run in runs.items()},
                     rounds)
    shapes[name] = {"footprint": footprint, "bytes": nbytes, "ms": ms, "warmup_s": warmup_s,
                    "warmup_events": warmup_events, "events": events}
    if name == largest:  # profiled for the analysis below: the base, the first variant, and every variant slower
        # than the base; lesson 07's split of a step in interleaved rounds, the first variant's own kernels, and (on a
        # GPU) the CUDA runtime calls one step makes
        slower = [v for v in runs if v != base and verdict(paired_ratio(ms[base], ms[v])) == "slower"]
        first = next(v for v in variants if v in runs)  # the first quantized variant this machine ran
        profiled = {v: runs[v] for v in dict.fromkeys([base, first, *slower])}
        split = interleaved({v: partial(step_split, run, profile_tokens, lesson.device) for v, run in profiled.items()},
                            profile_rounds)
        top = top_kernels(lambda: runs[first](profile_tokens), lesson.device)
        try:  # the profiler's names for CUDA launches differ between CUDA versions: without a match, say so and go on
            runtime = {v: runtime_calls_per_step(run, profile_tokens) for v, run in profiled.items()} if gpu else None
        except RuntimeError as unnamed:
            runtime = None
            print(f"runtime calls not counted: {unnamed}")
        del profiled
    del models, runs, model, loop
    if gpu:
        torch.cuda.empty_cache()
variants = [v for v in variants if v in shapes[largest]["ms"]]
warm = {(name, v): found for name, r in shapes.items() for v, found in r["warmup_events"].items()}
display(table(["shape", "weights", "warm-up s (compiling included)", "graphs compiled in it (from the cache)",
             f"graphs compiled in {rounds} timed rounds", "CUDA graphs recorded in them"],
            [[name, v, s, f"{warm[name, v]['graphs compiled']} ({warm[name, v]['of them from the cache']})",
              r["events"][v]["graphs compiled"], r["events"][v]["CUDA graphs recorded"]]
             for name, r in shapes.items() for v, s in r["warmup_s"].items()]))
recompiled = [f"{name} {v}" for name, r in shapes.items() for v, e in r["events"].items()
              if e["graphs compiled"] or e["CUDA graphs recorded"]]
if recompiled:
    print("compiled or recorded a CUDA graph inside the timed rounds (their times include it): " + ", ".join(recompiled))
if {"int4", "int4+head"} <= set(shapes[largest]["bytes"]):
    assert (problem := head_problem(shapes[largest]["bytes"])) is None, problem
else:
    print("int4+head reads fewer bytes than int4: not checked, one of the two did not run here")

# %% [markdown]
# ### Exercise: predict, then measure
# Before reading the table below: if every variant reached the same share of its own bandwidth bound, how many times
# faster than the 16-bit base would the first quantized variant (`variants[0]`) decode on the largest shape
# (`lesson.size("shapes")[-1]`)? `shapes[name]["bytes"]` holds each variant's bytes read per token. Write it as
# `answer = ...`; the check says whether the arithmetic is right, and the cell after the table compares this
# byte-ratio prediction with the measurement. A solution is in [`workshop/solutions/08.py`](../workshop/solutions/08.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/08.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer = ...  # your answer

# %%
from coursetools.exercises import check

check("08", answer, bytes_per_token=shapes[largest]["bytes"], base=base, variant=variants[0])

# %%
from statistics import median

rows = []
for name, r in shapes.items():
    for v, ms in r["ms"].items():
        typical = median(ms)
        bound = decode_bound_tokens_per_s(r["bytes"][v], bandwidth)
        versus = "-" if v == base else compare(paired_ratio(r["ms"][base], ms))
        rows.append([name, v, r["footprint"][v] / GiB, r["bytes"][v] / GiB, typical, f"{min(ms):.3g}-{max(ms):.3g}",
                     1e3 / typical, 100 * 1e3 / typical / bound, versus])
display(table(["shape", "weights", "GiB", "read GiB/token", "ms/step", "range", "tok/s", "% of bound",
             f"decode vs {base}"], rows))

# %% [markdown]
# The same, as a picture: each format's decode speed-up over the 16-bit base (median and quartiles of the
# per-round ratios), beside the speed-up its bytes alone predict (16-bit's bytes per token over the format's: what it would
# reach at the same share of its bound as the base).

# %%
from helpers.plots import interval_bars

for name, r in shapes.items():
    interval_bars({v: paired_ratio(r["ms"][base], r["ms"][v]) for v in r["ms"] if v != base},
                  f"{name}: decode speed-up over {base}, batch 1", f"x {base}'s tokens/s", lines={base: 1.0},
                  markers=("bytes alone predict", {v: r["bytes"][base] / r["bytes"][v] for v in r["ms"] if v != base}))

# %% [markdown]
# The prediction against the measurement:

# %%
measured = paired_ratio(shapes[largest]["ms"][base], shapes[largest]["ms"][variants[0]])
predicted = shapes[largest]["bytes"][base] / shapes[largest]["bytes"][variants[0]]
print(f"{largest}, {variants[0]} vs {base}: predicted {predicted:.2f}x from the bytes; measured {measured[0]:.2f}x "
      f"(rounds {measured[1]:.2f}-{measured[2]:.2f}).")
if measured[2] < predicted:
    print(f"{variants[0]} reaches a smaller share of its bound than {base}: the sections below look for where its "
          "time goes.")
elif measured[1] > predicted:
    print(f"{variants[0]} beats the byte ratio: {base}'s step reaches a smaller share of its bound than this one's.")
else:
    print("the measurement agrees with the byte ratio within the spread of the rounds.")
print(f"On {largest}, {variants[0]} against {base}, decode: {compare(measured)}.")

# %%
check("08-predict", answer_predict, ratio=measured, variant=variants[0], base=base, shape=largest,
      byte_ratio=predicted)

# %% [markdown]
# ## Where the time goes
# First the whole decode step, split as in lesson 07 and profiled in interleaved rounds: the wall time of one step
# against the time its kernels ran (on a CPU: its operators). On a GPU, also what the host asks of the CUDA runtime in
# one step, counted from the same kind of profile: how many **CUDA graphs** it replays (`cudaGraphLaunch`), how many
# kernels it launches one by one outside graphs, and how often it waits for the GPU (a synchronize: until the host
# has launched the next work, the GPU has none). Then a table of the kernels that take the most time in the variant's
# steps, read from the profiler (`top_kernels`: each kernel's own time and its share of all kernels' time; the compiler
# settings above name inductor's generated kernels alike, `triton_`, so they may share one row there).

# %%
from helpers.plots import stacked_bars

busy = {v: [t.busy_ms for t in per_round] for v, per_round in split.items()}
idle = {v: [t.idle_ms for t in per_round] for v, per_round in split.items()}
busy_what = split[base][0].busy_what
# as in lesson 07: a step is a long profile minus a short one, so a round can read its kernel time at or below zero
# (nothing read from that row) or above its wall time (the kernel time reads, the split of the step does not)
timed = {v: all(ms > 0 for ms in busy[v]) for v in split}
readable = {v: timed[v] and all(ms >= 0 for ms in idle[v]) for v in split}
walls = {v: median([t.wall_ms for t in per_round]) for v, per_round in split.items()}  # a difference: can be <= 0
print(f"{largest}, {profile_rounds} profiled rounds of {profile_tokens} tokens: medians, and the range over rounds")
display(table(["weights", "profiled wall ms/step", f"{busy_what} ms", "range", "busy % (profiled)", "other ms (profiled)",
               "range"],
            [[v, walls[v] if walls[v] > 0 else "-",
              *([median(busy[v]), f"{min(busy[v]):.3g}-{max(busy[v]):.3g}"] if timed[v] else ["-", "-"]),
              *([100 * median([t.busy_share for t in per_round]), median(idle[v]),
                 f"{min(idle[v]):.3g}-{max(idle[v]):.3g}"] if readable[v] else ["-", "-", "-"])]
             for v, per_round in split.items()]))
for v in split:
    if not readable[v]:
        print(f"-: {v}: in some round its {busy_what}' time per step came out "
              + ("at or below zero: nothing is read from this row" if not timed[v] else
                 "above that round's wall time per step (each is a difference of a long and a short profile, with its "
                 "own noise): its split of the step is not read, its kernel time is")
              + ("; its median wall time per step came out at or below zero, so no wall is shown" if walls[v] <= 0
                 else ""))
if runtime:
    print("\nCUDA runtime calls in one decode step (one profile of each):")
    display(table(["weights", *RUNTIME_CALLS], [[v, *counts.values()] for v, counts in runtime.items()]))
print(f"\n{variants[0]} on {largest}, {profile_tokens} tokens: the kernels with the most time")
display(top)
if any(readable.values()):
    stacked_bars({v: {busy_what: median(busy[v]), "everything else": median(idle[v])} for v in split if readable[v]},
                 f"{largest}: one decode step, medians of {profile_rounds} profiled rounds", "ms")

# %% [markdown]
# ## One layer's kernel
# A decode step is mostly matrix-vector products, so look at one alone: the largest shape's MLP up-projection
# (`intermediate_size` × `hidden_size`) at batch 1, in each torchao format and in 16-bit, eager and compiled
# (`torch.compile` of the layer, default mode, with the settings above). Each call is timed on the GPU (CUDA events,
# `cold_cache_ms`) right after a 512 MiB buffer is written: a large GPU's L2 cache (its size is printed below) can hold
# a 4-bit copy of this layer, or more, so without the flush the second call could read the weights from the cache.
# From the time, the bandwidth each reached: weight bytes over time, in interleaved rounds. Fewer bytes pay off when the kernel's bandwidth, as a fraction of the
# 16-bit kernel's, is larger than the fraction of the bytes it reads: a kernel that reads a quarter of the bytes at
# half the bandwidth still takes half the time. It need not reach the 16-bit kernel's bandwidth.

# %%
import time

from helpers.memory import MiB, stored_bytes
from helpers.models import model_config


def cold_cache_ms(fn, device, flush_bytes: int = 512 * 2**20) -> float:
    """Return the time of one call of fn right after a buffer larger than the L2 cache is written, so no input is cached.

    On a GPU: CUDA events around the call, which the host queues while the GPU still writes the buffer, so the time is
    the GPU's, not the launch's. On a CPU: the call's wall time.
    """
    buffer = torch.empty(flush_bytes, dtype=torch.uint8, device=device)
    if torch.device(device).type != "cuda":
        buffer.zero_()
        begin = time.perf_counter()
        fn()
        return (time.perf_counter() - begin) * 1e3
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    buffer.zero_()
    torch.cuda._sleep(1_000_000)  # keeps the GPU busy while the host queues fn's kernels: their launch is not timed
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


shape = model_config(largest)
if gpu:
    print(f"L2 cache: {torch.cuda.get_device_properties(lesson.device).L2_cache_size / MiB:.0f} MiB")
x = torch.randn(1, shape.hidden_size, dtype=dtype, device=lesson.device)
calls = lesson.size("layer_calls")  # timed calls per layer and round, each after a flush; a round's value: their median
weight_bytes, layer_calls = {}, {}
for v in [base, *[v for v in variants if isinstance(configs[v], TorchAoConfig) and "+head" not in v]]:
    layer = torch.nn.Linear(shape.hidden_size, shape.intermediate_size, bias=False, dtype=dtype, device=lesson.device)
    layer.requires_grad_(False)  # inference: the 16-bit layer is compiled without autograd, as the quantized ones are
    if v != base:
        quantize_(layer, configs[v].quant_type)
    weight_bytes[v] = stored_bytes(layer.weight)
    compiled = {"compiled": torch.compile(layer)} if lesson.size("compile_mode") else {}
    for form, fn in {"eager": layer, **compiled}.items():
        for _ in range(lesson.warmup("layer")):  # warm-up: compilation and first calls
            fn(x)
        layer_calls[(v, form)] = lambda fn=fn: median(cold_cache_ms(lambda: fn(x), lesson.device) for _ in range(calls))
layer_ms = interleaved(layer_calls, rounds)
forms = list(dict.fromkeys(form for _, form in layer_ms))
print(f"{largest} MLP up-projection, {shape.intermediate_size} x {shape.hidden_size}, batch 1, L2 cache flushed: time "
      f"per call (median of {rounds} rounds, range), and the bandwidth the median reached as % of the peak")
display(table(["weights", "MiB", *forms],
            [[v, nbytes / MiB, *[f"{median(ms) * 1e3:.1f} us ({min(ms) * 1e3:.1f}-{max(ms) * 1e3:.1f}), "
                                 f"{100 * nbytes / (median(ms) / 1e3) / bandwidth:.0f}%"
                                 for ms in (layer_ms[(v, form)] for form in forms)]]
             for v, nbytes in weight_bytes.items()]))

# %% [markdown]
# What the three measurements say together, computed from them (ratios per round of the interleaved rounds;
# quartiles that contain 1 are no measurable difference):

# %%
from helpers.decoding import OVERHEAD_BOUND_SHARE, bound_share

best = {v: [min(layer_ms[(v, form)][i] for form in forms) for i in range(rounds)] for v in weight_bytes}
layer_ratio = {v: paired_ratio(best[base], best[v]) for v in best if v != base}
layer_peak = {v: 100 * nbytes / (median(best[v]) / 1e3) / bandwidth for v, nbytes in weight_bytes.items()}
for v, ratio in layer_ratio.items():  # one layer's kernels, their launch hidden: the kernels' own time, at its peak share
    layer_reading = ("faster" if ratio[1] > 1 else "slower" if ratio[2] < 1 else "no measurable difference") + (
        f": at one layer its kernels reach {layer_peak[v]:.3g}% of the peak bandwidth, {base}'s {layer_peak[base]:.3g}%")
    print(f"{v}: {weight_bytes[base] / weight_bytes[v]:.2f}x fewer bytes; its layer's kernel (the faster of eager and "
          f"compiled each round) against {base}'s: {compare(ratio)}: {layer_reading}")
v = variants[0]
step_ratio = paired_ratio(busy[base], busy[v]) if timed[v] and timed[base] else None
print(f"{v}, the whole step's {busy_what} against {base}'s: "
      f"{compare(step_ratio) if step_ratio else 'not read (the profile above)'}; the whole step: {compare(measured)}.")
more_median, more_q1, more_q3 = spread([a - b for a, b in zip(idle[v], idle[base], strict=True)])  # can be near 0
# the course's rule for a difference: measurable when the quartiles leave 0 out; unread rows claim none
measurable = readable[v] and readable[base] and (more_q1 > 0 or more_q3 < 0)
if readable[v] and readable[base]:
    print(f"{v}'s step outside {busy_what} ({median(idle[v]):.2f} ms) against {base}'s ({median(idle[base]):.2f} ms): "
          + (f"{more_median:.2f} ms more (quartiles {more_q1:.2f} to {more_q3:.2f})" if more_q1 > 0 else
             f"{-more_median:.2f} ms less (quartiles {-more_q3:.2f} to {-more_q1:.2f})" if more_q3 < 0 else
             f"no measurable difference (quartiles {more_q1:.2f} to {more_q3:.2f} ms more)") + ".")
else:
    print(f"{v}'s step outside {busy_what} against {base}'s: not read (the profile above).")
for w, counts in (runtime or {}).items():
    graphs, launched, waits, copies = counts.values()
    print(f"{w}'s step " + (f"replays {graphs:.3g} CUDA graph(s)" if round(graphs) else "replays no CUDA graph")
          + f" and launches {launched:.3g} kernels one by one outside graphs"
          + (f"; it waits for the GPU {waits:.3g} time(s), and after each wait the GPU has no work until the host "
             "launches the next: time outside kernels that replaying a graph does not remove" if round(waits) else "")
          + (f"; it copies between host and GPU {copies:.3g} time(s)" if round(copies) else "") + ".")
step_share, step_reading = bound_share(1e3 / median(shapes[largest]["ms"][v]), shapes[largest]["bytes"][v], bandwidth)
near = step_share >= OVERHEAD_BOUND_SHARE  # below a fifth of its bound a step is overhead-bound: no candidate named
if runtime:
    same_calls = [round(n) for n in runtime[v].values()] == [round(n) for n in runtime[base].values()]
    print(f"{v} and {base}: " + ("different runtime calls a step (the table above)." if not same_calls else
                                 "the same runtime calls a step, so the difference in their time outside kernels is "
                                 "not in what the host launches; candidates, which these counts do not separate: the "
                                 "host's time before each launch, or gaps between the kernels of the replayed graph."
                                 if measurable and near else "the same runtime calls a step."))
print(f"{v}'s decode step runs at {step_reading}")
if v in layer_ratio and step_ratio:
    if step_ratio[2] < layer_ratio[v][1]:
        print("the whole step's kernels compare worse than the one layer did (the compiled step may run other kernels "
              "than the layer timed here; this does not measure which kernels make the difference).")
    elif step_ratio[1] > layer_ratio[v][2]:
        print("the whole step's kernels compare better than the one layer did.")
    else:
        print("the whole step's kernels and the one layer compare alike within the rounds.")
if any(nbytes / (median(layer_ms[(w, form)]) / 1e3) > bandwidth for w, nbytes in weight_bytes.items() for form in forms):
    print("a share above 100% is not a valid bandwidth: the measured kernel time is shorter than reading these bytes "
          "at the peak bandwidth takes, and this measurement does not say why")

# %% [markdown]
# Read the three measurements together, per format, starting from the variant's share of its own bandwidth bound (the
# summary below prints it). Below a fifth of the bound its step is overhead-bound: then neither a layer's kernel nor the
# bytes are shown to be the cause of its speed, and this lesson names none. Nearer the bound, a layer kernel slower than
# 16-bit's (the lines above say which) can hold the format back; where the layer's kernel is faster but the decode step
# is not, the time goes elsewhere in the step: its other kernels, and the time outside kernels in the step split, whose
# runtime calls say what the host does around the kernels. The layer is timed as torchao's module; the compiled step
# runs its unwrapped weights, which the compiler may hand to other kernels.
# Where int4 runs, its kernel here is `tinygemm`, written for the A100; other int4 kernels exist: torchao's default
# `"plain"` packing on Hopper uses the `mslk` / fbgemm GPU kernel packages, which the course does not install, and vLLM and
# SGLang ship their own (Marlin, Machete).

# %% [markdown]
# ## Quality
# Speed is worth nothing if the answers degrade. Perplexity of the real SmolLM2 on the course text in each variant
# (lower is better). Offline, SmolLM2 is the packaged Q4_1 GGUF dequantized to 16 bits: the base row has been through
# 4-bit quantization once already, and each row is relative to that model, not to the original. `int4+head` is left
# out: SmolLM2's output head is its input embedding (tied), which this course does not quantize. A perplexity that comes
# out not finite (the model's outputs overflowed) is printed with what is known of its cause and not recorded: in
# float16 (the T4's 16-bit type), torchao's int8 weight-only product multiplies the activations by the int8 weights
# cast to float16 and applies each row's scale afterwards (torchao 0.18, `int8_tensor.py`, its weight-only branch), so
# large activations can pass float16's largest value, 65504, before the rescale; torchao's developers say so
# ([diffusion-fast#1](https://github.com/huggingface/diffusion-fast/issues/1)) and
# [pytorch/ao#1662](https://github.com/pytorch/ao/issues/1662) reports such NaNs from int8 weight-only in float16 (on
# CPUs, with group-wise scales). bfloat16 has float32's range.

# %%
import math

from helpers.quality import perplexity
from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(pretrained_path("smollm2-135m"))
quality, overflowed = {}, {}
for v in [base, *[v for v in variants if "+head" not in v]]:
    model = load("smollm2-135m", v)
    p = perplexity(model, tokenizer, max_tokens=lesson.size("eval_tokens"))
    (quality if math.isfinite(p) else overflowed)[v] = p
    del model
display(table(["weights", "perplexity", f"vs {base}"],
              [[v, f"{p:.2f}", f"{p / quality[base]:.4f}" if base in quality else "-"] for v, p in quality.items()]))
for v, p in overflowed.items():
    print(f"{v}: perplexity {p} in {base}, not finite: the outputs overflowed; not recorded"
          + (" (torchao's int8 weight-only product in float16: the cause the cell above cites)"
             if v == "int8" and dtype == torch.float16 else ""))

# %% [markdown]
# ## So, can 4-bit weights decode faster than 16-bit?
# Only when everything around the bytes keeps up: a kernel that reads the packed weights fast enough for fewer bytes
# to mean less time (not necessarily at the 16-bit kernel's bandwidth: see the layer table), and a step that adds no
# more time around its kernels than the 16-bit step does. A verdict about a format is only worth reading where the
# 16-bit step itself is near its bound: below about a fifth of it, a step's time is mostly overhead around the kernels,
# and a difference between formats says nothing about the formats. The answer for this machine and this software,
# computed from the tables above (timings of the same 16-bit step here and in lesson 07 come from separate runs, which
# can differ by more than the rounds of one run: compare within one table):

# %%
shown = {v: v if compileable.get(v, True) else f"{v} (uncompiled)" for r in shapes.values() for v in r["ms"]}
summary = []
for name, r in shapes.items():
    for v, ms in r["ms"].items():
        share = 100 * 1e3 / median(ms) / decode_bound_tokens_per_s(r["bytes"][v], bandwidth)
        versus = "-" if v == base else compare(paired_ratio(r["ms"][base], ms))
        summary.append([name, shown[v], r["bytes"][v] / GiB, 1e3 / median(ms), share, versus,
                        "-" if v == base else f"{r['bytes'][base] / r['bytes'][v]:.2f}x faster",
                        f"{quality[v]:.2f}" if v in quality else "-"])
display(table(["shape", "weights", "read GiB/token", "tok/s", "% of its bound", f"vs {base}", "bytes predict",
             "perplexity (SmolLM2)"], summary))
r = shapes[largest]
base_share, reading = bound_share(1e3 / median(r["ms"][base]), r["bytes"][base], bandwidth)
print(f"{largest}, {base}: {reading}.")
if base_share < OVERHEAD_BOUND_SHARE:
    print("So the comparisons above measure the loop around the kernels on this machine, not the weight formats.")
else:
    for v in [v for v in r["ms"] if v != base]:
        ratio = paired_ratio(r["ms"][base], r["ms"][v])
        v_share, v_reading = bound_share(1e3 / median(r["ms"][v]), r["bytes"][v], bandwidth)
        print(f"{largest}, {shown[v]}: "
              + {"faster": "yes, faster than", "slower": "no, slower than",
                 "tie": "no measurable difference from"}[verdict(ratio)] + f" {base}: {compare(ratio)}"
              + (f"; {v} decodes at {v_reading}" if v_share < OVERHEAD_BOUND_SHARE else "") + ".")

# %%
lesson.record(
    **{f"{name}_{v}_vs_{base}_decode": paired_ratio(r["ms"][base], r["ms"][v])
       for name, r in shapes.items() for v in variants},
    **{f"{name}_{v}_tok_s": spread([1e3 / t for t in ms])
       for name, r in shapes.items() for v, ms in r["ms"].items()},
    **{f"{name}_{v}_pct_of_bound": 100 * 1e3 / median(ms) / decode_bound_tokens_per_s(r["bytes"][v], bandwidth)
       for name, r in shapes.items() for v, ms in r["ms"].items()},
    **{f"ppl_{v}": p for v, p in quality.items()},
)
