import os
import shutil

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, BitsAndBytesConfig

from helpers.cache import atomic_directory
from helpers.memory import model_footprint, parameter_count
from helpers.models import (
    PACKAGED,
    SYNTHETIC,
    UnknownModelError,
    available_models,
    build_synthetic,
    load_tokenizer,
    model_config,
    pretrained_path,
    synthetic_checkpoint,
    weights_in_use,
)
from helpers.quality import ask


def test_unknown_name_lists_what_is_available():
    assert model_config("llama-tiny-shape").hidden_size == 256
    with pytest.raises(ValueError, match="smollm2-135m") as raised:  # UnknownModelError is a ValueError
        pretrained_path("no-such-model")
    assert isinstance(raised.value, UnknownModelError)
    assert all(name in str(raised.value) for name in [*PACKAGED, *SYNTHETIC])


def test_build_synthetic_rejects_a_name_that_is_no_synthetic_model_listing_them():
    assert build_synthetic("bert-tiny-shape", AutoModel, torch.float32, "meta").config.hidden_size == 128
    with pytest.raises(ValueError, match=r"unknown synthetic model 'smollm2-135m'; choose one of \['bert-base-shape', "):
        build_synthetic("smollm2-135m", AutoModel, torch.float32, "meta")


def test_hub_id_offline_gives_actionable_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UnknownModelError, match="HF_HUB_OFFLINE"):
        pretrained_path("facebook/opt-350m-not-cached")


def test_offline_the_packaged_decoder_says_it_is_already_4_bit(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = weights_in_use("smollm2-135m")
    assert "Q4_1" in line and "already been through 4-bit" in line
    assert "random" in weights_in_use("llama-tiny-shape")


def test_available_models_names_every_source():
    text = available_models()
    assert "smollm2-135m" in text and "llama3-8b-shape" in text and "Hub id" in text


def test_packaged_decoder_answers(smollm2):
    model, tokenizer = smollm2
    assert parameter_count(model) == 134_515_008
    assert "Paris" in ask(model, tokenizer, "What is the capital of France?")


@pytest.mark.parametrize(
    ("quant", "bytes_per_linear_weight"), [("nf4", 0.5 + 4 / 64), ("fp4", 0.5 + 4 / 64), ("int8", 1.0)]
)
def test_packaged_decoder_loads_quantized_from_converted_cache(smollm2, quant, bytes_per_linear_weight):
    if quant == "int8":
        config, dtype = BitsAndBytesConfig(load_in_8bit=True), torch.float16
    else:
        config, dtype = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant), torch.float32
    model = AutoModelForCausalLM.from_pretrained(pretrained_path("smollm2-135m"), dtype=dtype, quantization_config=config)
    tokenizer = load_tokenizer("smollm2-135m")
    full = smollm2[0]
    linear = sum(m.weight.numel() for n, m in full.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head")
    other = parameter_count(full) - linear  # embeddings (tied with lm_head) and norms keep the load dtype
    expected = other * torch.finfo(dtype).bits / 8 + linear * bytes_per_linear_weight
    assert model_footprint(model) == pytest.approx(expected, rel=0.02)
    assert parameter_count(model) == parameter_count(full)
    assert "Paris" in ask(model, tokenizer, "What is the capital of France?")


def test_packaged_encoder_loads_with_attention_choice():
    model = AutoModel.from_pretrained(pretrained_path("minilm-l6", AutoModel), attn_implementation="eager")
    tokenizer = load_tokenizer("minilm-l6")
    assert model.config._attn_implementation == "eager"
    out = model(**tokenizer(["hello world"], return_tensors="pt")).last_hidden_state
    assert out.shape == (1, 4, 384)


def test_synthetic_model_has_its_shape():
    model = build_synthetic("llama-tiny-shape", AutoModelForCausalLM, torch.bfloat16, "cpu")
    assert load_tokenizer("llama-tiny-shape") is None
    assert model.dtype == torch.bfloat16
    config = model_config("llama-tiny-shape")
    assert len(model.model.layers) == config.num_hidden_layers
    again = build_synthetic("llama-tiny-shape", AutoModelForCausalLM, torch.bfloat16, "cpu")
    assert torch.equal(model.lm_head.weight, again.lm_head.weight)  # same seed, same weights


def test_synthetic_checkpoint_is_written_once_and_completely(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    path = synthetic_checkpoint("llama-tiny-shape", AutoModelForCausalLM)
    assert (path / "config.json").exists() and (path / "model.safetensors").exists()
    assert not [p for p in path.parent.iterdir() if "partial" in p.name]
    stamp = os.path.getmtime(path / "model.safetensors")
    assert synthetic_checkpoint("llama-tiny-shape", AutoModelForCausalLM) == path
    assert os.path.getmtime(path / "model.safetensors") == stamp
    from_checkpoint = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, device_map={"": "cpu"})
    built = build_synthetic("llama-tiny-shape", AutoModelForCausalLM, torch.bfloat16, "cpu")
    assert torch.equal(from_checkpoint.model.layers[0].mlp.up_proj.weight, built.model.layers[0].mlp.up_proj.weight)


def test_interrupted_write_leaves_nothing(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt), atomic_directory(target) as staging:
        (staging / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_local_folder_without_tokenizer_loads_the_model_and_says_what_is_missing(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(pretrained_path("llama-tiny-shape"), folder)
    model = AutoModelForCausalLM.from_pretrained(pretrained_path(str(folder)))
    with pytest.warns(UserWarning, match="no usable tokenizer"):
        tokenizer = load_tokenizer(str(folder))
    assert tokenizer is None and model.config.hidden_size == 256


def test_an_unwritable_cache_says_which_setting_to_change(monkeypatch, tmp_path):
    from helpers.cache import cache_dir

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("COURSE_CACHE", str(blocker / "cache"))
    with pytest.raises(OSError, match="set COURSE_CACHE to a folder you can write"):
        cache_dir()
