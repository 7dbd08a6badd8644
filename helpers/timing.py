"""Timing done right: warm-up, then repeats timed with CUDA events on a GPU or perf_counter on a CPU; median and spread."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

__all__ = ["ALL_GPUS", "RUN_TO_RUN", "benchmark", "benchmark_generation", "benchmark_interleaved", "compare",
           "decode_step_ms", "generate_run", "interleaved", "paired_ratio", "spread", "tally", "verdict"]


@dataclass(frozen=True)
class Timing:
    """Repeated measurements of one call, in milliseconds."""

    times_ms: tuple[float, ...]

    @property
    def median(self) -> float:
        """Median time in ms."""
        return statistics.median(self.times_ms)

    @property
    def spread(self) -> float:
        """Interquartile range in ms (0 with fewer than two repeats)."""
        if len(self.times_ms) < 2:
            return 0.0
        low, _, high = statistics.quantiles(self.times_ms, n=4, method="inclusive")
        return high - low


RUN_TO_RUN = 0.10  # how far two runs on two machines of one GPU kind moved a headline ratio (7.7%): README "Results"
ALL_GPUS = "gpus"  # a `device` for work spread over every visible GPU: all are synchronized, the wall clock times it


def synchronize(device: str | torch.device) -> None:
    """Wait for queued GPU work on the device (on every GPU for ALL_GPUS); nothing to do on a CPU."""
    if device == ALL_GPUS:
        for index in range(torch.cuda.device_count()):
            torch.cuda.synchronize(index)
    elif torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def benchmark(fn: Callable[[], Any], *, device: str | torch.device = "cpu", warmup: int = 1, repeats: int = 5) -> Timing:
    """Time fn after `warmup` untimed calls: CUDA events on one GPU, else perf_counter (after syncing for ALL_GPUS)."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        synchronize(device)
        times = []
        for _ in range(repeats):
            if device != ALL_GPUS and torch.device(device).type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                begin = time.perf_counter()
                fn()
                synchronize(device)
                times.append((time.perf_counter() - begin) * 1e3)
    return Timing(tuple(times))


def time_once(fn: Callable[[], Any], device: str | torch.device) -> float:
    """Return the time of one call of fn in ms, with no warm-up (the caller warms up, e.g. in untimed rounds)."""
    return benchmark(fn, device=device, warmup=0, repeats=1).times_ms[0]


def benchmark_interleaved(calls: dict[str, Callable[[], Any]], *, device: str | torch.device = "cpu", warmup: int = 1,
                          repeats: int = 5) -> dict[str, Timing]:
    """Time several calls in turn, one of each per round (A, B, A, B, ...) after `warmup` untimed rounds, by name."""
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in calls.values():
                fn()
    rounds = interleaved({name: partial(time_once, fn, device) for name, fn in calls.items()}, repeats)
    return {name: Timing(tuple(times)) for name, times in rounds.items()}


DECODE_RETRIES = 5  # a round whose longer run was not the slower one is timed again (noise on a busy machine)


def decode_step_ms(run: Callable[[int], Any], new_tokens: int, device: str | torch.device) -> Callable[[], float]:
    """Return a measurement of ms per decode step: time run(new_tokens) and run(1); their difference over new_tokens - 1."""
    if new_tokens < 2:
        raise ValueError("new_tokens must be at least 2 to separate decode steps from the prefill")

    def timed(count: int) -> float:
        synchronize(device)
        begin = time.perf_counter()
        run(count)
        synchronize(device)
        return (time.perf_counter() - begin) * 1e3

    def measure() -> float:
        with torch.inference_mode():
            for _ in range(DECODE_RETRIES):
                step = (timed(new_tokens) - timed(1)) / (new_tokens - 1)
                if step > 0:
                    return step
        raise RuntimeError(f"decode time not measurable: {new_tokens} new tokens took no longer than 1 in "
                           f"{DECODE_RETRIES} tries")

    return measure


@dataclass(frozen=True)
class GenerationTiming:
    """Prefill (time to first token) and decode steps of greedy generation."""

    prefill: Timing
    decode: Timing  # ms per decode step, one value a round (decode_step_ms)
    batch: int

    @property
    def decode_tokens_per_s(self) -> float:
        """Decode speed of one sequence in tokens per second (from the median ms of one decode step)."""
        return 1e3 / self.decode.median


