"""Inputs for experiments: padded batches with a chosen share of padding, and real sentences from the evaluation text."""

from __future__ import annotations

import numbers
import re

import torch

from helpers.quality import evaluation_text

__all__ = ["padded_batch", "padding_fraction", "sentences"]


def padded_batch(
    vocab_size: int, batch: int, length: int, padding: float, seed: int = 0, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (input_ids, attention_mask) of `batch` rows padded to `length`, about `padding` of the slots being padding."""
    if not 0 <= padding < 1:
        raise ValueError(f"padding {padding!r}: it is the share of padded slots, a fraction in [0, 1) such as 0.5")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, numbers.Integral) or vocab_size < 2:
        raise ValueError(
            f"vocab_size {vocab_size!r}: pass the number of token ids as a whole number of at least 2 (id 0 is "
            "padding), e.g. tokenizer.vocab_size, or model.config.vocab_size for a model without a tokenizer"
        )
    for name, value in (("batch", batch), ("length", length)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} {value!r}: pass a whole number of at least 1")
    vocab_size, batch, length = int(vocab_size), int(batch), int(length)
    real = (1 - padding) * length
    if padding <= 0.5:
        lengths = torch.linspace(length - 2 * (length - real), length, batch)
    else:
        lengths = torch.linspace(1, 2 * real - 1, batch)
    lengths = lengths.round().clamp(1, length).long()
    lengths[-1] = length  # the longest row sets the padded width
    generator = torch.Generator().manual_seed(seed)
    lengths = lengths[torch.randperm(batch, generator=generator)]
    mask = (torch.arange(length) < lengths[:, None]).long()
    lowest = 1000 if vocab_size > 2000 else 1  # clear of the special tokens at low ids, where the vocabulary allows
    ids = torch.randint(lowest, vocab_size, (batch, length), generator=generator) * mask
    return ids.to(device), mask.to(device)


def padding_fraction(attention_mask: torch.Tensor) -> float:
    """Return the share of a batch's slots that are padding."""
    return 1 - attention_mask.float().mean().item()


def sentences(count: int) -> list[str]:
    """Return the first `count` sentences (of ten or more characters) of the evaluation text."""
    found = [s.strip() for s in re.split(r"(?<=[.!?])\s+", evaluation_text()) if len(s.strip()) >= 10]
    return [" ".join(s.split()) for s in found[:count]]
