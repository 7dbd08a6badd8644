import pytest
import torch

from helpers.evaluation import evaluate_decoder
from helpers.models import load_causal_lm
from helpers.quantization import (
    bits_per_weight,
    bitsandbytes_round_trip,
    bnb_config,
    code_book,
    footprint_by_kind,
    quantize_from_scratch,
)


def test_code_books_have_sixteen_values_within_unit_range():
    for kind in ("nf4", "fp4"):
        values = code_book(kind)
        assert values.numel() == 16 and values.min() == -1 and values.max() == 1
        assert torch.all(values[1:] >= values[:-1])


def test_from_scratch_nf4_equals_bitsandbytes():
    weight = torch.randn(64, 128)
    assert torch.equal(quantize_from_scratch(weight, "nf4"), bitsandbytes_round_trip(weight, "nf4"))


def test_nf4_beats_fp4_on_normal_weights():
    weight = torch.randn(256, 256)
    nf4 = (quantize_from_scratch(weight, "nf4") - weight).abs().mean()
    fp4 = (quantize_from_scratch(weight, "fp4") - weight).abs().mean()
    assert nf4 < fp4


def test_configs_set_what_the_defaults_get_wrong():
    config = bnb_config("nf4", torch.bfloat16)
    assert config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_compute_dtype == torch.bfloat16
    assert bnb_config("nf4-dq").bnb_4bit_use_double_quant
    assert bnb_config("int8", llm_int8_threshold=3.0).llm_int8_threshold == 3.0
    with pytest.raises(ValueError, match="choose"):
        bnb_config("int3")


def test_bits_per_weight():
    assert bits_per_weight("nf4") == 4.5
    assert 4.12 < bits_per_weight("nf4-dq") < 4.13


def test_footprint_by_kind_and_report_on_a_quantized_real_model(smollm2):
    model, tokenizer = load_causal_lm("smollm2-135m", dtype=torch.bfloat16, quantization_config=bnb_config("nf4"))
    table = footprint_by_kind(model)
    assert set(table) >= {"4-bit linear", "embedding"}
    embedding = model.get_input_embeddings().weight
    assert table["embedding"] == embedding.numel() * 2  # tied with lm_head: counted once
    report = evaluate_decoder(model, tokenizer, eval_tokens=128, prompt_tokens=16, new_tokens=3, warmup=0, repeats=1)
    # bitsandbytes 0.50 on a CPU repacks 4-bit state at the first forward (the footprint shrinks ~3%): compare after it
    assert report.footprint_bytes == sum(footprint_by_kind(model).values()) <= sum(table.values())
    assert "Paris" in report.answer and 5 < report.perplexity < 60
