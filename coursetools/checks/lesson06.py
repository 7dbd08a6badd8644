"""Lesson 06's exercises (a `max_memory` that offloads exactly the last layers, whether a split decodes faster) and its
checks: plans against real loads, weights within budgets, the balanced_low_0 plans, the host link's bound."""

from __future__ import annotations

import re
from typing import Any

from coursetools.checks import Call, Prediction
from helpers.placement import BudgetError, plan, to_bytes

OFFLOADED_LAYERS = 4  # 06-call: the last this many decoder layers go to the CPU


def layers_on(device_map: dict[str, Any], device: Any) -> list[int]:
    """Return the indices of the decoder layers a device map puts on one device."""
    return sorted(int(k.split(".")[2]) for k, d in device_map.items() if k.startswith("model.layers.") and d == device)


def check_offload_budget(answer: Any, model: Any) -> str | None:
    """Right when planning `model` (bf16, "sequential") with the answer puts exactly its last layers, norm and head on the CPU."""
    from helpers.memory import GiB
    from helpers.placement import BudgetError, module_sizes, plan

    if not isinstance(answer, dict) or set(answer) != {0, "cpu"}:
        return 'answer with a dict of two budgets, {0: ..., "cpu": ...} (bytes or strings such as "14GiB")'
    try:
        device_map = plan(model, answer, precision="bf16", strategy="sequential")
    except (BudgetError, ValueError) as err:
        return f"planning with it fails: {err}"
    layers = len(model.model.layers)
    want = list(range(layers - OFFLOADED_LAYERS, layers))
    on_cpu = layers_on(device_map, "cpu")
    if on_cpu == want and device_map.get("lm_head") == "cpu" and device_map.get("model.norm") == "cpu":
        return None
    sizes = module_sizes(model, "bf16")
    layer, head = sizes["model.layers.0"] / GiB, sizes["lm_head"] / GiB
    if len(on_cpu) > OFFLOADED_LAYERS:
        return (f"{len(on_cpu)} layers landed on the CPU, not {OFFLOADED_LAYERS}: GPU 0 needs the embedding and "
                f"{layers - OFFLOADED_LAYERS} layers ({layer:.3f} GiB each) plus the room the planner keeps free for the "
                f"largest module it may have to load there (here lm_head, {head:.3f} GiB)")
    return (f"{len(on_cpu)} layers landed on the CPU, not {OFFLOADED_LAYERS}: GPU 0's budget is too large; stay below "
            "what one more layer would need")


def compare_split_speed(answer: bool, rows: list[dict[str, Any]]) -> tuple[bool, str]:
    """Compare 'a split over two GPUs decodes faster than one GPU' with the recipes' per-round ratio ranges."""
    faster = [r for r in rows if r["split_vs_whole"][1] > 1]
    slower = [r for r in rows if r["split_vs_whole"][2] < 1]
    measured = bool(faster)
    sentence = (f"{len(faster)} of {len(rows)} recipes decoded measurably faster split (per-round quartiles above 1), "
                f"{len(slower)} measurably slower (quartiles below 1), {len(rows) - len(faster) - len(slower)} with no "
                "measurable difference; at batch 1 the "
                "two GPUs hold different layers and take turns, so a split adds memory, not speed")
    return answer == measured, sentence


def check_answer(answer: Any, model: Any) -> str | None:
    """Smallest whole-GiB budget for GPU 0 that, with GPU 1 at 80 GiB, places every module of the bf16 model on the two GPUs."""
    def fits(gib: int) -> bool:
        try:
            device_map = plan(model, {0: f"{gib}GiB", 1: "80GiB"}, precision="bf16")
        except BudgetError:
            return False
        return set(device_map.values()) <= {0, 1}

    if not isinstance(answer, int) or isinstance(answer, bool) or answer < 1:
        return "answer with a whole number of GiB, such as 60"
    if not fits(answer):
        return f"with {answer} GiB on GPU 0 the model does not fit on the two GPUs: go higher"
    if answer > 1 and fits(answer - 1):
        return f"{answer - 1} GiB is enough too: go lower"
    return None


