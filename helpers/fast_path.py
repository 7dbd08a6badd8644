"""BERT-family encoders on PyTorch's fused encoder fast path (what BetterTransformer did), and back again."""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

__all__ = ["agreement", "agrees_to", "from_fast_path", "hidden_states", "to_fast_path", "tolerance"]

SUPPORTED_TYPES = ("bert", "roberta")
FAST_PATH_ACTIVATIONS = ("gelu", "relu")
# A correct variant's largest |difference| from float32 HF eager stays within this many epsilons of the precision it
# computes in (tf32: 10 mantissa bits, as float16), times the reference's largest |state|. float32 sums more of its
# small roundings than the half precisions, whose rounded weights dominate: each count sits several times above a
# correct run and far below a regression (tests/test_fast_path.py feeds one).
PRECISION_EPS = {"float32": 2.0**-23, "tf32": 2.0**-10, "float16": 2.0**-10, "bfloat16": 2.0**-7}
TOLERANCE_EPS = {"float32": 128, "tf32": 32, "float16": 32, "bfloat16": 16}


class FastPathUnsupportedError(ValueError):
    """The model or call cannot run on the PyTorch encoder fast path; the message says why."""


def check_convertible(model: PreTrainedModel) -> None:
    """Raise FastPathUnsupportedError naming the first reason this model cannot use the fast path."""
    config = model.config
    if config.model_type not in SUPPORTED_TYPES:
        raise FastPathUnsupportedError(f"model type {config.model_type!r} is not supported; supported: {SUPPORTED_TYPES}")
    if config.hidden_act not in FAST_PATH_ACTIVATIONS:
        raise FastPathUnsupportedError(f"activation {config.hidden_act!r}: the fused encoder layer only has "
                                       f"{FAST_PATH_ACTIVATIONS}")
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        raise FastPathUnsupportedError("relative position embeddings change attention scores; the fast path has none")
    if config.num_attention_heads % 2 == 1:
        raise FastPathUnsupportedError(f"{config.num_attention_heads} attention heads: PyTorch runs an odd head count "
                                       "without its fused layer and without nested tensors ('num_head is odd' in "
                                       'nn.TransformerEncoderLayer), computing the padding; keep this model on '
                                       'attn_implementation="sdpa"')
    if config.is_decoder or getattr(config, "add_cross_attention", False):
        raise FastPathUnsupportedError("decoders and cross-attention are not encoder self-attention")
    if model.training:
        raise FastPathUnsupportedError("the fast path is for inference only: call model.eval() first")


class FastPathEncoder(nn.Module):
    """A BERT-family encoder whose layers run as one fused nn.TransformerEncoder, skipping padding via nested tensors."""

    def __init__(self, model: PreTrainedModel, encoder: nn.TransformerEncoder, packs: bool = True) -> None:
        super().__init__()
        self.config = model.config
        self.embeddings = model.embeddings
        self.pooler = getattr(model, "pooler", None)
        self.encoder = encoder
        self.packs = packs  # False: no padding mask, so no nested tensor (`dense`)
        self.eval()

    def dense(self) -> FastPathEncoder:
        """Return these layers run without a padding mask: PyTorch's fused kernels on the dense batch, for unpadded ones."""
        return FastPathEncoder(self, self.encoder, packs=False)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the encoder weights."""
        return self.encoder.layers[0].linear1.weight.dtype

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
    ) -> BaseModelOutputWithPooling:
        """Encode a padded batch; padded positions of the result are zeros."""
        if head_mask is not None:
            raise FastPathUnsupportedError("head_mask changes attention per head; the fused layer cannot apply it")
        if self.training:
            raise FastPathUnsupportedError("the fast path is for inference only: call .eval() first")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        elif not self.packs and bool((attention_mask == 0).any()):  # one host sync, as transformers' mask code has
            raise FastPathUnsupportedError("dense() runs without a padding mask: give it batches with no padding")
        with torch.inference_mode():
            hidden = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
            # the padding mask (True = padding) is what lets the encoder pack the real tokens into a nested tensor
            hidden = self.encoder(hidden, src_key_padding_mask=attention_mask == 0 if self.packs else None)
            pooled = self.pooler(hidden) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=pooled)


def to_fast_path(model: PreTrainedModel) -> FastPathEncoder:
    """Convert a BERT-family encoder (in eval mode) to the PyTorch fast path; the seed's `to_bettertransformer()`."""
    check_convertible(model)
    config = model.config
    layers = []
    for layer in model.encoder.layer:
        attention = layer.attention
        fused = nn.TransformerEncoderLayer(
            d_model=config.hidden_size,
            nhead=config.num_attention_heads,
            dim_feedforward=config.intermediate_size,
            dropout=0.0,
            activation=config.hidden_act,
            layer_norm_eps=config.layer_norm_eps,
            batch_first=True,
            norm_first=False,
            device=attention.self.query.weight.device,
            dtype=attention.self.query.weight.dtype,
        )
        projections = (attention.self.query, attention.self.key, attention.self.value)
        with torch.no_grad():  # query, key and value become one projection of three times the width
            fused.self_attn.in_proj_weight.copy_(torch.cat([p.weight for p in projections]))
            fused.self_attn.in_proj_bias.copy_(torch.cat([p.bias for p in projections]))
        fused.self_attn.out_proj.load_state_dict(attention.output.dense.state_dict())
        fused.norm1.load_state_dict(attention.output.LayerNorm.state_dict())
        fused.linear1.load_state_dict(layer.intermediate.dense.state_dict())
        fused.linear2.load_state_dict(layer.output.dense.state_dict())
        fused.norm2.load_state_dict(layer.output.LayerNorm.state_dict())
        layers.append(fused)
    encoder = nn.TransformerEncoder(layers[0], num_layers=len(layers), enable_nested_tensor=True)
    encoder.layers = nn.ModuleList(layers)  # the constructor cloned layers[0]; keep each converted layer instead
    return FastPathEncoder(model, encoder)


