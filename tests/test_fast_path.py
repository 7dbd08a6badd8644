import pytest
import torch
from transformers import AutoModel, BertConfig, RobertaConfig

from helpers.fast_path import (
    FastPathUnsupportedError,
    agrees_to,
    from_fast_path,
    mean_pooled,
    to_fast_path,
    tolerance,
)
from helpers.models import load_tokenizer, pretrained_path


def random_padded_batch(vocab: int, batch: int = 6, length: int = 24, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, length), generator=generator)
    lengths = torch.randint(2, length + 1, (batch,), generator=generator)
    lengths[0] = length  # at least one full row, so the padded width is the batch's longest
    mask = (torch.arange(length) < lengths[:, None]).long()
    return ids * mask, mask


def tiny(config_class, **overrides):
    shape = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}
    config = config_class(**shape | {"vocab_size": 500} | overrides)
    torch.manual_seed(0)
    return AutoModel.from_config(config).eval()


@pytest.mark.parametrize("config_class", [BertConfig, RobertaConfig])
def test_conversion_matches_on_random_padding(config_class):
    model = tiny(config_class)
    fast = to_fast_path(model)
    for seed in range(3):
        ids, mask = random_padded_batch(500, seed=seed)
        with torch.inference_mode():
            expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
            got = fast(input_ids=ids, attention_mask=mask).last_hidden_state
        real = mask.bool()
        torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=1e-4)
        assert got[~real].abs().max() == 0  # padding is skipped, not computed


def test_real_minilm_embeddings_match():
    model = AutoModel.from_pretrained(pretrained_path("minilm-l6"), attn_implementation="eager", dtype=torch.float32)
    tokenizer = load_tokenizer("minilm-l6")
    fast = to_fast_path(model)
    assert fast.encoder.use_nested_tensor and len(fast.encoder.layers) == model.config.num_hidden_layers
    batch = tokenizer(
        ["A short one.", "A much longer sentence that needs a lot more tokens than the first."],
        padding=True,
        return_tensors="pt",
    )
    with torch.inference_mode():
        expected = mean_pooled(model(**batch).last_hidden_state, batch["attention_mask"])
        got = mean_pooled(fast(**batch).last_hidden_state, batch["attention_mask"])
    assert (expected * got).sum(-1).min() > 0.99999


def test_conversion_keeps_the_dtype_and_each_layer_its_own_weights():
    model = tiny(BertConfig).to(torch.bfloat16)
    fast = to_fast_path(model)
    assert fast.dtype == torch.bfloat16
    first, second = (layer.linear1.weight for layer in fast.encoder.layers)
    assert torch.equal(first, model.encoder.layer[0].intermediate.dense.weight)
    assert torch.equal(second, model.encoder.layer[1].intermediate.dense.weight) and not torch.equal(first, second)


def test_round_trip_saves_and_reloads_identically(tmp_path):
    model = tiny(BertConfig)
    reversed_model = from_fast_path(to_fast_path(model))
    reversed_model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    ids, mask = random_padded_batch(500)
    with torch.inference_mode():
        assert torch.equal(
            reloaded(input_ids=ids, attention_mask=mask).last_hidden_state,
            model(input_ids=ids, attention_mask=mask).last_hidden_state,
        )


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"hidden_act": "gelu_new"}, "activation 'gelu_new'"),
        ({"position_embedding_type": "relative_key"}, "relative position"),
        ({"is_decoder": True}, "decoders"),
    ],
)
def test_unsupported_configs_say_why(overrides, reason):
    with pytest.raises(FastPathUnsupportedError, match=reason):
        to_fast_path(tiny(BertConfig, **overrides))


def test_training_mode_and_head_mask_are_refused():
    model = tiny(BertConfig)
    with pytest.raises(FastPathUnsupportedError, match=r"model.eval\(\)"):
        to_fast_path(model.train())
    fast = to_fast_path(model.eval())
    ids, mask = random_padded_batch(500)
    with pytest.raises(FastPathUnsupportedError, match="head_mask"):
        fast(input_ids=ids, attention_mask=mask, head_mask=torch.ones(2, 4))


def test_an_odd_head_count_is_refused_because_pytorch_would_skip_the_fast_path():
    layer = torch.nn.TransformerEncoderLayer(d_model=64, nhead=1, batch_first=True)
    with pytest.warns(UserWarning, match="num_heads is odd"):  # what the refusal spares: PyTorch's own fallback
        assert not torch.nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=True).use_nested_tensor
    with pytest.raises(FastPathUnsupportedError, match=r"3 attention heads: .*attn_implementation=\"sdpa\""):
        to_fast_path(tiny(BertConfig, hidden_size=48, num_attention_heads=3))


def test_dense_runs_the_same_layers_without_nested_tensors_and_refuses_padding():
    model = tiny(BertConfig)
    fast = to_fast_path(model)
    dense = fast.dense()
    assert not dense.packs and dense.encoder is fast.encoder  # the same layers, called without a padding mask
    ids, _ = random_padded_batch(500)
    full = torch.ones_like(ids)
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=full).last_hidden_state
        torch.testing.assert_close(dense(input_ids=ids, attention_mask=full).last_hidden_state, expected,
                                   atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(dense(input_ids=ids).last_hidden_state, expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(FastPathUnsupportedError, match="batches with no padding"):
        dense(input_ids=ids, attention_mask=random_padded_batch(500)[1])


def test_tolerances_pass_a_correct_difference_and_catch_a_wrong_one():
    scale = 6.0  # about the largest |state| of all-MiniLM-L6-v2
    assert agrees_to(4e-6, scale) == "float32"  # float32 rounding alone
    assert tolerance("float32", scale) < 1e-3 < tolerance("tf32", scale) == tolerance("float16", scale)
    wrong = 2e-2  # a float32 variant that computes products at 10 bits, as TF32 does
    assert wrong > tolerance("float32", scale) and agrees_to(wrong, scale) == "tf32"
    assert agrees_to(0.3, scale) == "bfloat16"  # bfloat16 rounding: beyond 10 bits, within its own 8
    assert agrees_to(3.0, scale) is None  # a regression such as a padded key attended: outside every tolerance
    assert tolerance("float32", 2 * scale) == 2 * tolerance("float32", scale)
