import tempfile

import pytest
import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, BloomConfig, BloomForCausalLM

from coursetools.checks.lesson06 import plan_problem
from helpers.memory import GiB, model_footprint, parameter_count
from helpers.models import empty_model
from helpers.placement import (
    PRECISIONS,
    BudgetError,
    device_totals,
    draw_plan,
    model_bytes,
    module_sizes,
    plan,
    to_bytes,
)

NESTED = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)


@pytest.fixture(scope="module")
def big():
    return empty_model("llama3-70b-shape")


@pytest.fixture(scope="module")
def bloom_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small BLOOM (tied embedding and head, biases, norms) with random weights, saved in bf16 for real loads."""
    torch.manual_seed(0)
    config = BloomConfig(vocab_size=4096, hidden_size=128, n_layer=4, n_head=4)
    folder = tmp_path_factory.mktemp("bloom")
    BloomForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    return str(folder)


def test_meta_model_uses_no_memory_and_quantized_sizes_keep_16_bit_embeddings_and_add_constants(big):
    assert next(big.parameters()).device.type == "meta"
    bf16, planned = model_bytes(big, "bf16"), module_sizes(big, "4-bit", constants=False)[""]
    buffers = sum(4 * b.numel() for b in big.buffers())  # the rotary embedding's float32 frequencies
    assert bf16 == 2 * parameter_count(big) + buffers and 130 * GiB < bf16 < 133 * GiB
    layers = sum(p.numel() for n, p in big.named_parameters() if n.startswith("model.layers.") and "norm" not in n)
    assert planned == layers // 2 + 2 * (parameter_count(big) - layers) + buffers  # 4-bit linears, the rest 16-bit
    assert model_bytes(big, "4-bit") - planned == 4 * layers // 64  # a float32 absmax per 64 weights
    assert model_bytes(big, NESTED) - planned < layers // 60  # 8-bit absmax, one float32 per 256 blocks


@pytest.mark.parametrize("precision", ["bf16", "int8", "4-bit", NESTED])
def test_model_bytes_are_what_a_real_load_holds(bloom_checkpoint, precision):
    config = PRECISIONS[precision] if isinstance(precision, str) else precision
    loaded = AutoModelForCausalLM.from_pretrained(bloom_checkpoint, dtype=torch.float16, device_map="cpu",
                                                  quantization_config=config)
    assert model_bytes(BloomForCausalLM(loaded.config), precision) == model_footprint(loaded)


def test_plan_is_the_device_map_of_the_same_from_pretrained_call(bloom_checkpoint):
    model = BloomForCausalLM(BloomConfig.from_pretrained(bloom_checkpoint))
    budget = {"cpu": int(0.6 * model_bytes(model, "bf16")), "disk": "1000GB"}
    planned = plan(model, budget, "bf16", "auto")
    assert {"cpu", "disk"} <= set(planned.values())
    with tempfile.TemporaryDirectory() as folder:
        loaded = AutoModelForCausalLM.from_pretrained(bloom_checkpoint, dtype=torch.bfloat16, device_map="auto",
                                                      max_memory=dict(budget), offload_folder=folder)
        assert plan_problem(planned, loaded.hf_device_map) is None
    quantized = plan(model, budget, "4-bit", "auto")  # CPU and disk: bitsandbytes refuses the map
    with pytest.raises(ValueError, match="Some modules are dispatched on the CPU or the disk"):
        AutoModelForCausalLM.from_pretrained(bloom_checkpoint, dtype=torch.bfloat16, device_map="auto",
                                             max_memory=dict(budget), quantization_config=PRECISIONS["4-bit"])
    assert plan_problem(quantized, None) is None


def test_to_bytes():
    assert to_bytes("600MB") == 600 * 10**6
    assert to_bytes("2GiB") == 2 * 2**30
    assert to_bytes(5) == 5
    assert to_bytes("1000GB") == 10**12
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
    with pytest.raises(BudgetError, match="int8 needs 67.7 GiB, 4-bit needs 39.8 GiB"):
        plan(big, {0: "80GiB", 1: "40GiB"})
    with pytest.raises(BudgetError, match=r"\(0: '600MB' = 0.56 GiB, 1: '1GB' = 0.93 GiB\)"):  # budgets as written
        plan(big, {0: "600MB", 1: "1GB"})
    plan(big, {0: "80GiB", 1: "40GiB", "disk": "1000GB"})  # disk offload makes it possible


def test_plan_across_two_imagined_gpus_uses_both_and_refuses_budgets_too_small():
    model = empty_model("llama3-8b-shape")
    device_map = plan(model, {0: "8GiB", 1: "80GiB"}, precision="bf16")
    totals = device_totals(model, device_map)
    assert set(totals) == {0, 1} and totals[0] <= 8 * GiB
    assert set(device_totals(model, plan(model, {0: "3GiB", 1: "8GiB"}, precision="4-bit"))) == {0, 1}
    # 2 GiB: 90% of it, less the room kept for the 16-bit head (1 GiB), cannot hold the 16-bit embedding (1 GiB)
    assert set(plan(model, {0: "2GiB", 1: "8GiB"}, precision="4-bit").values()) == {1}
    with pytest.raises(BudgetError, match="4-bit needs"):
        plan(model, {0: "4GiB", 1: "4GiB"}, precision="bf16")


PRECISION_LIST = r"choose one of \['4-bit', 'bf16', 'int8'\]"


def test_model_bytes_rejects_an_unknown_precision_listing_the_precisions(big):
    assert model_bytes(big, "bf16") > model_bytes(big, "int8") > model_bytes(big, "4-bit")
    with pytest.raises(ValueError, match=PRECISION_LIST):
        model_bytes(big, "fp8")


def test_plan_rejects_an_unknown_precision_listing_the_precisions_also_with_disk(big):
    budget = {0: "80GiB", 1: "80GiB", "cpu": "200GiB", "disk": "1000GB"}  # disk skips the budget check
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
