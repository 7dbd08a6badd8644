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
# Lessons 03–05 measured bitsandbytes' 4-bit and 8-bit weights as **memory** tools: smaller, and slower at batch 1.
# Lesson 07 showed why speed needs more than fewer bytes: decoding is only as fast as the bytes read per token *and*
# the overhead around the kernels. This lesson puts both together: 4-bit weights whose matrix-vector kernel reads the
# packed weights directly (torchao's int4 weight-only, using PyTorch's `tinygemm` kernel), inside the compiled
# static-cache step of lesson 07. Beside it: bitsandbytes nf4, torchao int8, and float8 weights (weight-only: stored
# in 8 bits, computed in 16).
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
# - `set_inductor_config=False`: torchao's configs otherwise change global `torch.compile` settings (coordinate-descent
#   tuning and more) for everything compiled later in the process; switching it off keeps every compiled variant here
#   on the same settings, so the int8 and float8 figures below are not torchao's best-tuned ones.

# %%
import torch
from torchao.quantization import Float8WeightOnlyConfig, Int4WeightOnlyConfig, Int8WeightOnlyConfig
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, TorchAoConfig

dtype = lesson.dtype("dtype")
configs = {
    "int4": TorchAoConfig(Int4WeightOnlyConfig(group_size=lesson.size("group_size"),
                                               int4_packing_format="tile_packed_to_4d", set_inductor_config=False)),
    "int8": TorchAoConfig(Int8WeightOnlyConfig(set_inductor_config=False)),
    "fp8": TorchAoConfig(Float8WeightOnlyConfig(set_inductor_config=False)),
    "nf4": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype),
}
gpu = lesson.device == "cuda"
capability = torch.cuda.get_device_capability() if gpu else (0, 0)
why_not = {
    "int4": None if gpu and capability >= (8, 0) and dtype == torch.bfloat16 else
    "tinygemm's int4 kernel needs a CUDA GPU of compute capability 8.0 or newer and bfloat16",
    "fp8": None if capability >= (8, 9) else
    "float8 weights are measured here on GPUs of compute capability 8.9 or newer (Ada, Hopper) only",
}
variants = [v for v in lesson.size("variants") if why_not.get(v) is None]
for v in lesson.size("variants"):
    if why_not.get(v):
        print(f"{v}: skipped on this machine ({why_not[v]})")
print("measured here:", [str(dtype).removeprefix("torch."), *variants])

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
# every one of the interleaved rounds? Write `answer_predict = True` or `False`; the check after the decode table
# compares it with the per-round speed ratios. A solution is in
# [`workshop/solutions/08-predict.py`](../workshop/solutions/08-predict.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/08-predict.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer_predict = ...  # True or False

# %%
import re
from collections import Counter
from functools import partial

from torch.profiler import ProfilerActivity, profile

from helpers.decoding import (StaticGreedy, kv_cache_bytes, native_stderr_silenced, step_split, top_kernels,
                              weight_bytes_per_token)
from helpers.limits import decode_bound_tokens_per_s, memory_bandwidth
from helpers.memory import GiB, model_footprint
from helpers.models import pretrained_path
from helpers.tables import table
from helpers.timing import compare, decode_step_ms, interleaved, paired_ratio

prompt_len, new_tokens, rounds = lesson.size("prompt_tokens"), lesson.size("new_tokens"), lesson.size("rounds")
# tokens a profiled run decodes: collecting the profiler's events takes seconds, and a step's wall time is the
# difference of two runs, noisier the fewer tokens it is spread over
profile_tokens = min(new_tokens, 64)
base = str(dtype).removeprefix("torch.")
bandwidth, bandwidth_source = memory_bandwidth(lesson.device)
print(f"memory bandwidth {bandwidth / 1e9:.0f} GB/s ({bandwidth_source})")


# the CUDA runtime calls a decode step makes, by the profiler's names for them (the driver API's cu... too)
RUNTIME_CALLS = {
    "CUDA graph replays": r"cu(da)?GraphLaunch",
    "kernels launched outside graphs": r"cu(da)?LaunchKernel(Ex|ExC)?",
    "waits for the GPU": r"cu(da)?(Stream|Device|Event)Synchronize",
}


