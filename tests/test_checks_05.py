"""Lesson 05's exercise checks: the nf4 + SDPA from_pretrained keywords, and the nf4-against-16-bit decode prediction."""

import pytest
import torch
from transformers import BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

from coursetools.checks.lesson05 import EXERCISES, check_call, compare_decode
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


def test_a_prediction_agreeing_and_one_contradicted():
    slower = (0.8, 0.75, 0.85)
    agrees, sentence = compare_decode(False, slower, "bfloat16")
    assert agrees and "1.25x slower" in sentence
    agrees, sentence = compare_decode(True, slower, "bfloat16")
    assert not agrees
    agrees, sentence = compare_decode(True, (1.3, 1.2, 1.4), "bfloat16")
    assert agrees and "1.30x faster" in sentence


def test_a_tie_agrees_with_not_faster():
    agrees, sentence = compare_decode(False, (1.02, 0.97, 1.06), "bfloat16")
    assert agrees and "no measurable difference" in sentence
    assert not compare_decode(True, (1.02, 0.97, 1.06), "bfloat16")[0]


def test_only_a_wrong_form_fails_a_prediction_and_a_contradicted_one_does_not():
    context = {"ratio": (0.8, 0.75, 0.85), "baseline": "bfloat16"}
    assert verdict_of("05-predict", "no", context)[2]
    text, counted, fails = verdict_of("05-predict", True, context)
    assert not counted and not fails and "says otherwise" in text
    assert EXERCISES["05-predict"].choices == (True, False)


def test_leaders_name_every_variant_tied_with_the_best():
    from helpers.evaluation import leaders

    rounds = {"a": [10.0, 11.0, 10.5], "b": [10.2, 10.8, 10.9], "c": [20.0, 21.0, 19.0]}
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
