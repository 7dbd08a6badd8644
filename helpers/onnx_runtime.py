"""ONNX Runtime for an encoder: export it once into the course cache, then run it with the providers this machine has."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from helpers.cache import atomic_directory, cache_dir

__all__ = ["OrtEncoder", "export_encoder", "export_once"]

OPSETS = {"dynamo": 18, "torchscript": 17}  # the opset asked of each exporter (18: onnxscript's own, no conversion)


class _Keywords(nn.Module):
    """Call a transformers encoder with input_ids and attention_mask by keyword and return its last hidden state."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_once(name: str, model: nn.Module, exporter: str) -> Path:
    """Export with one exporter ("dynamo" or "torchscript") into the course cache once, written atomically."""
    target = cache_dir() / "onnx" / f"{name}-{exporter}-opset{OPSETS[exporter]}"
    if not target.exists():
        example = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
        axes = {"batch": torch.export.Dim("batch"), "tokens": torch.export.Dim("tokens")}
        names = {"input_names": ["input_ids", "attention_mask"], "output_names": ["last_hidden_state"]}
        if exporter == "dynamo":  # the current exporter: torch.export, then onnxscript; dynamic sizes as Dim objects
            options = {"dynamo": True, "external_data": False, "verbose": False,
                       "dynamic_shapes": {key: {0: axes["batch"], 1: axes["tokens"]} for key in names["input_names"]}}
        else:  # the TorchScript exporter, which torch 2.9+ deprecates: dynamic sizes as named axes
            options = {"dynamo": False, "dynamic_axes": {key: {0: "batch", 1: "tokens"} for key in [*names["input_names"], *names["output_names"]]}}
        quiet = logging.getLogger("torch.onnx")  # the dynamo exporter logs each torchvision op it skips
        level = quiet.level
        with atomic_directory(target) as staging, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            # the tracer notes each Python condition on a shape; the lesson runs other shapes to check dynamic axes
            warnings.simplefilter("ignore")
            quiet.setLevel(logging.ERROR)
            try:
                torch.onnx.export(_Keywords(copy.deepcopy(model).float().cpu()).eval(), example, staging / "model.onnx",
                                  opset_version=OPSETS[exporter], **names, **options)
            finally:
                quiet.setLevel(level)
    return target / "model.onnx"


def export_encoder(name: str, model: nn.Module) -> tuple[Path, str]:
    """Export a float32 transformers encoder to ONNX once (course cache); return the file and which exporter made it.

    The current exporter (`dynamo=True`, which needs onnxscript) first; where it fails, the deprecated TorchScript one,
    and the returned words say why.
    """
    try:
        return export_once(name, model, "dynamo"), f"torch.onnx.export(..., dynamo=True), opset {OPSETS['dynamo']}"
    except Exception as err:  # noqa: BLE001  (whatever stops the current exporter is the reason given)
        reason = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:300]}"
    return export_once(name, model, "torchscript"), (f"the deprecated TorchScript exporter (dynamo=False), opset "
                                                     f"{OPSETS['torchscript']}: dynamo=True failed here with {reason}")


class OrtEncoder:
    """An exported encoder run by ONNX Runtime, called like the transformers model (it returns `last_hidden_state`)."""

    def __init__(self, path: Path, device: str):
        import onnxruntime as ort

        wanted = ["CUDAExecutionProvider"] if device == "cuda" else []
        providers = [p for p in wanted if p in ort.get_available_providers()] + ["CPUExecutionProvider"]
        options = ort.SessionOptions()  # idle threads sleep rather than spin, so the variant timed next gets the CPU
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.provider = self.session.get_providers()[0]

    @property
    def device(self) -> str:
        """Where the session computes: "cuda" on the CUDA execution provider, else "cpu" (also on a GPU machine)."""
        return "cuda" if self.provider == "CUDAExecutionProvider" else "cpu"

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        feeds = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
        (states,) = self.session.run(["last_hidden_state"], feeds)
        return SimpleNamespace(last_hidden_state=torch.from_numpy(states).to(input_ids.device))
