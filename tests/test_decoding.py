"""Decoding at the bandwidth limit: the KV-cache formula against real caches, bytes per token, the static loop, the profiler split."""

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache, StaticCache

from coursetools.exercises import STRICT_ENV, check, is_right
from helpers.decoding import (
    StaticGreedy,
    cache_bytes,
    kv_cache_bytes,
    time_split,
    top_kernels,
    weight_bytes_per_token,
)
from helpers.memory import model_footprint, stored_bytes
from helpers.models import build_synthetic, model_config, pretrained_path
from helpers.timing import decode_step_ms


@pytest.fixture(scope="module")
def smollm2():
    return AutoModelForCausalLM.from_pretrained(pretrained_path("smollm2-135m"), dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tiny():
    return build_synthetic("llama-tiny-shape", AutoModelForCausalLM, torch.float32, "cpu")


@pytest.mark.parametrize(("tokens", "batch"), [(16, 1), (40, 3)])
def test_kv_formula_matches_a_static_cache_the_model_filled(smollm2, tokens, batch):
    cache = StaticCache(config=smollm2.config, max_cache_len=tokens)
    with torch.inference_mode():
        smollm2(input_ids=torch.zeros(batch, 1, dtype=torch.long), past_key_values=cache, use_cache=True)
    assert cache_bytes(cache) == kv_cache_bytes(smollm2.config, tokens, batch, element_bytes=4)


def test_kv_formula_matches_a_dynamic_cache_after_a_prefill(tiny):
    cache = DynamicCache(config=tiny.config)
    with torch.inference_mode():
        tiny(input_ids=torch.randint(0, 100, (2, 23)), past_key_values=cache, use_cache=True)
    assert cache_bytes(cache) == kv_cache_bytes(tiny.config, 23, 2, element_bytes=4)


def test_grouped_query_attention_divides_the_cache_by_the_query_heads_per_kv_head():
    config = model_config("llama3-8b-shape")
    mha = config.__class__.from_dict({**config.to_dict(), "num_key_value_heads": config.num_attention_heads})
    assert kv_cache_bytes(mha, 1024) == 4 * kv_cache_bytes(config, 1024)
    assert kv_cache_bytes(config, 8192, 4) == 32 * 2 * 8 * 128 * 2 * 8192 * 4


def test_a_tied_embedding_is_read_once_as_the_head_and_an_untied_one_not_at_all(smollm2, tiny):
    assert smollm2.config.tie_word_embeddings
    assert weight_bytes_per_token(smollm2) == sum(stored_bytes(p) for p in smollm2.parameters())
    assert not tiny.config.tie_word_embeddings
    embedding = tiny.get_input_embeddings().weight
    assert weight_bytes_per_token(tiny) == model_footprint(tiny) - stored_bytes(embedding) - sum(
        stored_bytes(b) for b in tiny.buffers()
    )


def test_stored_bytes_counts_torchao_packed_weights_not_their_logical_size():
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    layer = torch.nn.Linear(256, 512, bias=False)
    quantize_(layer, Int8WeightOnlyConfig())
    assert type(layer.weight) is not torch.nn.Parameter  # a wrapper tensor subclass
    assert 256 * 512 <= stored_bytes(layer.weight) < 256 * 512 * 1.1  # one byte a weight, plus per-row scales


def test_static_loop_decodes_the_same_tokens_as_generate(smollm2):
    prompt = torch.randint(0, 1000, (1, 12))
    loop = StaticGreedy(smollm2, max_cache_len=24, compile_mode=None)
    expected = smollm2.generate(prompt, max_new_tokens=8, do_sample=False)[:, 12:]
    assert torch.equal(loop(prompt, 8), expected)
    assert torch.equal(loop(prompt, 8), expected)  # the reset cache gives the same tokens again
    with pytest.raises(ValueError, match="max_cache_len"):
        loop(prompt, 13)


def test_step_ms_needs_two_tokens_and_measures_the_extra_ones(tiny):
    with pytest.raises(ValueError, match="at least 2"):
        decode_step_ms(lambda n: None, 1, "cpu")
    loop = StaticGreedy(tiny, max_cache_len=16, compile_mode=None)
    prompt = torch.randint(0, 100, (1, 4))
    assert decode_step_ms(lambda n: loop(prompt, n), 6, "cpu")() > 0


def test_time_split_finds_operator_time_inside_the_wall_time():
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    split = time_split(lambda: [a @ b for _ in range(20)], "cpu")
    assert 0 < split.busy_ms <= split.wall_ms
    assert split.idle_ms == pytest.approx(split.wall_ms - split.busy_ms)
    assert "aten::mm" in top_kernels(lambda: a @ b, "cpu")


def test_kv_cache_exercise_hints_at_the_usual_mistakes(capsys, monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)
    config = model_config("llama3-8b-shape")
    right = kv_cache_bytes(config, 8192, 4)
    assert is_right("07", right, config=config, tokens=8192, batch=4)
    assert not is_right("07", right * 4, config=config, tokens=8192, batch=4)
    check("07", right * 4, config=config, tokens=8192, batch=4)
    assert "num_key_value_heads" in capsys.readouterr().out
    assert not is_right("07", right // 2, config=config, tokens=8192, batch=4)
    check("07", right // 2, config=config, tokens=8192, batch=4)
    assert "keys and values" in capsys.readouterr().out


def test_speedup_prediction_exercise_is_the_byte_ratio(capsys, monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)
    nbytes = {"bfloat16": 300, "int4": 100}
    assert is_right("08", 3.0, bytes_per_token=nbytes, base="bfloat16", variant="int4")
    assert not is_right("08", 1 / 3, bytes_per_token=nbytes, base="bfloat16", variant="int4")
    check("08", 1 / 3, bytes_per_token=nbytes, base="bfloat16", variant="int4")
    assert "upside down" in capsys.readouterr().out