def runtime_calls_per_step(run, new_tokens):
    """Profile run(new_tokens) and run(1) on the GPU; return one decode step's count of each of RUNTIME_CALLS."""
    def counts(n):
        with native_stderr_silenced(), torch.inference_mode(), profile(
                activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], acc_events=True) as prof:
            run(n)
        names = Counter(event.name for event in prof.events())
        found = {what: sum(c for name, c in names.items() if re.fullmatch(pattern, name))
                 for what, pattern in RUNTIME_CALLS.items()}
        assert found["CUDA graph replays"] + found["kernels launched outside graphs"] > 0, (
            "none of the profiler's event names matched a launch or a graph replay (RUNTIME_CALLS): this PyTorch and "
            f"CUDA name them differently (kineto may call unknown callbacks 'INVALID'); names seen: {sorted(names)[:20]}")
        return found

    many, one = counts(new_tokens), counts(1)
    return {what: (many[what] - one[what]) / (new_tokens - 1) for what in RUNTIME_CALLS}


def load(name, variant):
    """Load a course model in one variant: the 16-bit base, or with that variant's quantization_config."""
    config = None if variant == base else configs[variant]
    return AutoModelForCausalLM.from_pretrained(pretrained_path(name), dtype=dtype, device_map=lesson.device,
                                                quantization_config=config)


