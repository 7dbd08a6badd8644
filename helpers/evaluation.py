"""One decoder, all the numbers a lesson compares: footprint, perplexity, a greedy answer, prefill and decode speed."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import torch
from torch.nn.attention import sdpa_kernel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from helpers.attention import BACKENDS
from helpers.measure import measure_point
from helpers.memory import MiB, model_footprint
from helpers.quality import ask, input_device, perplexity
from helpers.timing import benchmark_generation

__all__ = ["REPORT_HEADER", "evaluate_decoder", "measure_combination"]


@dataclass(frozen=True)
class DecoderReport:
    """Measured figures of one decoder variant."""

    footprint_bytes: int
    perplexity: float | None
    answer: str
    prefill_ms: float
    decode_tokens_per_s: float

    def row(self, name: str) -> str:
        """Return this report as one aligned text row."""
        ppl = f"{self.perplexity:8.2f}" if self.perplexity is not None else "       -"
        return (
            f"{name:<32}{self.footprint_bytes / MiB:>9.0f}{ppl}{self.prefill_ms:>10.1f}{self.decode_tokens_per_s:>9.1f}"
            f"  {self.answer[:60]!r}"
        )


REPORT_HEADER = f"{'variant':<32}{'MiB':>9}{'ppl':>8}{'prefill':>10}{'tok/s':>9}  answer"


def evaluate_decoder(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | None,
    *,
    eval_tokens: int,
    prompt_tokens: int,
    new_tokens: int,
    warmup: int,
    repeats: int,
    question: str = "What is the capital of France?",
) -> DecoderReport:
    """Measure footprint, perplexity and a greedy answer (real weights only), then prefill ms and decode tokens/s."""
    real = tokenizer is not None
    device = input_device(model)
    prompt = torch.randint(0, model.config.vocab_size, (1, prompt_tokens), device=device)
    speed = benchmark_generation(model, prompt, new_tokens=new_tokens, warmup=warmup, repeats=repeats)
    return DecoderReport(
        footprint_bytes=model_footprint(model),
        perplexity=perplexity(model, tokenizer, max_tokens=eval_tokens) if real else None,
        answer=ask(model, tokenizer, question) if real else "(synthetic weights: no meaningful text)",
        prefill_ms=speed.prefill.median,
        decode_tokens_per_s=speed.decode_tokens_per_s,
    )


@dataclass(frozen=True)
class CombinationResult:
    """One weights × attention combination: footprint, prefill and peak memory per context, decode speeds."""

    footprint_bytes: int
    prefill_ms: dict[int, float | None]
    peak_bytes: dict[int, int | None]
    decode_tokens_per_s: float | None
    batch_tokens_per_s: float | None
    error: str = ""


def measure_combination(
    model: PreTrainedModel,
    backend: str | None,
    contexts: list[int],
    *,
    new_tokens: int,
    batch: int,
    warmup: int,
    repeats: int,
) -> CombinationResult:
    """Measure prefill (time, peak memory) at each context and decode speed at batch 1 and `batch`, with only
    `backend` allowed for SDPA (None: no restriction); a refused kernel is recorded as the error."""
    device = str(input_device(model).type)
    allowed = sdpa_kernel([BACKENDS[backend]]) if backend else nullcontext()
    vocab = model.config.vocab_size
    prefill_ms: dict[int, float | None] = {}
    peak: dict[int, int | None] = {}
    with allowed:
        for context in contexts:
            ids = torch.randint(0, vocab, (1, context), device=input_device(model))
            point = measure_point(partial(model, input_ids=ids, logits_to_keep=1), context, device, warmup, repeats)
            if point.error and "out of memory" not in point.error:
                return CombinationResult(model_footprint(model), {}, {}, None, None, point.error)
            prefill_ms[context], peak[context] = point.ms, point.peak_bytes
        speeds = []
        for rows in (1, batch):
            prompt = torch.randint(0, vocab, (rows, contexts[0]), device=input_device(model))
            speed = benchmark_generation(model, prompt, new_tokens=new_tokens, warmup=warmup, repeats=repeats)
            speeds.append(speed.decode_tokens_per_s * rows)
    return CombinationResult(model_footprint(model), prefill_ms, peak, speeds[0], speeds[1])
