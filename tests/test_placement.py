import pytest

from helpers.memory import GiB
from helpers.models import empty_model
from helpers.placement import BudgetError, device_totals, draw_plan, model_bytes, plan, to_bytes


@pytest.fixture(scope="module")
def big():
    return empty_model("llama3-70b-shape")


def test_meta_model_uses_no_memory_and_sizes_scale_with_precision(big):
    assert next(big.parameters()).device.type == "meta"
    bf16, int8, int4 = (model_bytes(big, p) for p in ("bf16", "int8", "4-bit"))
    assert 130 * GiB < bf16 < 133 * GiB
    assert bf16 == 2 * int8 == 4 * int4


def test_to_bytes():
    assert to_bytes("600MB") == 600 * 10**6
    assert to_bytes("2GiB") == 2 * 2**30
    assert to_bytes(5) == 5
    with pytest.raises(ValueError, match="GiB"):
        to_bytes("lots")


def test_plan_respects_budgets_and_keeps_layers_whole(big):
    device_map = plan(big, {0: "80GiB", 1: "80GiB", "cpu": "200GiB"})
    totals = device_totals(big, device_map)
    assert totals[0] <= 80 * GiB and totals[1] <= 80 * GiB
    assert sum(totals.values()) == model_bytes(big, "bf16")
    assert all(key.count(".") <= 2 for key in device_map)  # whole decoder layers (model.layers.N) or top modules


def test_balanced_spreads_and_low_0_keeps_gpu0_light(big):
    budget = {0: "80GiB", 1: "80GiB", "cpu": "200GiB"}
    sequential = device_totals(big, plan(big, budget, strategy="sequential"))
    balanced = device_totals(big, plan(big, budget, strategy="balanced"))
    low0 = device_totals(big, plan(big, budget, strategy="balanced_low_0"))
    assert abs(balanced[0] - balanced[1]) < abs(sequential[0] - sequential[1])
    assert low0[0] < balanced[0]


def test_impossible_budget_says_what_to_do(big):
    with pytest.raises(BudgetError, match="4-bit needs 32.9 GiB"):
        plan(big, {0: "80GiB", 1: "40GiB"})
    plan(big, {0: "80GiB", 1: "40GiB", "disk": "1TB"})  # disk offload makes it possible


def test_plan_across_two_imagined_gpus_uses_both_and_refuses_budgets_too_small():
    model = empty_model("llama3-8b-shape")
    device_map = plan(model, {0: "8GiB", 1: "80GiB"}, precision="bf16")
    totals = device_totals(model, device_map)
    assert set(totals) == {0, 1} and totals[0] <= 8 * GiB
    assert set(device_totals(model, plan(model, {0: "2GiB", 1: "8GiB"}, precision="4-bit"))) == {0, 1}
    with pytest.raises(BudgetError, match="4-bit needs"):
        plan(model, {0: "4GiB", 1: "4GiB"}, precision="bf16")


PRECISION_LIST = r"choose one of \['4-bit', 'bf16', 'int8'\]"


def test_model_bytes_rejects_an_unknown_precision_listing_the_precisions(big):
    assert model_bytes(big, "int8") == model_bytes(big, "bf16") // 2
    with pytest.raises(ValueError, match=PRECISION_LIST):
        model_bytes(big, "fp8")


def test_plan_rejects_an_unknown_precision_listing_the_precisions_also_with_disk(big):
    budget = {0: "80GiB", 1: "80GiB", "cpu": "200GiB", "disk": "1TB"}  # disk skips the budget check
    assert set(device_totals(big, plan(big, budget, precision="4-bit"), "4-bit")) == {0}
    with pytest.raises(ValueError, match=PRECISION_LIST):
        plan(big, budget, precision="fp8")


def test_plan_rejects_an_unknown_strategy_listing_the_strategies(big):
    budget = {0: "80GiB", 1: "80GiB", "cpu": "200GiB"}
    assert plan(big, budget, strategy="auto") == plan(big, budget, strategy="balanced")
    with pytest.raises(ValueError, match=r"choose one of \['auto', 'balanced', 'balanced_low_0', 'sequential'\]"):
        plan(big, budget, strategy="balanced-low-0")


def test_device_totals_rejects_an_unknown_precision_listing_the_precisions(big):
    device_map = plan(big, {0: "80GiB", 1: "80GiB", "cpu": "200GiB"})
    assert sum(device_totals(big, device_map, "bf16").values()) == model_bytes(big, "bf16")
    with pytest.raises(ValueError, match=PRECISION_LIST):
        device_totals(big, device_map, "fp16")


def test_draw_plan_rejects_an_unknown_strategy_listing_the_strategies(big, capsys):
    draw_plan(big, 8, 8, 0, "bf16", "balanced")  # a budget too small is printed, not raised
    assert "BudgetError" in capsys.readouterr().out
    with pytest.raises(ValueError, match="'balanced_low_0', 'sequential'"):
        draw_plan(big, 8, 8, 0, "bf16", "even")
