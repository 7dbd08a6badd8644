"""Lesson 06's checks: a plan against the real load's device map, weights within budgets, balanced_low_0, the host link."""

from coursetools.checks.lesson06 import (
    budget_problem,
    check_offload_budget,
    compare_split_speed,
    link_problem,
    low_zero_problem,
    plan_problem,
    refused,
    where,
)

SPLIT = {"transformer.word_embeddings": 1, "lm_head": 1, "transformer.h.0": 1, "transformer.h.1": "disk"}


def test_a_plan_matches_the_same_map_with_devices_named_either_way():
    assert plan_problem(SPLIT, {**SPLIT, "transformer.word_embeddings": "cuda:1", "lm_head": "cuda:1"}) is None
    assert plan_problem({"": 1}, {"": "cuda:1"}) is None  # one device: the load has no hf_device_map, its device


def test_a_plan_that_differs_from_the_load_is_a_problem():
    moved = {**SPLIT, "transformer.h.0": "disk"}
    assert "differ at 1 entries: 'transformer.h.0' plan cuda:1, load disk" in plan_problem(SPLIT, moved)
    assert "differ at 1 entries" in plan_problem(SPLIT, {k: v for k, v in SPLIT.items() if k != "transformer.h.1"})
    assert plan_problem({"": 0}, {"": "cuda:1"}) is not None


def test_a_refused_load_must_have_been_planned_onto_cpu_or_disk_beside_a_gpu():
    assert refused(SPLIT) and refused({"": "disk"}) and refused({"a": "cpu", "b": "disk"})
    assert not refused({"": "cpu"}) and not refused({"a": 0, "b": 1})
    assert plan_problem(SPLIT, None) is None
    assert "puts no module on the CPU or disk" in plan_problem({"a": 0, "b": 1}, None)
    assert plan_problem({"": "cpu"}, None) is not None  # all on the CPU: bitsandbytes accepts it


def test_where_names_layers_by_count_and_other_modules_by_name():
    assert where(SPLIT) == "cuda:1: 1 layers, word_embeddings, lm_head; disk: 1 layers"
    assert where({"": "disk"}) == "disk: the whole model"


def test_weights_over_a_budget_are_a_problem():
    assert budget_problem({"cuda:0": 900 * 2**20, "cpu": 10}, {0: "1GiB", "cpu": "40GiB"}) is None
    assert budget_problem({"cuda:1": 3 * 10**9}, {0: "1GB", 1: "3GB", "disk": "1000GB"}) is None  # at the budget
    problem = budget_problem({"cuda:0": 2 * 2**30}, {0: "1GiB", "cpu": "40GiB"})
    assert problem == "cuda:0 holds 2048 MiB of weights over its budget of 1024 MiB"


def test_the_low_zero_claims_fail_when_the_plans_do_not_show_them():
    given = {0: 48, 1: 80, "cpu": 4}
    right = {"as given": given, "GPU 0 raised": dict(given), "GPU 1 lowered": {0: 59, 1: 69, "cpu": 4}}
    assert low_zero_problem(right) is None
    assert "larger GPU 0 budget changed" in low_zero_problem({**right, "GPU 0 raised": {0: 60, 1: 68, "cpu": 4}})
    assert "did not move weights to GPU 0" in low_zero_problem({**right, "GPU 1 lowered": given})
    assert "do not both spill" in low_zero_problem({**right, "GPU 1 lowered": {0: 63, 1: 69}})


def test_offloaded_decoding_faster_than_the_host_link_allows_is_a_problem():
    assert link_problem(1.6, 2 * 10**9, 10e9) is None  # bound 5 tok/s
    assert "above the host link's bound of 5.00 tok/s" in link_problem(6.0, 2 * 10**9, 10e9)


def test_the_offload_budget_exercise_fails_a_budget_one_layer_off_either_way():
    from helpers.models import empty_model
    from helpers.placement import module_sizes

    model = empty_model("llama3-8b-shape")
    sizes = module_sizes(model, "bf16")
    layer = sizes["model.layers.0"]
    gpu0 = sizes["model.embed_tokens"] + (len(model.model.layers) - 4) * layer + sizes["lm_head"] + layer // 2
    assert check_offload_budget({0: gpu0, "cpu": "64GiB"}, model) is None  # the solution's budget
    assert "3 layers landed on the CPU, not 4" in check_offload_budget({0: gpu0 + layer, "cpu": "64GiB"}, model)
    assert "5 layers landed on the CPU, not 4" in check_offload_budget({0: gpu0 - layer, "cpu": "64GiB"}, model)
    assert "a dict of two budgets" in check_offload_budget({0: gpu0}, model)


def test_the_split_speed_prediction_follows_the_rounds():
    slower, tie, faster = {"split_vs_whole": (0.8, 0.7, 0.9)}, {"split_vs_whole": (1.0, 0.9, 1.1)}, \
        {"split_vs_whole": (1.2, 1.1, 1.3)}
    assert compare_split_speed(False, [slower, tie])[0] and not compare_split_speed(True, [slower, tie])[0]
    assert compare_split_speed(True, [slower, faster])[0] and not compare_split_speed(False, [faster])[0]
    assert "1 of 2 recipes decoded measurably faster split (per-round quartiles above 1), 1 measurably slower" in compare_split_speed(True, [slower, faster])[1]
