"""Lesson 05's exercise checks: the nf4 + SDPA from_pretrained keywords, and the nf4-against-16-bit decode prediction."""

import pytest
import torch
from transformers import BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

from coursetools.checks.lesson05 import (
    EXERCISES,
    allowed_problem,
    backend_problem,
    check_call,
    compare_decode,
    dtype_problem,
    footprint_order_problem,
    goal_reading,
)
from coursetools.exercises import verdict_of

HALF = torch.bfloat16


def right(**changes: object) -> dict:
    """Return the right keywords for nf4 with bf16 compute and SDPA, with some changed."""
    config = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": HALF}
    config.update(changes.pop("config", {}))
    return {"quantization_config": BitsAndBytesConfig(**config), "attn_implementation": "sdpa", "dtype": HALF, **changes}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small Llama checkpoint with random weights, saved to disk so from_pretrained can quantize it."""
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, vocab_size=128)
    folder = tmp_path_factory.mktemp("tiny")
    LlamaForCausalLM(config).save_pretrained(folder)
    return str(folder)


def test_the_right_keywords_pass_and_load_as_nf4_with_sdpa(tiny_checkpoint):
    assert check_call(right(), HALF) is None
    assert check_call(right(), HALF, path=tiny_checkpoint, device="cpu") is None
    assert check_call({**right(), "device_map": "cpu"}, HALF, path=tiny_checkpoint) is None


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        ("sdpa", "write a dict"),
        ({"load_in_4bit": True, "attn_implementation": "sdpa"}, "no longer a from_pretrained keyword"),
        (right(dtype=None) | {"torch_dtype": HALF}, "torch_dtype= is deprecated"),
        (right(low_cpu_mem_usage=True), "remove low_cpu_mem_usage"),
        (right(quantization_config={"load_in_4bit": True}), "must be a BitsAndBytesConfig"),
        (right(config={"load_in_4bit": False, "load_in_8bit": True}), "LLM.int8()"),
        (right(config={"load_in_4bit": False}), "defaults to False"),
        (right(config={"bnb_4bit_quant_type": "fp4"}), "its default is 'fp4'"),
        (right(config={"bnb_4bit_compute_dtype": None}), "left out it is float32"),
        ({k: v for k, v in right().items() if k != "attn_implementation"}, "write attn_implementation='sdpa'"),
        (right(attn_implementation="flash_attention_2"), "flash-attn package"),
        (right(attn_implementation="eager"), "set 'sdpa'"),
        ({k: v for k, v in right().items() if k != "dtype"}, "dtype= sets the parts that stay unquantized"),
    ],
)
def test_each_typical_mistake_gets_its_hint(answer, hint):
    problem = check_call(answer, HALF)
    assert problem is not None and hint in problem


def test_keywords_from_pretrained_refuses_are_reported(tiny_checkpoint):
    problem = check_call(right(attn_implementation="sdpa"), HALF, path=tiny_checkpoint, device="no-such-device")
    assert problem is not None and "from_pretrained refused" in problem


def test_a_predicted_ratio_agreeing_and_one_contradicted():
    slower = (0.8, 0.75, 0.85)
    agrees, sentence = compare_decode(0.8, slower, "bfloat16", byte_ratio=2.4, base_share=0.04)
    assert agrees and "0.80x the speed of bfloat16" in sentence and "2.40x" in sentence
    assert compare_decode(0.7, slower, "bfloat16", byte_ratio=2.4, base_share=0.04)[0]  # inside the widened range
    agrees, sentence = compare_decode(2.4, slower, "bfloat16", byte_ratio=2.4, base_share=0.04)
    assert not agrees and "what the bytes alone predict" in sentence
    assert not compare_decode(0.5, slower, "bfloat16", byte_ratio=2.4, base_share=0.04)[0]


def test_an_overhead_bound_base_names_no_format_as_the_cause_and_a_bandwidth_bound_one_compares_shares():
    _, overhead = compare_decode(0.8, (0.8, 0.75, 0.85), "bfloat16", byte_ratio=2.4, base_share=0.04)
    assert "overhead-bound" in overhead and "not the bytes nf4 saves" in overhead and "quartiles" in overhead
    assert "unpack" not in overhead and "dequantiz" not in overhead
    _, bound = compare_decode(1.9, (1.92, 1.8, 2.0), "bfloat16", byte_ratio=2.4, base_share=0.6)
    assert "overhead-bound" not in bound and "60% of its bandwidth bound" in bound and "0.80 of the share" in bound


def test_only_a_wrong_form_fails_a_prediction_and_a_contradicted_one_does_not():
    context = {"ratio": (0.8, 0.75, 0.85), "baseline": "bfloat16", "byte_ratio": 2.4, "base_share": 0.04}
    assert verdict_of("05-predict", True, context)[2]  # a number is asked for
    assert verdict_of("05-predict", "0.8", context)[2]
    text, counted, fails = verdict_of("05-predict", 2.0, context)
    assert not counted and not fails and "says otherwise" in text
    assert verdict_of("05-predict", 0.8, context)[1]
    assert EXERCISES["05-predict"].choices == ()


def test_a_goal_names_its_overhead_bound_leaders_and_only_those():
    assert goal_reading({"bfloat16, eager": 0.042, "bfloat16, sdpa flash": 0.045}) == "overhead-bound: 4.2-4.5%"
    assert goal_reading({"bfloat16, eager": 0.199}) == "overhead-bound: 19.9%"  # just below the threshold
    assert goal_reading({"bfloat16, eager": 0.20, "nf4, eager": 0.35}) == "20.0-35.0%"  # at it: not overhead-bound
    mixed = goal_reading({"bfloat16, eager": 0.25, "nf4, eager": 0.04})
    assert mixed == "overhead-bound: nf4, eager 4.0%; at least 20% of the bound: bfloat16, eager 25.0%"
    assert "not a valid measurement" in goal_reading({"int8, eager": 1.3})  # a speed above its bound


def test_footprints_must_shrink_along_the_formats():
    assert footprint_order_problem({"bfloat16": 300, "int8": 200, "nf4": 100}, ["bfloat16", "int8", "nf4"]) is None
    problem = footprint_order_problem({"bfloat16": 300, "int8": 90, "nf4": 100}, ["bfloat16", "int8", "nf4"])
    assert problem is not None and "nf4 takes 100 bytes, not fewer than int8's 90" in problem
    assert footprint_order_problem({"bfloat16": 300, "int8": 300, "nf4": 100}, ["bfloat16", "int8", "nf4"])


def test_a_model_of_another_dtype_is_named():
    expected = {"seed": torch.bfloat16, "int8": torch.float16}
    assert dtype_problem({"seed": torch.bfloat16, "int8": torch.float16}, expected) is None
    problem = dtype_problem({"seed": torch.float16, "int8": torch.float16}, expected)
    assert problem is not None and "seed" in problem and "torch.float16 instead of torch.bfloat16" in problem
    assert "missing" in dtype_problem({"int8": torch.float16} | {"missing": None}, {**expected, "missing": torch.float32})


def test_a_backend_outside_the_allowed_ones_or_a_wrong_refusal_is_a_problem():
    assert backend_problem({"flash": 30}, {"flash", "cudnn"}) is None
    assert backend_problem(None, {"flash"}) is None  # refused: nothing ran
    assert "['math']" in backend_problem({"flash": 2, "math": 28}, {"flash"})
    assert "no SDPA call" in backend_problem({}, {"flash"})
    assert "refused" in backend_problem(None, {"flash"}, should_run=True)
    assert "run" in backend_problem({"flash": 30}, {"flash"}, should_run=False)
    assert backend_problem({"flash": 30}, {"flash"}, should_run=True) is None


def test_the_seed_context_on_a_gpu_must_refuse_float32_and_run_16_bit():
    seed_context = {"flash", "cudnn"}  # what sdp_kernel(enable_flash=True, ...) leaves on (enable_cudnn=True)
    assert backend_problem(None, seed_context, should_run=False) is None  # a float32 model refused, as on a GPU
    assert "run" in backend_problem({"flash": 60}, seed_context, should_run=False)  # a float32 model run on a GPU
    assert "refused" in backend_problem(None, seed_context, should_run=True)  # the 16-bit model refused on an H200
    assert backend_problem(None, seed_context, should_run=None) is None  # no claim (a GPU older than sm 8.0)


def test_leaders_name_every_variant_tied_with_the_best():
    from helpers.evaluation import leaders

    rounds = {"a": [10.0, 11.0, 10.5, 10.2, 10.6], "b": [10.4, 10.6, 10.6, 10.1, 10.7], "c": [20.0, 21.0, 19.0, 20.5, 19.5]}
    assert leaders(rounds, lower_is_better=True) == ["a", "b"]
    assert leaders(rounds, lower_is_better=False) == ["c"]
    memory = {"x": [100.0], "y": [100.5], "z": [120.0]}
    assert leaders(memory, lower_is_better=True) == ["x"]
    assert leaders(memory, lower_is_better=True, tolerance=0.01) == ["x", "y"]


def test_measure_matrix_times_each_variant_per_round_and_records_a_refused_kernel(tiny_checkpoint):
    from transformers import AutoModelForCausalLM

    from helpers.evaluation import measure_matrix

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype=torch.float32).eval()
    variants = {"eager": (model, "eager", None), "sdpa math": (model, "sdpa", "math"), "cudnn": (model, "sdpa", "cudnn")}
    matrix = measure_matrix(variants, [8, 16], new_tokens=24, batches=(1, 2), warmup=0, rounds=2)
    assert matrix["cudnn"].error  # no cuDNN attention on a CPU
    for key in ("eager", "sdpa math"):
        result = matrix[key]
        assert not result.error and set(result.peak_bytes) == {8, 16}
        assert all(len(result.prefill_ms[c]) == 2 for c in (8, 16))
        assert all(len(result.decode_tokens_per_s[rows]) == 2 and min(result.decode_tokens_per_s[rows]) > 0
                   for rows in (1, 2))


def test_measure_matrix_rejects_an_unknown_backend_listing_the_backends(tiny_checkpoint):
    from transformers import AutoModelForCausalLM

    from helpers.evaluation import allowing, measure_matrix

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype=torch.float32).eval()
    with allowing(model, "sdpa", "math"):
        assert model.config._attn_implementation == "sdpa"
    with pytest.raises(ValueError, match=r"unknown SDPA backend 'fast'; choose one of \['cudnn', 'efficient', 'flash', 'math'\]"):
        measure_matrix({"sdpa fast": (model, "sdpa", "fast")}, [8], new_tokens=4, batches=(1,), warmup=0, rounds=1)


def test_the_memory_answer_takes_the_pair_as_a_tuple_or_a_list_and_hints_at_anything_else():
    from types import SimpleNamespace

    from coursetools.checks.lesson05 import check_answer

    ran = {("bf16", "eager"): SimpleNamespace(footprint_bytes=100, peak_bytes={8: 50}),
           ("nf4", "eager"): SimpleNamespace(footprint_bytes=30, peak_bytes={8: 200}),
           ("nf4", "flash"): SimpleNamespace(footprint_bytes=30, peak_bytes={8: 10})}
    assert check_answer(("nf4", "flash"), ran, long=8) is None
    assert check_answer(["nf4", "flash"], ran, long=8) is None
    assert "take the smallest" in check_answer(("nf4", "eager"), ran, long=8)  # least weights, not least in all
    for unhashable in (["nf4", ["flash"]], {"nf4": "flash"}):  # a hint, not a TypeError from `answer in ran`
        assert "one key of `ran`" in check_answer(unhashable, ran, long=8)


def test_allowed_problem_reads_the_context_it_is_given():
    assert allowed_problem(["flash", "cudnn"], {"flash", "cudnn"}) is None
    assert "not ['cudnn', 'flash']" in allowed_problem(["flash"], {"flash", "cudnn"})
    assert allowed_problem(["efficient", "flash", "cudnn"], {"flash", "cudnn"}) is not None
