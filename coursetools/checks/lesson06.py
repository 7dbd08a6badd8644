"""Lesson 06's exercises: a `max_memory` that offloads exactly the last layers, and whether a split decodes faster."""

from __future__ import annotations

from typing import Any

from coursetools.checks import Call, Prediction
from helpers.placement import BudgetError, plan

OFFLOADED_LAYERS = 4  # 06-call: the last this many decoder layers go to the CPU


def layers_on(device_map: dict[str, Any], device: Any) -> list[int]:
    """Return the indices of the decoder layers a device map puts on one device."""
    return sorted(int(k.split(".")[2]) for k, d in device_map.items() if k.startswith("model.layers.") and d == device)


def check_offload_budget(answer: Any, model: Any) -> str | None:
    """Right when planning `model` (bf16, "sequential") with the answer puts exactly its last layers, norm and head on the CPU."""
    from helpers.memory import GiB
    from helpers.placement import BudgetError, model_bytes, plan

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
    layer = model_bytes(model.model.layers[0], "bf16") / GiB
    head = model_bytes(model.lm_head, "bf16") / GiB
    if len(on_cpu) > OFFLOADED_LAYERS:
        return (f"{len(on_cpu)} layers landed on the CPU, not {OFFLOADED_LAYERS}: GPU 0 needs the embedding and "
                f"{layers - OFFLOADED_LAYERS} layers ({layer:.3f} GiB each) plus the room accelerate keeps free for the "
                f"largest module it may have to load there (here lm_head, {head:.3f} GiB)")
    return (f"{len(on_cpu)} layers landed on the CPU, not {OFFLOADED_LAYERS}: GPU 0's budget is too large; stay below "
            "what one more layer would need")


def compare_split_speed(answer: bool, rows: list[dict[str, Any]]) -> tuple[bool, str]:
    """Compare 'a split over two GPUs decodes faster than one GPU' with the recipes' per-round ratio ranges."""
    faster = [r for r in rows if r["split_vs_whole"][1] > 1]
    slower = [r for r in rows if r["split_vs_whole"][2] < 1]
    measured = bool(faster)
    sentence = (f"{len(faster)} of {len(rows)} recipes decoded faster split in every round, {len(slower)} slower in "
                f"every round, {len(rows) - len(faster) - len(slower)} with no measurable difference; at batch 1 the "
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


EXERCISES = {
    "06": Call(check_answer),
    "06-call": Call(check_offload_budget),
    "06-predict": Prediction("does the split over two GPUs decode faster than one GPU at batch 1?", compare_split_speed),
}
