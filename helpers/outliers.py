"""LLM.int8() made visible: capture what enters each linear layer, find outlier features, and decompose a matmul."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["capture_linear_inputs", "feature_magnitudes", "int8_matmul", "llm_int8_matmul", "outlier_features",
           "quantize_rows", "relative_error"]


@torch.inference_mode()
def capture_linear_inputs(model: nn.Module, input_ids: torch.Tensor,
                          names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """Run the model once and return, per linear layer (all, or those named), its input as a (tokens, features) tensor."""
    wanted = set(names) if names is not None else None
    captured: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and (wanted is None or name in wanted):

            def keep(_module: nn.Module, args: tuple, name: str = name) -> None:
                captured[name] = args[0].detach().reshape(-1, args[0].shape[-1]).float().cpu()

            hooks.append(module.register_forward_pre_hook(keep))
    try:
        model(input_ids=input_ids)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def feature_magnitudes(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return, per layer, the largest |value| each feature dimension reaches over all tokens."""
    return {name: x.abs().amax(dim=0) for name, x in inputs.items()}


def outlier_features(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Return the indices of feature columns where any token's |value| reaches the threshold (LLM.int8()'s rule)."""
    return torch.nonzero(x.abs().amax(dim=0) >= threshold).flatten()


def quantize_rows(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Vector-wise absmax int8: each row scaled so its largest |value| maps to 127; returns (int8 values, row scales)."""
    scale = matrix.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127
    return (matrix / scale).round().clamp(-127, 127).to(torch.int8), scale


def int8_matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Naive absmax int8: x @ weight.T with rows of x and rows of weight in vector-wise int8, accumulated, rescaled."""
    xq, x_scale = quantize_rows(x.float())
    wq, w_scale = quantize_rows(weight.float())
    return (xq.float() @ wq.float().T) * x_scale * w_scale.T  # integer products, exact in float32 at these sizes


def llm_int8_matmul(x: torch.Tensor, weight: torch.Tensor, threshold: float = 6.0, paper_scales: bool = False) -> torch.Tensor:
    """LLM.int8() as bitsandbytes 0.50 runs it: outlier columns of x in 16-bit, the rest in int8, the weight once in int8.

    bitsandbytes leaves the values at the threshold out of each row's scale; the paper (`paper_scales=True`) leaves
    out the whole outlier columns, so a column's values below the threshold set no scale either.
    """
    wq, w_scale = quantize_rows(weight.float())
    columns = x.abs().amax(dim=0) >= threshold  # outlier_features' rule, as a mask
    left_out = columns.expand_as(x) if paper_scales else x.abs() >= threshold
    xq, x_scale = quantize_rows(x.float().masked_fill(left_out, 0))
    xq[:, columns] = 0  # outlier columns leave the int8 product
    dequantized = wq[:, columns].float() * w_scale  # no 16-bit weights kept: the int8 ones, dequantized (as bitsandbytes)
    int8_part = (xq.float() @ wq.float().T) * x_scale * w_scale.T
    return int8_part + x[:, columns].half().float() @ dequantized.half().float().T


def relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """Return ||approx - exact|| / ||exact|| (Frobenius norms)."""
    return ((approx - exact).norm() / exact.norm()).item()
