"""Decoders compared: decode speed in interleaved rounds, a weights-by-attention matrix, and which variants lead."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Hashable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch.nn.attention import sdpa_kernel
from transformers import PreTrainedModel

from helpers.attention import BACKENDS, measure_point
from helpers.memory import model_footprint
from helpers.quality import input_device
from helpers.tables import one_of
from helpers.timing import decode_step_ms, generate_run, interleaved, paired_ratio, time_once

__all__ = ["interleaved_decode", "leaders", "measure_matrix"]


Variant = tuple[PreTrainedModel, str, str | None]  # a model, its attention implementation, the one SDPA backend allowed


@dataclass(frozen=True)
class CombinationResult:
    """One weights × attention combination: footprint, prefill peak per context, and per-round timings."""

    footprint_bytes: int
    peak_bytes: dict[int, int | None]
    prefill_ms: dict[int, tuple[float, ...]]
    decode_tokens_per_s: dict[int, tuple[float, ...]]
    error: str = ""


def allowing(model: PreTrainedModel, implementation: str, backend: str | None) -> AbstractContextManager:
    """Switch the model to an attention implementation and return a context allowing only `backend` for SDPA."""
    model.set_attn_implementation(implementation)
    return sdpa_kernel([BACKENDS[one_of("SDPA backend", backend, BACKENDS)]]) if backend else nullcontext()


def decode_round(model: PreTrainedModel, prompt: torch.Tensor, new_tokens: int, **options: Any) -> float:
    """Return the decode speed of one round in tokens/s over all rows: `generate` of `new_tokens` minus that of 1."""
    return prompt.shape[0] * 1e3 / decode_step_ms(generate_run(model, prompt, **options), new_tokens, prompt.device)()


def interleaved_decode(runs: dict[str, tuple[PreTrainedModel, torch.Tensor, dict[str, Any]]], *, new_tokens: int,
                       warmup: int, rounds: int) -> dict[str, list[float]]:
    """Time decode tokens/s of several (model, prompt, generate options) runs, one of each per round, by name."""
    calls = {name: partial(decode_round, model, prompt, new_tokens, **options) for name, (model, prompt, options) in runs.items()}
    with torch.inference_mode():
        if warmup:
            interleaved(calls, warmup)
        return interleaved(calls, rounds)


def measure_matrix(variants: dict[Hashable, Variant], contexts: list[int], *, new_tokens: int, batches: tuple[int, ...],
                   warmup: int, rounds: int) -> dict[Hashable, CombinationResult]:
    """Measure each variant's footprint and prefill peak per context, then its prefill ms and decode tokens/s in rounds."""
    # the peaks once; the timings in interleaved rounds (every variant once a round); a refused kernel is the error
    inputs, peaks, errors = {}, {}, {}
    for key, (model, implementation, backend) in variants.items():
        device = input_device(model)
        vocab = model.config.vocab_size
        ids = {context: torch.randint(0, vocab, (1, context), device=device) for context in contexts}
        prompts = {rows: torch.randint(0, vocab, (rows, contexts[0]), device=device) for rows in batches}
        peaks[key] = {}
        with allowing(model, implementation, backend):
            for context in contexts:
                point = measure_point(partial(model, input_ids=ids[context], logits_to_keep=1), context, device.type, 0, 1)
                if point.error and "out of memory" not in point.error:
                    errors[key] = point.error
                    break
                peaks[key][context] = point.peak_bytes
        inputs[key] = ({c: i for c, i in ids.items() if peaks[key].get(c) is not None}, prompts)
    live = [key for key in variants if key not in errors]
    prefill: dict[Hashable, dict[int, list[float]]] = {key: defaultdict(list) for key in live}
    decode: dict[Hashable, dict[int, list[float]]] = {key: defaultdict(list) for key in live}
    with torch.inference_mode():
        for index in range(warmup + rounds):
            for key in list(live):
                model, implementation, backend = variants[key]
                ids, prompts = inputs[key]
                try:
                    with allowing(model, implementation, backend):
                        times = {c: time_once(partial(model, input_ids=i, logits_to_keep=1), i.device) for c, i in ids.items()}
                        speeds = {rows: decode_round(model, prompt, new_tokens) for rows, prompt in prompts.items()}
                except RuntimeError as err:  # a kernel refused only when generating (e.g. a decode-step shape)
                    errors[key] = str(err).split("\n")[0]
                    live.remove(key)
                    continue
                if index >= warmup:
                    for context, ms in times.items():
                        prefill[key][context].append(ms)
                    for rows, speed in speeds.items():
                        decode[key][rows].append(speed)
    return {key: CombinationResult(model_footprint(variants[key][0]), peaks[key],
                                   {c: tuple(prefill[key][c]) for c in prefill[key]} if key in live else {},
                                   {rows: tuple(decode[key][rows]) for rows in decode[key]} if key in live else {},
                                   errors.get(key, ""))
            for key in variants}


def leaders(per_round: dict[Hashable, Sequence[float]], *, lower_is_better: bool, tolerance: float = 0.0) -> list:
    """Return the best variant by median, then every other one whose per-round ratios' quartiles to it hold 1 (a tie)."""
    # rounds pair up by position (interleaved runs); `tolerance` widens the quartiles, e.g. 0.01 for deterministic memory
    pick = min if lower_is_better else max
    best = pick(per_round, key=lambda key: statistics.median(per_round[key]))
    tied = []
    for key, values in per_round.items():
        _, low, high = paired_ratio(list(values), list(per_round[best]))
        if low * (1 - tolerance) <= 1.0 <= high * (1 + tolerance):
            tied.append(key)
    return [best] + [key for key in tied if key != best]
