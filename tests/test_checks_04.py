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


def per_round(step_ms: list[float], rows: int) -> list[float]:
    """Turn each round's ms per decode step over `rows` rows into that round's tok/s over all rows."""
    return [1000 * rows / ms for ms in step_ms]


def test_a_step_change_pairs_the_rounds_and_reads_a_steady_16_percent_as_more_time():
    # the GPU run's float16: 17.2 ms a step at batch 1, 20.0 ms at batch 16; rounds made up around them that drift
    # together (both batch sizes in the same rounds), so the unpaired quartiles overlap but each round's ratio is ~1.16
    few_ms = [16.0, 16.5, 17.2, 20.2, 21.0]
    many_ms = [ms * factor for ms, factor in zip(few_ms, [1.15, 1.16, 1.16, 1.17, 1.16], strict=True)]
    change, ratio, fewest, most = step_change({1: {"float16": per_round(few_ms, 1)},
                                               16: {"float16": per_round(many_ms, 16)}})["float16"]
    assert most[1] < fewest[2]  # the old rule, unpaired quartiles overlapping, read this as flat
    assert change == "more" and ratio[0] == pytest.approx(1.16) and ratio[1] > 1
    assert fewest == pytest.approx((17.2, 16.5, 20.2)) and most[0] == pytest.approx(17.2 * 1.16)


@pytest.mark.parametrize(
    ("factors", "expected"),
    [
        ([0.97, 1.02, 1.01, 0.99, 1.04], "flat"),  # the per-round ratios' quartiles hold 1: a tie
        ([0.80, 0.82, 0.85, 0.83, 0.81], "less"),  # each round's step over more rows took less time
        ([1.30, 1.25, 1.28, 1.31, 1.27], "more"),
    ],
)
def test_a_step_change_reads_each_direction_from_the_per_round_ratios(factors, expected):
    few_ms = [22.0, 21.0, 25.0, 23.0, 24.0]
    many_ms = [ms * factor for ms, factor in zip(few_ms, factors, strict=True)]
    rates = {1: {"int8": per_round(few_ms, 1)}, 16: {"int8": per_round(many_ms, 16)}}
    assert step_change(rates)["int8"][0] == expected


def test_a_step_change_reads_each_variant_on_its_own():
    steady = {1: {"float16": per_round([22.0, 22.5, 23.0], 1), "int8": per_round([56.0, 57.0, 58.0], 1)},
              16: {"float16": per_round([27.0, 27.5, 28.0], 16), "int8": per_round([58.0, 56.0, 57.0], 16)}}
    assert {label: change for label, (change, *_) in step_change(steady).items()} == {"float16": "more", "int8": "flat"}
