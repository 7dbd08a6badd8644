"""Lesson 08's exercise checks: the TorchAoConfig for int4 in tinygemm's layout, and the int4-against-16-bit prediction."""

import pytest
from torchao.quantization import Float8WeightOnlyConfig, Int4WeightOnlyConfig, Int8WeightOnlyConfig
from transformers import BitsAndBytesConfig, TorchAoConfig

from coursetools.checks.lesson08 import EXERCISES, check_call, compare_decode
from coursetools.exercises import STRICT_ENV, ExerciseError, check, is_right


def int4(**changes: object) -> Int4WeightOnlyConfig:
    """Return the right Int4WeightOnlyConfig, with some keywords changed."""
    keywords = dict(group_size=32, int4_packing_format="tile_packed_to_4d", set_inductor_config=False)
    return Int4WeightOnlyConfig(**(keywords | changes))


def test_the_right_config_passes_and_the_enum_counts_as_its_name(monkeypatch):
    from torchao.quantization.quantize_.workflows.int4.int4_packing_format import Int4PackingFormat

    monkeypatch.delenv(STRICT_ENV, raising=False)
    assert check_call(TorchAoConfig(int4()), 32) is None
    assert check_call(TorchAoConfig(int4(int4_packing_format=Int4PackingFormat.TILE_PACKED_TO_4D)), 32) is None
    check("08-call", TorchAoConfig(int4()), group_size=32)
    assert is_right("08-call", TorchAoConfig(int4()), group_size=32)


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (int4(), "wrapped, TorchAoConfig(Int4WeightOnlyConfig(...))"),
        (BitsAndBytesConfig(load_in_4bit=True), "bitsandbytes' nf4/fp4"),
        ({"quant_type": "int4_weight_only"}, "not a dict"),
        (TorchAoConfig(Int8WeightOnlyConfig(set_inductor_config=False)), "TorchAoConfig(Int8WeightOnlyConfig(...))"),
        (TorchAoConfig(Float8WeightOnlyConfig()), "Int4WeightOnlyConfig"),
        (TorchAoConfig(int4(group_size=128)), "group_size is 128 (its default)"),
        (TorchAoConfig(int4(group_size=64)), "group_size is 64: one scale and zero point per 32"),
        (TorchAoConfig(int4(group_size=48)), "torchao's int4 groups are (32, 64, 128, 256)"),
        (TorchAoConfig(int4(int4_packing_format="plain")), "mslk kernel package"),
        (TorchAoConfig(int4(int4_packing_format="plain_int32")), "Intel XPUs"),
        (TorchAoConfig(int4(int4_packing_format="tinygemm")), "no format torchao knows"),
        (TorchAoConfig(int4(set_inductor_config=True)), "set_inductor_config=False"),
        (TorchAoConfig(int4(), modules_to_not_convert=["lm_head"]), "leave TorchAoConfig's other keywords out"),
        (TorchAoConfig(int4(), include_input_output_embeddings=True), "leave TorchAoConfig's other keywords out"),
    ],
)
def test_each_typical_mistake_gets_its_hint(answer, hint):
    problem = check_call(answer, 32)
    assert problem is not None and hint in problem


def test_the_default_packing_is_plain_and_gets_the_hint():
    assert str(Int4WeightOnlyConfig().int4_packing_format.value) == "plain"
    problem = check_call(TorchAoConfig(int4(int4_packing_format=Int4WeightOnlyConfig().int4_packing_format)), 32)
    assert problem is not None and "the default" in problem


def test_a_wrong_call_fails_a_strict_run(monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(ExerciseError, match="set_inductor_config"):
        check("08-call", TorchAoConfig(int4(set_inductor_config=True)), group_size=32)


MEASURED = dict(variant="int4", base="bfloat16", shape="llama3-8b-shape", byte_ratio=3.01)


def test_a_prediction_agreeing_and_one_contradicted():
    agrees, sentence = compare_decode(False, (0.7, 0.6, 0.8), **MEASURED)
    assert agrees and "1.43x slower" in sentence and "3.01x fewer bytes" in sentence and "quartiles below 1x" in sentence
    assert "read the fewer bytes more slowly" not in sentence  # no cause named: the lesson reads one only near the bound
    agrees, sentence = compare_decode(False, (1.3, 1.2, 1.4), **MEASURED)
    assert not agrees and "1.30x faster" in sentence and "saved bytes showed as speed" in sentence


def test_a_tie_agrees_with_not_measurably_faster():
    agrees, sentence = compare_decode(False, (0.97, 0.93, 1.04), **MEASURED)
    assert agrees and "no measurable difference" in sentence and "quartiles hold 1x" in sentence
    assert not compare_decode(True, (0.97, 0.93, 1.04), **MEASURED)[0]


def test_a_contradicted_prediction_does_not_fail_a_strict_run_but_a_wrong_form_does(monkeypatch, capsys):
    monkeypatch.setenv(STRICT_ENV, "1")
    check("08-predict", True, ratio=(0.97, 0.93, 1.04), **MEASURED)
    assert not is_right("08-predict", True, ratio=(0.97, 0.93, 1.04), **MEASURED)
    assert "the measurement says otherwise" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="True, False"):
        check("08-predict", "faster", ratio=(0.97, 0.93, 1.04), **MEASURED)
    assert EXERCISES["08-predict"].choices == (True, False)


def test_int4_with_its_head_reading_no_fewer_bytes_than_int4_is_a_problem():
    from coursetools.checks.lesson08 import head_problem

    assert head_problem({"bfloat16": 3000, "int4": 1000, "int4+head": 800}) is None
    problem = head_problem({"int4": 1000, "int4+head": 1000})
    assert problem == "int4+head left the head 16-bit: it reads 1000 bytes per token, int4 1000"
