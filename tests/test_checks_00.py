import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, LlamaConfig

from coursetools.checks import exercise
from coursetools.checks.lesson00 import SYNTHETIC_NAME, check_call, compare_per_token
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
    drawn = AutoModelForCausalLM.from_config(model_config(SYNTHETIC_NAME), dtype=torch.float32)
    assert "not read from the checkpoint" in check_call(drawn, dtype=torch.float32, device="cpu")
    other = AutoModelForCausalLM.from_config(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                         num_attention_heads=2, vocab_size=256))
    assert f"not the {SYNTHETIC_NAME} model" in check_call(other, dtype=torch.float32, device="cpu")


def test_prediction_agrees_contradicts_and_ties():
    gpu_like = (1.02, 0.98, 1.10)  # a 512-token pass takes about as long as a one-token pass
    agrees, sentence = compare_per_token(True, longer=gpu_like, tokens=512)
    assert agrees and "took 1.02x" in sentence and "against 512x" in sentence and "cheaper" in sentence
    assert not compare_per_token(False, longer=gpu_like, tokens=512)[0]
    tied = (64.0, 60.0, 70.0)  # the rounds straddle 64x: per token, no measurable difference
    agrees, sentence = compare_per_token(True, longer=tied, tokens=64)
    assert not agrees and "no measurable difference" in sentence and "in proportion to its tokens" in sentence
    assert compare_per_token(False, longer=tied, tokens=64)[0]
    costlier = (80.0, 72.0, 90.0)
    agrees, sentence = compare_per_token(False, longer=costlier, tokens=64)
    assert agrees and "costlier" in sentence


def test_both_exercises_are_registered_and_the_prediction_takes_true_or_false():
    assert exercise("00-call").check is check_call
    assert exercise("00-predict").choices == (True, False)