def device_name(device: Any) -> str:
    """Return a device-map value as a device's name: GPU index 1 is "cuda:1"; "cpu", "disk" and "cuda:1" stay."""
    return f"cuda:{device}" if isinstance(device, int) else str(device)


def refused(device_map: dict[str, Any]) -> bool:
    """Return whether bitsandbytes (without llm_int8_enable_fp32_cpu_offload) refuses a map: CPU or disk, unless all CPU."""
    devices = {device_name(d) for d in device_map.values()}
    return devices != {"cpu"} and bool(devices & {"cpu", "disk"})


def plan_problem(planned: dict[str, Any], loaded: dict[str, Any] | None) -> str | None:
    """Compare a plan with the device map of the same from_pretrained call (None: the call refused its map)."""
    if loaded is None:
        return None if refused(planned) else (f"the load was refused, but the plan ({where(planned)}) puts no module "
                                              "on the CPU or disk beside a GPU")
    want = {k: device_name(d) for k, d in planned.items()}
    got = {k: device_name(d) for k, d in loaded.items()}
    differ = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
    return (f"the plan and the load differ at {len(differ)} entries: "
            + ", ".join(f"{k!r} plan {want.get(k)}, load {got.get(k)}" for k in differ[:3])) if differ else None


def where(device_map: dict[str, Any]) -> str:
    """Say what each device holds under a device map: its decoder layers by count, the other modules by name."""
    held: dict[str, list[str]] = {}
    for module, device in device_map.items():
        held.setdefault(device_name(device), []).append(module)
    parts = []
    for device, modules in held.items():
        layers = [m for m in modules if re.search(r"\.(h|layers)\.\d+$", m)]
        others = ["the whole model" if m == "" else m.rsplit(".", 1)[-1] for m in modules if m not in layers]
        parts.append(f"{device}: " + ", ".join(([f"{len(layers)} layers"] if layers else []) + others))
    return "; ".join(parts)


def budget_problem(held: dict[Any, int], budgets: dict[Any, int | str]) -> str | None:
    """Return which devices hold more bytes of weights than their max_memory budget, or None."""
    limits = {device_name(d): to_bytes(b) for d, b in budgets.items() if d != "disk"}
    over = {d: (b, limits[device_name(d)]) for d, b in held.items() if device_name(d) in limits
            and b > limits[device_name(d)]}
    return ", ".join(f"{device_name(d)} holds {b / 2**20:.0f} MiB of weights over its budget of {cap / 2**20:.0f} MiB"
                     for d, (b, cap) in over.items()) or None


def low_zero_problem(totals: dict[str, dict[Any, int]]) -> str | None:
    """Check the lesson's balanced_low_0 claims: GPU 0's own budget changes nothing, a smaller GPU 1 budget moves weights to GPU 0, the CPU spill stays."""
    given, raised, lowered = totals["as given"], totals["GPU 0 raised"], totals["GPU 1 lowered"]
    if raised != given:
        return f"a larger GPU 0 budget changed the balanced_low_0 plan: {given} -> {raised}"
    if lowered.get(0, 0) <= given.get(0, 0):
        return f"a smaller GPU 1 budget did not move weights to GPU 0: {given} -> {lowered}"
    if not (given.get("cpu") and lowered.get("cpu")):
        return f"the plans do not both spill to the CPU, as the lesson says: {given}, {lowered}"
    return None


def link_problem(tokens_per_s: float, bytes_per_token: int, bandwidth: float) -> str | None:
    """Return a problem when offloaded decoding beats the host link's bound (bytes moved per token over the link's bandwidth)."""
    bound = bandwidth / bytes_per_token
    if tokens_per_s > bound:
        return (f"decoded {tokens_per_s:.2f} tok/s, above the host link's bound of {bound:.2f} tok/s: the bytes moved "
                "per token are undercounted or the link was measured too slow")
    return None


EXERCISES = {
    "06": Call(check_answer),
    "06-call": Call(check_offload_budget),
    "06-predict": Prediction("does the split over two GPUs decode faster than one GPU at batch 1?", compare_split_speed),
}
