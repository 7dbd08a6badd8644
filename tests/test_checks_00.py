import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification, LlamaConfig

from coursetools.checks import exercise
from coursetools.checks.lesson00 import (
    SYNTHETIC_NAME,
    answer_problem,
    check_answer,
    check_call,
    compare_ratio,
    footprint_problem,
    paraphrase_problem,
)
from helpers.memory import MiB
from helpers.models import model_config, pretrained_path


def tiny(model_class=AutoModelForCausalLM, **keywords):
    return model_class.from_pretrained(pretrained_path(SYNTHETIC_NAME), **keywords)


@pytest.fixture(scope="module")
def right():
    return tiny(dtype=torch.float32, device_map="cpu")


def test_the_right_call_passes_on_each_profile_dtype(right):
    assert check_call(right, dtype=torch.float32, device="cpu") is None
    assert check_call(tiny(dtype=torch.float16), dtype=torch.float16, device="cpu") is None


def test_a_left_out_or_wrong_dtype_is_named_and_the_checkpoint_dtype_explained(right):
    assert "dtype=\"auto\" keeps the dtype the checkpoint was saved in" in check_call(tiny(), dtype=torch.float32,
                                                                                       device="cpu")
    assert check_call(tiny(), dtype=torch.bfloat16, device="cpu") is None  # the gpu profile's dtype is the saved one
    assert "pass dtype=lesson.profile.dtype" in check_call(right, dtype=torch.float16, device="cpu")


def test_a_model_on_the_wrong_device_is_told_to_use_device_map(right):
    assert "pass device_map=lesson.device" in check_call(right, dtype=torch.float32, device="cuda")


def test_answers_that_are_not_the_loaded_causal_lm_are_named():
    assert "write the call itself" in check_call(pretrained_path(SYNTHETIC_NAME), dtype=torch.float32, device="cpu")
    assert "whose result is the model" in check_call(AutoModelForCausalLM, dtype=torch.float32, device="cpu")
    assert "load it with AutoModelForCausalLM" in check_call(tiny(AutoModel, dtype=torch.float32), dtype=torch.float32,
                                                             device="cpu")
    headed = tiny(AutoModelForSequenceClassification, dtype=torch.float32)  # right weights, dtype, device; wrong head
    assert "another task's head" in check_call(headed, dtype=torch.float32, device="cpu")
    drawn = AutoModelForCausalLM.from_config(model_config(SYNTHETIC_NAME), dtype=torch.float32)
    assert "not read from the checkpoint" in check_call(drawn, dtype=torch.float32, device="cpu")
    other = AutoModelForCausalLM.from_config(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                         num_attention_heads=2, vocab_size=256))
    assert f"not the {SYNTHETIC_NAME} model" in check_call(other, dtype=torch.float32, device="cpu")


def test_a_predicted_ratio_agrees_within_a_factor_of_the_measured_quartiles():
    gpu_like = (1.06, 1.03, 1.22)  # a 512-token pass takes about as long as a one-token pass
    agrees, sentence = compare_ratio(1.0, longer=gpu_like, tokens=512)
    assert agrees and "took 1.06x" in sentence and "within a factor 1.5" in sentence and "would take 512x" in sentence
    assert "a decode step pays that for one token" in sentence
    assert not compare_ratio(512, longer=gpu_like, tokens=512)[0]  # in proportion to the tokens: far off
    assert not compare_ratio(2.0, longer=gpu_like, tokens=512)[0]  # just above 1.22 x 1.5
    assert compare_ratio(1.8, longer=gpu_like, tokens=512)[0]
    cpu_like = (6.6, 5.9, 6.7)  # a 64-token pass on a CPU
    assert compare_ratio(8, longer=cpu_like, tokens=64)[0] and not compare_ratio(1, longer=cpu_like, tokens=64)[0]
    proportional = (64.0, 60.0, 70.0)
    agrees, sentence = compare_ratio(64, longer=proportional, tokens=64)
    assert agrees and "in proportion to its tokens: the arithmetic" in sentence


def test_the_bound_exercise_takes_the_measured_nf4_footprint_and_names_the_quarter_assumption():
    context = {"nf4_footprint": 433, "bandwidth": 1e12, "footprint": 1000, "bits": 16}
    assert check_answer(1e12 / 433, **context) is None
    assert "counts every weight at 4 bits, 0.25 of the 16-bit footprint" in check_answer(1e12 / 250, **context)
    assert "the nf4 model measured 0.433 of it" in check_answer(1e12 / 250, **context)
    assert "bandwidth / the bytes of the weights" in check_answer(1e12 / 1000, **context)
    assert "bandwidth / the bytes of the weights" in check_answer("fast", **context)


def test_a_footprint_that_disagrees_with_the_memory_its_load_took_is_caught():
    weights = 257 * MiB  # SmolLM2 in 16 bits; its embedding (tied to the head) is 54 MiB of it
    assert footprint_problem(weights, weights + 300 * 1024, "cuda") is None  # the allocator's rounding
    assert footprint_problem(weights, weights + 4 * MiB, "cpu") is None
    counted_twice = weights + 54 * MiB  # a footprint that counted the tied embedding twice
    assert "more than 2% + 2 MiB apart" in footprint_problem(counted_twice, weights, "cuda")
    assert "more than 5% + 8 MiB apart" in footprint_problem(counted_twice, weights, "cpu")
    nf4 = 111 * MiB
    assert footprint_problem(nf4 - int(6.3 * MiB), nf4, "cuda") is not None  # the 4-bit scales left out, on a GPU
    assert footprint_problem(weights, None, "cpu") is None  # not measurable here: nothing to hold it to


def test_the_answer_and_paraphrase_checks_fail_on_wrong_results():
    assert answer_problem("The capital of France is Paris.") is None
    assert "does not name Paris" in answer_problem("The capital of France is Lyon.")
    close = torch.tensor([[1.0, 0.66, 0.06], [0.66, 1.0, 0.06], [0.06, 0.06, 1.0]])
    assert paraphrase_problem(close) is None
    swapped = torch.tensor([[1.0, 0.3, 0.2], [0.3, 1.0, 0.1], [0.2, 0.1, 1.0]])
    assert "not 0.2 apart" in paraphrase_problem(swapped)


def test_the_exercises_are_registered_and_the_prediction_takes_a_number():
    assert exercise("00-call").check is check_call
    assert exercise("00").check is check_answer
    assert exercise("00-predict").choices == ()
