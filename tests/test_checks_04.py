import pytest
import torch
from transformers import BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

from coursetools.checks.lesson04 import EXERCISES, kept_in_16_bit, step_change
from coursetools.exercises import STRICT_ENV, check, is_right


@pytest.fixture(scope="module")
def model():
    """A tiny Llama with tied embeddings like SmolLM2 (3 layers), real transformers modules and names."""
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=64, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def hint(answer, model):
    return EXERCISES["04-call"].check(answer, model=model)


def int8(skip, threshold=6.0):
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=threshold, llm_int8_skip_modules=skip)


def test_the_solution_keeps_lm_head_and_the_last_mlp(model, monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)
    assert hint(int8(["lm_head", "model.layers.2.mlp"]), model) is None
    assert hint(int8(["lm_head", *(f"model.layers.2.mlp.{p}" for p in ("gate_proj", "up_proj", "down_proj"))]), model) is None
    check("04-call", int8(["lm_head", "model.layers.2.mlp"]), model=model)
    assert is_right("04-call", int8(["lm_head", "model.layers.2.mlp"]), model=model)


def test_transformers_default_keeps_only_lm_head(model):
    assert kept_in_16_bit(model, None) == {"lm_head"}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("not a config", "BitsAndBytesConfig"),
        (BitsAndBytesConfig(load_in_4bit=True), "load_in_8bit=True"),
        (int8(["lm_head", "model.layers.2.mlp"], threshold=3.0), "6.0"),
        (int8(None), "default list"),
        (int8(["model.layers.2.mlp"]), "replaces transformers' default list"),
        (int8(["lm_head", "down_proj", "model.layers.2.mlp"]), "['down_proj'] matches them"),
        (int8(["lm_head", "model.layers.2"]), "self_attn"),
        (int8(["lm_head", "layers.2.mlp"]), "matches no linear layer"),
        (int8(["lm_head", "model.layers.3.mlp"]), "matches no linear layer"),
        (int8(["lm_head", "model.layers.2.mlp.down_proj"]), "gate_proj"),
    ],
)
def test_each_typical_mistake_gets_its_hint(model, answer, expected):
    found = hint(answer, model)
    assert found is not None and expected in found, found


def test_a_prediction_agrees_inside_the_recorded_interval_and_says_when_the_step_is_overhead_bound():
    compare = EXERCISES["04-predict"].compare
    ratio = (0.32, 0.30, 0.33)  # int8 / float16 per round; recorded interval 0.30 / 1.1 to 0.33 * 1.1
    agrees, sentence = compare(0.3, ratio=ratio, base_share=0.05, byte_ratio=1.7)
    assert agrees and "0.32x" in sentence and "1.70x" in sentence
    assert "overhead-bound" in sentence and "not the bytes read" in sentence and "quartiles" in sentence
    assert "how fast int8 products run" not in sentence  # an overhead-bound step does not tell the kernels' speed apart
    assert compare(0.36, ratio=ratio, base_share=0.05, byte_ratio=1.7)[0]  # inside the run-to-run margin
    for wrong in (2.0, 1.0, 0.15):  # the bytes-alone guess, "no difference", too low a guess
        assert not compare(wrong, ratio=ratio, base_share=0.05, byte_ratio=1.7)[0], wrong
    near_bound = compare(0.3, ratio=ratio, base_share=0.5, byte_ratio=1.7)[1]
    assert "overhead-bound" not in near_bound and "50%" in near_bound


def test_a_prediction_of_the_wrong_form_fails_a_strict_run(monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(AssertionError, match="number"):
        check("04-predict", True, ratio=(0.3, 0.2, 0.4), base_share=0.05, byte_ratio=1.7)
    check("04-predict", 1.5, ratio=(0.3, 0.2, 0.4), base_share=0.05, byte_ratio=1.7)  # contradicted: a result, not an error
    assert not is_right("04-predict", 1.5, ratio=(0.3, 0.2, 0.4), base_share=0.05, byte_ratio=1.7)


def test_a_step_over_more_rows_reads_less_only_where_the_rounds_quartiles_do_not_overlap():
    # tok/s over all rows, one value a round; a step is rows / (rows/s)
    h100 = {1: {"int8": [16.1, 16.3, 16.4, 16.6, 16.9]}, 16: {"int8": [258.0, 262.0, 264.0, 266.0, 270.0]}}
    change, fewest, most = step_change(h100)["int8"]  # the H100 run's medians (61.0, 60.6 ms), rounds made up around them
    # the old rule compared medians alone and read "less"; the rounds' quartiles overlap: flat
    assert most[0] < fewest[0] and change == "flat"
    assert fewest == pytest.approx((1000 / 16.4, 1000 / 16.6, 1000 / 16.3))
    cheaper = {1: {"float16": [44.0, 45.0, 45.1, 45.5, 46.0]}, 16: {"float16": [1200.0, 1230.0, 1240.0, 1250.0, 1280.0]}}
    assert step_change(cheaper)["float16"][0] == "less"  # 22.2 against 12.9 ms, far beyond the quartiles
    steady = {1: {"float16": [44.0, 45.1, 46.0], "int8": [17.0, 18.0, 19.0]},
              16: {"float16": [590.0, 600.0, 610.0], "int8": [270.0, 280.0, 290.0]}}  # ms: float16 22 then 27, int8 56 then 57
    assert {label: change for label, (change, _, _) in step_change(steady).items()} == {"float16": "more", "int8": "flat"}
