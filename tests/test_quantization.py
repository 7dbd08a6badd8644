import pytest
import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from helpers.memory import model_footprint
from helpers.models import empty_model, load_tokenizer, pretrained_path
from helpers.quality import ask, perplexity
from helpers.quantization import (
    bits_per_weight,
    bitsandbytes_round_trip,
    code_book,
    footprint_by_kind,
    predicted_footprint,
    quantize_from_scratch,
)

SCHEME_LIST = r"choose one of \['bf16', 'fp32', 'int8', 'nf4', 'nf4-dq'\]"
FOUR_BIT_LIST = r"unknown 4-bit type 'int4'; choose one of \['fp4', 'nf4'\]"


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


def test_bitsandbytes_config_defaults_are_what_lesson_03_says():
    config = BitsAndBytesConfig(load_in_4bit=True)
    assert config.bnb_4bit_quant_type == "fp4" and config.bnb_4bit_compute_dtype == torch.float32
    assert config.bnb_4bit_use_double_quant is False and config.bnb_4bit_quant_storage == torch.uint8
    assert config.llm_int8_skip_modules is None


def test_bits_per_weight():
    assert bits_per_weight("nf4") == 4.5
    assert 4.12 < bits_per_weight("nf4-dq") < 4.13


def nf4(double_quant: bool = False) -> BitsAndBytesConfig:
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                              bnb_4bit_use_double_quant=double_quant)


@pytest.mark.parametrize(("scheme", "config"), [("bf16", None), ("nf4", nf4()), ("nf4-dq", nf4(double_quant=True))])
def test_predicted_footprint_equals_the_loaded_footprint(scheme, config):
    model = AutoModelForCausalLM.from_pretrained(
        pretrained_path("smollm2-135m"), quantization_config=config, dtype=torch.bfloat16, device_map="cpu"
    )
    assert sum(predicted_footprint(empty_model("smollm2-135m"), scheme).values()) == model_footprint(model)


def test_predicted_footprint_keeps_the_head_unless_told_and_counts_tied_weights_once():
    untied = empty_model("llama3-8b-shape")
    head = untied.lm_head.weight.numel()
    default, quantize_head = predicted_footprint(untied, "nf4"), predicted_footprint(untied, "nf4", skip_modules=[])
    assert default["unquantized"] - quantize_head["unquantized"] == 2 * head
    assert quantize_head["quantized"] - default["quantized"] == head // 2 + 4 * (head // 64)
    tied = empty_model("smollm2-135m")
    embedding = tied.model.embed_tokens.weight.numel()
    norms = sum(p.numel() for n, p in tied.named_parameters() if "norm" in n)
    buffers = sum(b.numel() * b.element_size() for b in tied.buffers())  # rotary inv_freq, float32
    assert predicted_footprint(tied, "nf4")["unquantized"] == 2 * (embedding + norms) + buffers
    with pytest.raises(ValueError, match=SCHEME_LIST):
        predicted_footprint(tied, "int3")


def test_footprint_by_kind_and_report_on_a_quantized_real_model(smollm2):
    model = AutoModelForCausalLM.from_pretrained(
        pretrained_path("smollm2-135m"), quantization_config=nf4(), dtype=torch.bfloat16, device_map="cpu"
    ).eval()
    tokenizer = load_tokenizer("smollm2-135m")
    table = footprint_by_kind(model)
    assert set(table) >= {"4-bit linear", "embedding"}
    embedding = model.get_input_embeddings().weight
    assert table["embedding"] == embedding.numel() * 2  # tied with lm_head: counted once
    answer, ppl = ask(model, tokenizer, "What is the capital of France?"), perplexity(model, tokenizer, max_tokens=128)
    # bitsandbytes 0.50 on a CPU with AVX512-BF16 repacks 4-bit state at the first forward: compare after it
    assert model_footprint(model) == sum(footprint_by_kind(model).values())
    assert "Paris" in answer and 5 < ppl < 60


def test_code_book_rejects_an_unknown_4bit_type_listing_the_types():
    assert len(code_book("fp4")) == 16
    with pytest.raises(ValueError, match=FOUR_BIT_LIST):
        code_book("int4")


def test_quantize_from_scratch_rejects_an_unknown_4bit_type_listing_the_types():
    weight = torch.randn(4, 64)
    assert quantize_from_scratch(weight, "nf4").shape == weight.shape
    with pytest.raises(ValueError, match=FOUR_BIT_LIST):
        quantize_from_scratch(weight, "int4")


def test_bitsandbytes_round_trip_rejects_an_unknown_4bit_type_listing_the_types():
    weight = torch.randn(4, 64)
    assert bitsandbytes_round_trip(weight, "nf4").shape == weight.shape
    with pytest.raises(ValueError, match=FOUR_BIT_LIST):
        bitsandbytes_round_trip(weight, "int4")


def test_bits_per_weight_rejects_an_unknown_scheme_listing_the_schemes():
    assert bits_per_weight("bf16") == 16.0
    with pytest.raises(ValueError, match=SCHEME_LIST):
        bits_per_weight("nf3")
