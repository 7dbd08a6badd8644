import pytest
import torch
from transformers import BitsAndBytesConfig

from coursetools.checks.lesson03 import (
    EVERY_WEIGHT_4BIT,
    EXERCISES,
    prediction_problem,
    round_trip_problem,
    variants_problem,
)
from coursetools.exercises import STRICT_ENV, check, is_right


def hint(answer, half=torch.bfloat16):
    return EXERCISES["03-call"].check(answer, half=half)


def nf4(**overrides):
    keywords = dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                    bnb_4bit_use_double_quant=True)
    return BitsAndBytesConfig(**(keywords | overrides))


def test_the_solution_passes_and_dtype_names_count_as_dtypes(monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)
    assert hint(nf4()) is None
    assert hint(nf4(bnb_4bit_compute_dtype="bfloat16")) is None
    assert hint(nf4(bnb_4bit_compute_dtype=torch.float16), half=torch.float16) is None
    check("03-call", nf4(), half=torch.bfloat16)
    assert is_right("03-call", nf4(), half=torch.bfloat16)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"load_in_4bit": True}, "BitsAndBytesConfig"),
        (nf4(load_in_4bit=False, load_in_8bit=True), "lesson 04"),
        (nf4(load_in_4bit=False), "load_in_4bit=True is missing"),
        (nf4(bnb_4bit_quant_type="NF4"), "lower-case"),
        (nf4(bnb_4bit_quant_type="fp4"), "its default"),
        (nf4(bnb_4bit_quant_type="int4"), "'fp4' and 'nf4'"),
        (nf4(bnb_4bit_compute_dtype=None), "torch.float32 (the default"),
        (nf4(bnb_4bit_compute_dtype=torch.float16), "its 16-bit dtype"),
        (nf4(bnb_4bit_use_double_quant=False), "bnb_4bit_use_double_quant=True is missing"),
        (nf4(bnb_4bit_quant_storage=torch.bfloat16), "bnb_4bit_quant_storage"),
        (nf4(llm_int8_skip_modules=[]), "llm_int8_skip_modules"),
    ],
)
def test_each_typical_mistake_gets_its_hint(answer, expected):
    found = hint(answer)
    assert found is not None and expected in found


def test_a_wrong_call_fails_a_strict_run(monkeypatch):
    from coursetools.exercises import ExerciseError

    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(ExerciseError, match="double_quant"):
        check("03-call", nf4(bnb_4bit_use_double_quant=False), half=torch.bfloat16)


def test_a_prediction_near_the_measurement_agrees():
    agrees, sentence = EXERCISES["03-predict"].compare(0.42, measured=0.43, unquantized_share=0.21)
    assert agrees and "0.43" in sentence and "21%" in sentence


def test_the_every_weight_4bit_prediction_is_contradicted_and_told_why():
    agrees, sentence = EXERCISES["03-predict"].compare(EVERY_WEIGHT_4BIT, measured=0.43, unquantized_share=0.21)
    assert not agrees and "every weight quantized" in sentence


def test_a_contradicted_prediction_does_not_fail_a_strict_run_but_a_wrong_form_does(monkeypatch, capsys):
    from coursetools.exercises import ExerciseError

    monkeypatch.setenv(STRICT_ENV, "1")
    check("03-predict", 0.9, measured=0.43, unquantized_share=0.21)
    assert not is_right("03-predict", 0.9, measured=0.43, unquantized_share=0.21)
    assert "the measurement says otherwise" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="a number"):
        check("03-predict", True, measured=0.43, unquantized_share=0.21)


def test_the_round_trip_check_fails_on_a_worse_nf4_or_a_difference_off_a_midpoint():
    assert round_trip_problem({"fp4": 0.018, "nf4": 0.0136}, {"fp4": 0, "nf4": 0}) is None
    assert "not below FP4" in round_trip_problem({"fp4": 0.018, "nf4": 0.02}, {"fp4": 0, "nf4": 0})
    assert "not on a midpoint" in round_trip_problem({"fp4": 0.018, "nf4": 0.0136}, {"fp4": 3, "nf4": 0})


def test_the_variants_check_fails_on_each_wrong_value():
    footprint = {"bfloat16": 256, "fp4": 111, "nf4": 111}
    ppl = {"fp4": 15.8, "nf4": 12.9}
    answers = {"bfloat16": "Paris.", "fp4": "Lyon.", "nf4": "It is Paris."}
    assert variants_problem(footprint, ppl, answers, "bfloat16", ["fp4", "nf4"]) is None  # fp4's answer is not checked
    assert "not below half" in variants_problem(footprint | {"nf4": 128}, ppl, answers, "bfloat16", ["fp4", "nf4"])
    assert "perplexity" in variants_problem(footprint, ppl | {"nf4": 16.0}, answers, "bfloat16", ["fp4", "nf4"])
    assert "nf4" in variants_problem(footprint, ppl, answers | {"nf4": "Lyon."}, "bfloat16", ["fp4", "nf4"])
    assert "bfloat16" in variants_problem(footprint, ppl, answers | {"bfloat16": "Rome."}, "bfloat16", ["fp4", "nf4"])


def test_the_prediction_check_fails_beyond_its_tolerance():
    assert prediction_problem({"nf4": 100}, {"nf4": 100}) is None
    assert prediction_problem({"nf4": 101}, {"nf4": 100}) is None
    assert "nf4" in prediction_problem({"nf4": 102}, {"nf4": 100})
