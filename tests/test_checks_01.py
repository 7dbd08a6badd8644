import pytest
import torch
from transformers import AutoModel, AutoModelForMaskedLM, BertConfig

from coursetools.checks import exercise
from coursetools.checks.lesson01 import check_answer, check_call, compare_gain
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


def test_a_predicted_gain_inside_the_rounds_agrees_and_one_outside_is_placed_against_them():
    measured, none = (1.64, 1.63, 1.66), (1 / 1.05, 1 / 1.06, 1 / 1.04)
    agrees, sentence = compare_gain(1.6, measured=measured, padding=0.75, no_padding=none)
    assert agrees and "1.64x faster" in sentence and "at most 4x cheaper" in sentence and "41% of that bound" in sentence
    assert "with no padding it was 1.05x slower" in sentence
    agrees, sentence = compare_gain(2.7, measured=measured, padding=0.75, no_padding=none)
    assert not agrees and sentence.endswith("your 2.7 lies above the middle half of the rounds")
    assert compare_gain(1.0, measured=measured, padding=0.75, no_padding=none)[1].endswith("lies below the middle half of the rounds")
    assert compare_gain(1.8, measured=measured, padding=0.75, no_padding=none)[0]  # within 10% of the rounds


def test_the_prediction_takes_a_number_and_a_contradicted_one_does_not_fail_a_strict_run(monkeypatch, capsys):
    from coursetools.exercises import ExerciseError, check

    monkeypatch.setenv("COURSE_EXERCISES_STRICT", "1")
    context = {"measured": (1.64, 1.63, 1.66), "padding": 0.75, "no_padding": (1.0, 0.98, 1.02)}
    check("01-predict", 3.0, **context)
    assert "the measurement says otherwise" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="answer with a number"):
        check("01-predict", True, **context)


def test_both_exercises_are_registered_and_the_prediction_takes_a_number():
    assert exercise("01-call").check is check_call
    assert exercise("01-predict").choices == ()


def test_the_padding_share_of_attention_scores_passes_and_the_token_share_gets_its_hint():
    lengths, padded_to = [57, 20, 10, 3], 57  # scores: 57**2 + 20**2 + 10**2 + 3**2 of 4 * 57**2 are needed
    right = 1 - (57**2 + 20**2 + 10**2 + 3**2) / (4 * 57**2)
    assert check_answer(right, lengths=lengths, padded_to=padded_to) is None
    tokens = 1 - sum(lengths) / (4 * padded_to)  # the share of padded tokens, not of scores
    assert "share of padded tokens" in check_answer(tokens, lengths=lengths, padded_to=padded_to)
    squared = 1 - (1 - tokens) ** 2  # the mean length squared, not the mean of the squares
    assert "padded_to**2 scores" in check_answer(squared, lengths=lengths, padded_to=padded_to)
    assert check_answer(..., lengths=lengths, padded_to=padded_to) is not None
