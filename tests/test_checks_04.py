import pytest
import torch
from transformers import BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

from coursetools.checks.lesson04 import EXERCISES, kept_in_16_bit
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


def test_a_prediction_agrees_or_is_contradicted_by_the_per_round_ratios():
    compare = EXERCISES["04-predict"].compare
    slower, faster, tie = (0.28, 0.26, 0.30), (1.3, 1.2, 1.4), (0.98, 0.9, 1.05)
    assert compare(True, ratio=slower)[0] and not compare(False, ratio=slower)[0]
    assert compare(False, ratio=faster)[0] and not compare(True, ratio=faster)[0]
    agrees, sentence = compare(True, ratio=tie)
    assert not agrees and "no measurable difference" in sentence
    assert compare(False, ratio=tie)[0]
    assert "slower" in compare(True, ratio=slower)[1] and "faster" in compare(False, ratio=faster)[1]


def test_a_prediction_of_the_wrong_form_fails_a_strict_run(monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(AssertionError, match="True, False"):
        check("04-predict", "slower", ratio=(0.3, 0.2, 0.4))
    check("04-predict", False, ratio=(0.3, 0.2, 0.4))  # contradicted: a result, not an error
    assert not is_right("04-predict", False, ratio=(0.3, 0.2, 0.4))
