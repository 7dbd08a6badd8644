"""Inputs for experiments: padded batches with a chosen share of padding, and real sentences from the evaluation text."""

from __future__ import annotations

import math
import numbers
import re

import torch

from helpers.quality import evaluation_text

__all__ = ["padded_batch", "padding_fraction", "sentences"]


def padded_batch(vocab_size: int, batch: int, length: int, padding: float, seed: int = 0, device: str = "cpu",
                 shortest: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (input_ids, attention_mask) of `batch` rows padded to `length`, about `padding` of the slots being padding."""
    # one row fills the width; the others spread evenly as widest_spread or (with `shortest`) spread_from lays them out
    if not 0 <= padding < 1:
        raise ValueError(f"padding {padding!r}: it is the share of padded slots, a fraction in [0, 1) such as 0.5")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, numbers.Integral) or vocab_size < 2:
        raise ValueError(f"vocab_size {vocab_size!r}: pass the number of token ids as a whole number of at least 2 (id 0 "
                         "is padding), e.g. tokenizer.vocab_size, or model.config.vocab_size for a model without a tokenizer")
    for name, value in (("batch", batch), ("length", length)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} {value!r}: pass a whole number of at least 1")
    vocab_size, batch, length = int(vocab_size), int(batch), int(length)
    lengths = widest_spread(batch, length, padding) if shortest is None else spread_from(batch, length, padding, shortest)
    generator = torch.Generator().manual_seed(seed)
    lengths = lengths[torch.randperm(batch, generator=generator)]
    mask = (torch.arange(length) < lengths[:, None]).long()
    lowest = 1000 if vocab_size > 2000 else 1  # clear of the special tokens at low ids, where the vocabulary allows
    ids = torch.randint(lowest, vocab_size, (batch, length), generator=generator) * mask
    return ids.to(device), mask.to(device)


def widest_spread(batch: int, length: int, padding: float) -> torch.Tensor:
    """Return row lengths spread evenly over the widest range `padding` allows (down to 1 token), the last one full."""
    real = (1 - padding) * length
    if padding <= 0.5:
        lengths = torch.linspace(length - 2 * (length - real), length, batch)
    else:
        lengths = torch.linspace(1, 2 * real - 1, batch)
    lengths = lengths.round().clamp(1, length).long()
    lengths[-1] = length  # the longest row sets the padded width
    return lengths


def spread_from(batch: int, length: int, padding: float, shortest: int) -> torch.Tensor:
    """Return row lengths spread evenly from `shortest` tokens up, the last one full, `padding` of the slots padding."""
    if isinstance(shortest, bool) or not isinstance(shortest, numbers.Integral) or not 1 <= shortest <= length:
        raise ValueError(f"shortest {shortest!r}: pass the shortest row's real tokens, a whole number from 1 to {length}")
    if batch < 2:
        raise ValueError(f"shortest {shortest!r} needs a batch of at least 2 rows: the one row of a batch of 1 is full")
    others = (batch * (1 - padding) * length - length) / (batch - 1)  # the mean the rows besides the full one need
    top = 2 * others - shortest  # an even spread from `shortest` to `top` has that mean
    if not shortest <= others or top > length:
        low, high = max(1, 2 * others - length), others
        reachable = f"between {math.ceil(low)} and {math.floor(high)}" if low <= high else "no value"
        raise ValueError(f"shortest {shortest}: {padding:.0%} padding in a batch of {batch} rows of {length} slots cannot "
                         f"be reached with rows spread evenly from {shortest} tokens up to at most {length} (the other "
                         f"rows must average {others:.1f} tokens); for this padding choose shortest {reachable}, or "
                         "leave it unset")
    lengths = torch.cat([torch.linspace(shortest, top, batch - 1), torch.tensor([float(length)])])
    return lengths.round().clamp(shortest, length).long()


def padding_fraction(attention_mask: torch.Tensor) -> float:
    """Return the share of a batch's slots that are padding."""
    return 1 - attention_mask.float().mean().item()


def sentences(count: int) -> list[str]:
    """Return the first `count` sentences (of ten or more characters) of the evaluation text."""
    found = [s.strip() for s in re.split(r"(?<=[.!?])\s+", evaluation_text()) if len(s.strip()) >= 10]
    return [" ".join(s.split()) for s in found[:count]]
