"""ONNX Runtime for an encoder: export it once into the course cache, then run it with the providers this machine has."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from helpers.cache import atomic_directory, cache_dir

__all__ = ["OrtEncoder", "export_encoder"]

OPSET = 17


class _Keywords(nn.Module):
    """Call a transformers encoder with input_ids and attention_mask by keyword and return its last hidden state."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_encoder(name: str, model: nn.Module) -> Path:
    """Export a float32 transformers encoder to ONNX once (course cache, written atomically) and return the file."""
    target = cache_dir() / "onnx" / f"{name}-opset{OPSET}"
    if not target.exists():
        example = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
        with atomic_directory(target) as staging, warnings.catch_warnings():
            # the tracer notes each Python condition on a shape; the lesson runs other shapes to check dynamic axes
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Keywords(copy.deepcopy(model).float().cpu()).eval(), example, staging / "model.onnx",
                input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                dynamic_axes={name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask", "last_hidden_state")},
                opset_version=OPSET, dynamo=False,  # the TorchScript exporter: the dynamo one needs onnxscript
            )
    return target / "model.onnx"


class OrtEncoder:
    """An exported encoder run by ONNX Runtime, called like the transformers model (it returns `last_hidden_state`)."""

    def __init__(self, path: Path, device: str):
        import onnxruntime as ort

        wanted = ["CUDAExecutionProvider"] if device == "cuda" else []
        providers = [p for p in wanted if p in ort.get_available_providers()] + ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), providers=providers)
        self.provider = self.session.get_providers()[0]

    @property
    def device(self) -> str:
        """Where the session computes: "cuda" on the CUDA execution provider, else "cpu" (also on a GPU machine)."""
        return "cuda" if self.provider == "CUDAExecutionProvider" else "cpu"

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        feeds = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
        (states,) = self.session.run(["last_hidden_state"], feeds)
        return SimpleNamespace(last_hidden_state=torch.from_numpy(states).to(input_ids.device))
