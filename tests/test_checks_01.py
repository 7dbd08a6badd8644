import pytest
import torch
from transformers import AutoModel, AutoModelForMaskedLM, BertConfig

from coursetools.checks import exercise
from coursetools.checks.lesson01 import check_call, compare_no_padding
from helpers.models import pretrained_path


def minilm(**keywords):
    return AutoModel.from_pretrained(pretrained_path("minilm-l6"), **keywords)


@pytest.fixture(scope="module")
def right():
    return minilm(attn_implementation="sdpa", dtype=torch.float16, device_map="cpu")


def test_the_right_call_passes_and_sdpa_is_the_default(right):
    assert check_call(right, device="cpu") is None
    assert check_call(minilm(dtype=torch.float16), device="cpu") is None  # attn_implementation left out: sdpa


@pytest.mark.parametrize(
    ("keywords", "hint"),
    [
        ({"attn_implementation": "eager", "dtype": torch.float16}, 'attn_implementation="sdpa"'),
        ({"attn_implementation": "sdpa"}, "dtype=torch.float16 (the default"),
        ({"attn_implementation": "sdpa", "dtype": torch.bfloat16}, "bfloat16 is the other 16-bit float"),
    ],
)
def test_typical_mistakes_in_the_keywords_get_their_hint(keywords, hint):
    assert hint in check_call(minilm(**keywords), device="cpu")


def test_a_model_on_the_wrong_device_is_told_to_use_device_map(right):
    assert "pass device_map=lesson.device" in check_call(right, device="cuda")


def test_answers_that_are_not_the_bare_minilm_are_named():
    assert "write the call itself" in check_call(pretrained_path("minilm-l6"), device="cpu")
    assert "whose result is the model" in check_call(AutoModel, device="cpu")
    head = AutoModelForMaskedLM.from_pretrained(pretrained_path("minilm-l6"), dtype=torch.float16)
    assert "task head" in check_call(head, device="cpu")
    other = AutoModel.from_config(BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                             intermediate_size=128), dtype=torch.float16)
    assert "not all-MiniLM-L6-v2" in check_call(other, device="cpu")


def test_prediction_agrees_contradicts_and_ties():
    faster, half = (1.10, 1.05, 1.15), (1.40, 1.30, 1.50)
    agrees, sentence = compare_no_padding(True, no_padding=faster, half_padding=half)
    assert agrees and "1.10x faster" in sentence and "it beats HF sdpa" in sentence and "a larger gain" in sentence
    assert not compare_no_padding(False, no_padding=faster, half_padding=half)[0]
    slower = (1 / 1.04, 1 / 1.05, 1 / 1.03)
    agrees, sentence = compare_no_padding(False, no_padding=slower, half_padding=half)
    assert agrees and "1.04x slower" in sentence and "it is slower" in sentence
    agrees, sentence = compare_no_padding(True, no_padding=(1.01, 0.97, 1.05), half_padding=(1.02, 0.99, 1.06))
    assert not agrees and "no measurable difference" in sentence and "not a measurably larger gain" in sentence
    assert compare_no_padding(False, no_padding=(1.01, 0.97, 1.05), half_padding=half)[0]


def test_both_exercises_are_registered_and_the_prediction_takes_true_or_false():
    assert exercise("01-call").check is check_call
    assert exercise("01-predict").choices == (True, False)