def from_fast_path(fast: FastPathEncoder) -> PreTrainedModel:
    """Rebuild a plain transformers model with the fast path's exact weights, ready for save_pretrained."""
    model = AutoModel.from_config(fast.config, dtype=fast.dtype, add_pooling_layer=fast.pooler is not None)
    model.embeddings.load_state_dict(fast.embeddings.state_dict())
    if fast.pooler is not None:
        model.pooler.load_state_dict(fast.pooler.state_dict())
    with torch.no_grad():
        for layer, fused in zip(model.encoder.layer, fast.encoder.layers, strict=True):
            attention = layer.attention
            weights = fused.self_attn.in_proj_weight.chunk(3)
            biases = fused.self_attn.in_proj_bias.chunk(3)
            projections = (attention.self.query, attention.self.key, attention.self.value)
            for projection, weight, bias in zip(projections, weights, biases, strict=True):
                projection.weight.copy_(weight)
                projection.bias.copy_(bias)
            attention.output.dense.load_state_dict(fused.self_attn.out_proj.state_dict())
            attention.output.LayerNorm.load_state_dict(fused.norm1.state_dict())
            layer.intermediate.dense.load_state_dict(fused.linear1.state_dict())
            layer.output.dense.load_state_dict(fused.linear2.state_dict())
            layer.output.LayerNorm.load_state_dict(fused.norm2.state_dict())
    return model.to(fast.encoder.layers[0].linear1.weight.device).eval()


def mean_pooled(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Return unit-length sentence embeddings: the mean of each sentence's real-token states."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
    return nn.functional.normalize(summed.float(), dim=-1)


def hidden_states(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Return the last hidden states in float32 with padded positions set to zero, so variants compare directly."""
    with torch.inference_mode():
        states = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return states.float() * attention_mask.unsqueeze(-1)


def agreement(states: torch.Tensor, reference: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, float]:
    """Return the largest absolute difference of real-token states and the lowest cosine of sentence embeddings."""
    real = attention_mask.bool()
    cosine = (mean_pooled(states, attention_mask) * mean_pooled(reference, attention_mask)).sum(-1)
    return {"max_abs_diff": (states[real] - reference[real]).abs().max().item(), "min_cosine": cosine.min().item()}


def tolerance(precision: str, scale: float) -> float:
    """Return the largest absolute difference from float32 eager allowed a variant computing in `precision`, at `scale`."""
    return TOLERANCE_EPS[precision] * PRECISION_EPS[precision] * scale


def agrees_to(difference: float, scale: float) -> str | None:
    """Return the finest precision whose tolerance a difference meets ("float32", "tf32", "bfloat16"), None if none."""
    return next((p for p in ("float32", "tf32", "bfloat16") if difference <= tolerance(p, scale)), None)
