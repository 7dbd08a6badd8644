"""bitsandbytes quantization made visible: code books, blockwise round trips, footprint tables."""

from __future__ import annotations

from collections import defaultdict

import bitsandbytes as bnb
import bitsandbytes.functional as bnbf
import torch
from transformers.quantizers.base import HfQuantizer
from transformers.quantizers.quantizers_utils import should_convert_module

from helpers.memory import extra_bytes
from helpers.tables import one_of

__all__ = ["bits_per_weight", "bitsandbytes_round_trip", "code_book", "footprint_by_kind", "predicted_footprint",
           "quantize_from_scratch"]

BLOCK = 64  # bitsandbytes' default 4-bit block size
QUANT_TYPES = ("fp4", "nf4")  # bitsandbytes' 4-bit code books
# storage bits per quantized weight, scales included, per scheme; int8 has one fp32 scale per row of thousands of weights
BITS_PER_WEIGHT = {"fp32": 32.0, "bf16": 16.0, "int8": 8.0 + 32 / 4096, "nf4": 4.0 + 32 / BLOCK,
                   "nf4-dq": 4.0 + 8 / BLOCK + 32 / (BLOCK * 256)}


def code_book(quant_type: str) -> torch.Tensor:
    """Return the 16 values a 4-bit code can stand for ("nf4" or "fp4"), sorted, as multiples of the block's absmax."""
    return bnbf.get_4bit_type(one_of("4-bit type", quant_type, QUANT_TYPES), device="cpu").sort().values


def quantize_from_scratch(weight: torch.Tensor, quant_type: str, block: int = BLOCK) -> torch.Tensor:
    """Quantize to 4 bits and back in plain torch: per block, divide by absmax, round to the nearest code, multiply back."""
    code = code_book(quant_type).to(weight.device)
    blocks = weight.float().reshape(-1, block)
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    nearest = ((blocks / absmax).unsqueeze(-1) - code).abs().argmin(dim=-1)
    return (code[nearest] * absmax).reshape(weight.shape)


def bitsandbytes_round_trip(weight: torch.Tensor, quant_type: str, block: int = BLOCK) -> torch.Tensor:
    """Quantize to 4 bits and back with bitsandbytes' own kernels."""
    quant_type = one_of("4-bit type", quant_type, QUANT_TYPES)
    packed, state = bnbf.quantize_4bit(weight.float(), blocksize=block, quant_type=quant_type)
    return bnbf.dequantize_4bit(packed, state)


KINDS = ((bnb.nn.Linear4bit, "4-bit linear"), (bnb.nn.Linear8bitLt, "int8 linear"), (torch.nn.Embedding, "embedding"),
         (torch.nn.Linear, "linear (unquantized)"))  # the first that matches names a module (a 4-bit linear is a Linear)


def module_kind(module: torch.nn.Module) -> str:
    """Name the kind of a leaf module for footprint tables."""
    return next((name for kind, name in KINDS if isinstance(module, kind)), "norms and other")


def footprint_by_kind(model: torch.nn.Module) -> dict[str, int]:
    """Return bytes per module kind (shared weights counted once, where they are first met)."""
    seen: set[int] = set()
    totals: dict[str, int] = defaultdict(int)
    for module in model.modules():
        for tensor in list(module.parameters(recurse=False)) + list(module.buffers(recurse=False)):
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            totals[module_kind(module)] += tensor.numel() * tensor.element_size() + extra_bytes(tensor)
    return dict(totals)


def bits_per_weight(scheme: str) -> float:
    """Return the storage bits per quantized weight, scales included (block 64; double quantization groups 256 scales)."""
    return BITS_PER_WEIGHT[one_of("scheme", scheme, BITS_PER_WEIGHT)]


def quantized_weight_bytes(weight: torch.Tensor, scheme: str) -> int:
    """Return the bytes bitsandbytes stores for one linear weight under "int8", "nf4" or "nf4-dq", scales included."""
    count = weight.numel()
    blocks = -(-count // BLOCK)
    if scheme == "int8":
        return count + 4 * weight.shape[0]  # int8 codes, one float32 scale per output row
    if scheme == "nf4":
        return count // 2 + 4 * blocks  # two codes a byte, one float32 absmax per block
    return count // 2 + blocks + 4 * -(-blocks // 256)  # nf4-dq: absmax as 8-bit codes, a float32 scale per 256


def unconverted_modules(model: torch.nn.Module, skip_modules: list[str] | None = None) -> list[str]:
    """Return the module names transformers' bitsandbytes quantizers leave unconverted, as `from_pretrained` decides them."""
    # skip_modules (llm_int8_skip_modules), given, replaces the default (the output head and weights tied to it); the
    # model's _keep_in_fp32_modules are added either way. Match names with should_convert_module.
    return HfQuantizer.get_modules_to_not_convert(model, skip_modules, getattr(model, "_keep_in_fp32_modules", None))


def predicted_footprint(model: torch.nn.Module, scheme: str, skip_modules: list[str] | None = None) -> dict[str, int]:
    """Return the bytes of a model's weights loaded under a scheme, split into "quantized" and "unquantized"."""
    # the model may be on the meta device. fp32 and bf16 store every parameter at 4 or 2 bytes; int8, nf4 and nf4-dq
    # quantize each nn.Linear outside skip_modules (unconverted_modules) and keep the rest at 2 bytes. Tied weights
    # count once; buffers at their own size.
    one_of("scheme", scheme, BITS_PER_WEIGHT)
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    quantizing = scheme in ("int8", "nf4", "nf4-dq")
    skip = unconverted_modules(model, skip_modules)
    totals = {"quantized": 0, "unquantized": 0}
    for module_name, module in model.named_modules():
        converts = quantizing and type(module) is torch.nn.Linear and should_convert_module(module_name, skip)
        for name, param in module.named_parameters(prefix=module_name, recurse=False):
            if name in tied:
                continue
            if converts and name.endswith("weight"):
                totals["quantized"] += quantized_weight_bytes(param, scheme)
            else:
                totals["unquantized"] += param.numel() * (4 if scheme == "fp32" else 2)
        for buffer in module.buffers(recurse=False):
            totals["unquantized"] += buffer.numel() * buffer.element_size()
    return totals