largest = lesson.size("shapes")[-1]
shapes = {}
for name in lesson.size("shapes"):
    models = {v: load(name, v) for v in [base, *variants]}
    prompt = torch.randint(0, models[base].config.vocab_size, (1, prompt_len), device=lesson.device)
    kv = kv_cache_bytes(models[base].config, prompt_len + new_tokens // 2, element_bytes=dtype.itemsize)
    loops = {v: StaticGreedy(m, prompt_len + new_tokens,
                             compile_mode=lesson.size("compile_mode") if compileable.get(v, True) else None)
             for v, m in models.items()}
    runs = {v: (lambda n, loop=loop: loop(prompt, n)) for v, loop in loops.items()}
    for run in runs.values():
        run(new_tokens), run(1)  # warm-up: compilation happens here
    same = {v: torch.equal(runs[v](8), runs[base](8)) for v in variants}
    shapes[name] = {
        "footprint": {v: model_footprint(m) for v, m in models.items()},
        "bytes": {v: weight_bytes_per_token(m) + kv for v, m in models.items()},
        "ms": interleaved({v: decode_step_ms(run, new_tokens, lesson.device) for v, run in runs.items()}, rounds),
        "same_tokens": same,
    }
    if name == largest:  # profiled for the analysis below: lesson 07's split of a step in interleaved rounds, the
        # variant's own kernels, and (on a GPU) the CUDA runtime calls one step makes
        profiled = {v: runs[v] for v in (base, variants[0])}
        split = interleaved({v: partial(step_split, run, profile_tokens, lesson.device) for v, run in profiled.items()},
                            rounds)
        top = top_kernels(lambda: runs[variants[0]](profile_tokens), lesson.device)
        runtime = {v: runtime_calls_per_step(run, profile_tokens) for v, run in profiled.items()} if gpu else None
        del profiled
    del models, loops, runs, run
    if gpu:
        torch.cuda.empty_cache()

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
rows = []
for name, r in shapes.items():
    for v, ms in r["ms"].items():
        typical = sorted(ms)[len(ms) // 2]
        bound = decode_bound_tokens_per_s(r["bytes"][v], bandwidth)
        versus = "-" if v == base else compare(paired_ratio(r["ms"][base], ms))
        rows.append([name, v, r["footprint"][v] / GiB, r["bytes"][v] / GiB, typical, f"{min(ms):.3g}-{max(ms):.3g}",
                     1e3 / typical, 100 * 1e3 / typical / bound, versus])
print(table(["shape", "weights", "GiB", "read GiB/token", "ms/step", "range", "tok/s", "% of bound",
             f"decode vs {base}"], rows))
for name, r in shapes.items():
    print(f"{name}: same greedy tokens as {base} (8 tokens):", r["same_tokens"])

# %% [markdown]
# The `*-shape` models have random weights: their next-token scores are nearly flat, so any rounding can change the
# greedy token, and "same greedy tokens" says little about quality. Quality is measured on the real SmolLM2 below.
#
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
    print(f"{variants[0]} beats the byte ratio: {base}'s kernels reach a smaller share of its bound than this one's.")
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
# has launched the next work, the GPU has none). Then the profiler's own table of the kernels that take the most time
# in the variant's steps.

# %%
from statistics import median

busy = {v: [t.busy_ms for t in per_round] for v, per_round in split.items()}
idle = {v: [t.idle_ms for t in per_round] for v, per_round in split.items()}
busy_what = split[base][0].busy_what
print(f"{largest}, {rounds} profiled rounds of {profile_tokens} tokens: medians, and the range over rounds")
print(table(["weights", "wall ms/step", f"{busy_what} ms", "range", "busy %", "other ms", "range"],
            [[v, median([t.wall_ms for t in per_round]), median(busy[v]), f"{min(busy[v]):.3g}-{max(busy[v]):.3g}",
              100 * median([t.busy_share for t in per_round]), median(idle[v]),
              f"{min(idle[v]):.3g}-{max(idle[v]):.3g}"]
             for v, per_round in split.items()]))
if runtime:
    print("\nCUDA runtime calls in one decode step (one profile of each):")
    print(table(["weights", *RUNTIME_CALLS], [[v, *counts.values()] for v, counts in runtime.items()]))
print(f"\n{variants[0]} on {largest}, {profile_tokens} tokens: the kernels with the most time")
print(top)

# %% [markdown]
# ## One layer's kernel
# A decode step is mostly matrix-vector products, so look at one alone: the largest shape's MLP up-projection
# (`intermediate_size` × `hidden_size`) at batch 1, in each torchao format and in 16-bit, eager and compiled
# (`torch.compile` of the layer, default mode). The profiler gives the time the kernels themselves ran (launch
# overhead excluded; `time_split`, which lesson 07's `step_split` uses), and from it the bandwidth each reached: weight
# bytes over kernel time, in interleaved rounds. Fewer bytes pay off when the kernel's bandwidth, as a fraction of the
# 16-bit kernel's, is larger than the fraction of the bytes it reads: a kernel that reads a quarter of the bytes at
# half the bandwidth still takes half the time. It need not reach the 16-bit kernel's bandwidth.

# %%
from torchao.quantization import quantize_

from helpers.decoding import time_split
from helpers.memory import MiB, stored_bytes
from helpers.models import model_config

shape = model_config(largest)
x = torch.randn(1, shape.hidden_size, dtype=dtype, device=lesson.device)
calls = 20  # profiled calls per layer and round; the kernel time below is one call's share
weight_bytes, layer_calls = {}, {}
for v in [base, *[v for v in variants if isinstance(configs[v], TorchAoConfig)]]:
    layer = torch.nn.Linear(shape.hidden_size, shape.intermediate_size, bias=False, dtype=dtype, device=lesson.device)
    if v != base:
        quantize_(layer, configs[v].quant_type)
    weight_bytes[v] = stored_bytes(layer.weight)
    compiled = {"compiled": torch.compile(layer)} if lesson.size("compile_mode") else {}
    for form, fn in {"eager": layer, **compiled}.items():
        for _ in range(3):  # warm-up: compilation and first calls
            fn(x)
        layer_calls[(v, form)] = lambda fn=fn: time_split(lambda: [fn(x) for _ in range(calls)],
                                                          lesson.device).busy_ms / calls
layer_ms = interleaved(layer_calls, rounds)
forms = list(dict.fromkeys(form for _, form in layer_ms))
print(f"{largest} MLP up-projection, {shape.intermediate_size} x {shape.hidden_size}, batch 1: kernel time per call "
      f"(median of {rounds} rounds, range), and the bandwidth the median reached as % of the peak")
print(table(["weights", "MiB", *forms],
            [[v, nbytes / MiB, *[f"{median(ms) * 1e3:.1f} us ({min(ms) * 1e3:.1f}-{max(ms) * 1e3:.1f}), "
                                 f"{100 * nbytes / (median(ms) / 1e3) / bandwidth:.0f}%"
                                 for ms in (layer_ms[(v, form)] for form in forms)]]
             for v, nbytes in weight_bytes.items()]))

# %% [markdown]
# What the three measurements say together, computed from them (ratios per round of the interleaved rounds; an
# interval that contains 1 is no measurable difference):

# %%
best = {v: [min(layer_ms[(v, form)][i] for form in forms) for i in range(rounds)] for v in weight_bytes}
layer_ratio = {v: paired_ratio(best[base], best[v]) for v in best if v != base}
for v, ratio in layer_ratio.items():
    verdict = (f"faster than {base}: its kernel turns the saved bytes into time" if ratio[1] > 1 else
               f"slower than {base}: its kernel reads the fewer bytes too slowly to win" if ratio[2] < 1 else
               f"no measurable difference from {base}")
    print(f"{v}: {weight_bytes[base] / weight_bytes[v]:.2f}x fewer bytes; its layer's kernel (the faster of eager and "
          f"compiled each round) against {base}'s: {compare(ratio)}: {verdict}")
v = variants[0]
step_ratio = paired_ratio(busy[base], busy[v])
print(f"{v}, the whole step's {busy_what} against {base}'s: {compare(step_ratio)}; the whole step: "
      f"{compare(measured)}.")
more = [a - b for a, b in zip(idle[v], idle[base], strict=True)]  # a difference: time outside kernels can be near 0
print(f"{v}'s step outside {busy_what} ({median(idle[v]):.2f} ms) against {base}'s ({median(idle[base]):.2f} ms): "
      + (f"{median(more):.2f} ms more (rounds {min(more):.2f} to {max(more):.2f})" if min(more) > 0 else
         f"{-median(more):.2f} ms less (rounds {-max(more):.2f} to {-min(more):.2f})" if max(more) < 0 else
         f"no measurable difference (rounds {min(more):.2f} to {max(more):.2f} ms more)") + ".")
for w, counts in (runtime or {}).items():
    graphs, launched, waits = counts.values()
    print(f"{w}'s step " + (f"replays {graphs:.3g} CUDA graph(s)" if round(graphs) else "replays no CUDA graph")
          + f" and launches {launched:.3g} kernels one by one outside graphs"
          + (f"; it waits for the GPU {waits:.3g} time(s), and after each wait the GPU has no work until the host "
             "launches the next: time outside kernels that replaying a graph does not remove" if round(waits) else "")
          + ".")
if runtime:
    same_calls = [round(n) for n in runtime[v].values()] == [round(n) for n in runtime[base].values()]
    measurable = min(more) > 0 or max(more) < 0  # the time outside kernels differs in every round
    print(f"{v} and {base}: " + ("different runtime calls a step (the table above)." if not same_calls else
                                 "the same runtime calls a step, so the difference in their time outside kernels is "
                                 "not in what the host launches; candidates, which these counts do not separate: the "
                                 "host's time before each launch, or gaps between the kernels of the replayed graph."
                                 if measurable else "the same runtime calls a step."))
if v in layer_ratio:
    if step_ratio[2] < layer_ratio[v][1]:
        print("the whole step's kernels compare worse than the one layer did: the step's other kernels (listed "
              "above) take the difference.")
    elif step_ratio[1] > layer_ratio[v][2]:
        print("the whole step's kernels compare better than the one layer did.")
    else:
        print("the whole step's kernels and the one layer compare alike within the rounds.")
if any(nbytes / (median(layer_ms[(w, form)]) / 1e3) > bandwidth for w, nbytes in weight_bytes.items() for form in forms):
    print("a share above 100% is not a valid bandwidth: the measured kernel time is shorter than reading these bytes "
          "at the peak bandwidth takes, and this measurement does not say why")

# %% [markdown]
# Read the three measurements together, per format. Where one layer's kernel is slower than 16-bit's (the lines above
# say which), the format's kernel is the reason, not the bytes. Where the layer's kernel is faster but the decode step
# is not, the time goes elsewhere in the step: its other kernels, and the time outside kernels in the step split,
# whose runtime calls say what the host does around the kernels.
# The int4 kernel here is `tinygemm`, written for the A100; torchao's default `"plain"` int4 packing on Hopper uses
# other kernels (the `mslk` / fbgemm GPU kernel packages), which the course does not install, and vLLM and SGLang ship
# their own (Marlin, Machete). A weight format is only as fast as the kernels and the step around it.

# %% [markdown]
# ## Quality
# Speed is worth nothing if the answers degrade. Perplexity of the real SmolLM2 on the course text in each variant
# (lower is better). Offline, SmolLM2 is the packaged Q4_1 GGUF dequantized to 16 bits: the base row has been through
# 4-bit quantization once already, and each row is relative to that model, not to the original.

# %%
from helpers.quality import perplexity
from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(pretrained_path("smollm2-135m"))
quality = {}
for v in [base, *variants]:
    model = load("smollm2-135m", v)
    quality[v] = perplexity(model, tokenizer, max_tokens=lesson.size("eval_tokens"))
    del model
print(table(["weights", "perplexity", f"vs {base}"], [[v, p, p / quality[base]] for v, p in quality.items()]))

# %% [markdown]
# ## So, can 4-bit weights decode faster than 16-bit?
# Only when everything around the bytes keeps up: a kernel that reads the packed weights fast enough for fewer bytes
# to mean less time (not necessarily at the 16-bit kernel's bandwidth: see the layer table), and a step that adds no
# more time around its kernels than the 16-bit step does. The decode table answers for this machine and this
# software; the layer table and the step split say which of the two held. Timings of the same 16-bit step in this
# lesson and in lesson 07 come from separate runs, which can differ by more than the rounds of one run: compare within one
# table (recorded ratios carry an interval widened for that). The
# quality table says what each format costs in perplexity on the real SmolLM2.

# %%
lesson.record(
    **{f"{name}_{v}_vs_{base}_decode": paired_ratio(r["ms"][base], r["ms"][v])
       for name, r in shapes.items() for v in variants},
    **{f"ppl_{v}": p for v, p in quality.items()},
)