def generate_run(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 **generate_options: Any) -> Callable[[int], Any]:
    """Return run(count): greedy `generate` of exactly `count` new tokens from these inputs, as decode_step_ms times it."""
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask

    def run(count: int) -> Any:
        return model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=count, min_new_tokens=count,
                              do_sample=False, pad_token_id=0, **generate_options)

    return run


def benchmark_generation(model: torch.nn.Module, input_ids: torch.Tensor, *, new_tokens: int, warmup: int = 1,
                         repeats: int = 3, attention_mask: torch.Tensor | None = None,
                         device: str | torch.device | None = None, **generate_options: Any) -> GenerationTiming:
    """Time greedy `generate` for 1 token (prefill), then `repeats` decode steps with decode_step_ms, after warm-ups."""
    # `device` is where the timing clock runs: the inputs' device unless given (ALL_GPUS for a model split over GPUs)
    device = device or input_ids.device
    run = generate_run(model, input_ids, attention_mask, **generate_options)
    step = decode_step_ms(run, new_tokens, device)
    prefill = benchmark(partial(run, 1), device=device, warmup=warmup, repeats=repeats)
    for _ in range(warmup):
        step()
    return GenerationTiming(prefill, Timing(tuple(step() for _ in range(repeats))), input_ids.shape[0])


def interleaved(calls: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call each measurement once per round, in turn (A, B, A, B, ...), and return each one's values by name."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    values: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            values[name].append(call())
    return values


def paired_ratio(numerator: list[float], denominator: list[float]) -> tuple[float, float, float]:
    """Return the median and quartiles of per-round ratios numerator/denominator of interleaved rounds."""
    return spread([a / b for a, b in zip(numerator, denominator, strict=True)])


def spread(values: list[float]) -> tuple[float, float, float]:
    """Return the median and the quartiles of values (one per round): the triple `Lesson.record` takes."""
    # the middle half of the rounds: one slow round (a clock change, a page fault) moves it little, unlike min-max
    if len(values) < 2:
        return values[0], values[0], values[0]
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), low, high


def compare(ratio: tuple[float, float, float], faster: str = "faster", slower: str = "slower") -> str:
    """Return how a ratio reads ('N.NNx faster', 'N.NNx slower', 'no measurable difference'), flagging one within RUN_TO_RUN."""
    median, low, high = ratio
    reading = verdict(ratio)
    if reading == "tie":
        return f"no measurable difference ({median:.2f}x, quartiles {low:.2f}-{high:.2f})"
    small = (f"; measurable in this run's rounds, smaller than the {100 * RUN_TO_RUN:.0f}% by which separate runs moved"
             if 1 / (1 + RUN_TO_RUN) < median < 1 + RUN_TO_RUN else "")
    if reading == "faster":
        return f"{median:.2f}x {faster} (quartiles {low:.2f}-{high:.2f}{small})"
    return f"{1 / median:.2f}x {slower} (quartiles {1 / high:.2f}-{1 / low:.2f}{small})"


def verdict(ratio: tuple[float, float, float]) -> str:
    """Return 'faster', 'slower' or 'tie' for a ratio (median, q1, q3), with compare's rule: a tie where it holds 1."""
    _, low, high = ratio
    return "tie" if low <= 1.0 <= high else "faster" if low > 1 else "slower"


def tally(ratios: list[tuple[float, float, float]], faster: str = "faster", slower: str = "slower") -> str:
    """Return how many ratios are measurably faster, slower or tied, naming only counts that are not zero."""
    verdicts = [verdict(r) for r in ratios]
    words = {"slower": f"measurably {slower}", "tie": "tied (quartiles span 1)", "faster": f"measurably {faster}"}
    parts = [f"{verdicts.count(v)} {words[v]}" for v in ("slower", "tie", "faster") if v in verdicts]
    if len(parts) == 1 and len(ratios) > 1:
        return f"all {parts[0]}"
    return ", ".join(parts) or "none measured"
