import time

import pytest
import torch
from transformers import AutoModelForCausalLM

from helpers.models import build_synthetic
from helpers.timing import DECODE_RETRIES, Timing, benchmark, benchmark_generation, decode_step_ms


def test_warmup_calls_are_not_timed():
    calls = []

    def slow_first_call():
        time.sleep(0.3 if not calls else 0.005)
        calls.append(1)

    timing = benchmark(slow_first_call, warmup=1, repeats=3)
    assert len(calls) == 4
    assert timing.median < 0.1 * 1e3


def test_benchmark_measures_milliseconds():
    timing = benchmark(lambda: time.sleep(0.02), warmup=0, repeats=3)
    assert 19 <= timing.median <= 60
    assert len(timing.times_ms) == 3


def test_median_and_spread():
    timing = Timing((1.0, 2.0, 3.0, 4.0, 100.0))
    assert timing.median == 3.0
    assert timing.spread == 2.0
    assert Timing((5.0,)).spread == 0.0


def test_repeats_must_be_positive():
    with pytest.raises(ValueError):
        benchmark(lambda: None, repeats=0)


def test_generation_separates_prefill_from_decode():
    model = build_synthetic("llama-tiny-shape", AutoModelForCausalLM, torch.float32, "cpu")
    ids = torch.randint(0, 8000, (2, 32))
    result = benchmark_generation(model, ids, new_tokens=8, warmup=1, repeats=2)
    assert result.prefill.median > 0 and len(result.decode.times_ms) == 2 and result.decode.median > 0
    assert result.batch == 2
    assert result.decode_tokens_per_s == pytest.approx(1e3 / result.decode.median)
    with pytest.raises(ValueError):
        benchmark_generation(model, ids, new_tokens=1)


def test_interleaved_alternates_and_paired_ratio_spans_the_rounds():
    from helpers.timing import interleaved, paired_ratio

    order = []
    values = interleaved({"a": lambda: order.append("a") or 2.0, "b": lambda: order.append("b") or 1.0}, rounds=3)
    assert order == ["a", "b"] * 3
    assert paired_ratio(values["a"], values["b"]) == (2.0, 2.0, 2.0)
    assert paired_ratio([2.0, 3.0, 4.0], [1.0, 1.0, 1.0]) == (3.0, 2.5, 3.5)


def test_spread_is_median_and_quartiles_so_one_slow_round_barely_moves_it():
    from helpers.timing import spread

    assert spread([3.0, 1.0, 10.0, 2.0]) == (2.5, 1.75, 4.75)
    assert spread([1.0, 2.0, 3.0, 4.0, 100.0]) == (3.0, 2.0, 4.0)  # min-max would say 1-100
    assert spread([4.0]) == (4.0, 4.0, 4.0)


def test_the_tie_rule_separates_a_real_20_percent_difference_that_min_max_would_call_a_tie():
    from helpers.evaluation import leaders
    from helpers.timing import paired_ratio, verdict

    # lesson 05's case: eager 68.5 and flash 85.5 tok/s, five interleaved rounds with one disturbed round each
    eager, flash = [68.5, 70.1, 66.0, 69.0, 68.0], [85.5, 84.0, 88.2, 86.1, 55.0]
    ratios = [f / e for f, e in zip(flash, eager, strict=True)]
    assert min(ratios) < 1 < max(ratios)  # the old rule, lowest to highest round, called this a tie
    assert verdict(paired_ratio(flash, eager)) == "faster"
    assert leaders({"eager": eager, "flash": flash}, lower_is_better=False) == ["flash"]
    assert verdict(paired_ratio([1.0, 1.02, 0.98, 1.01, 0.99], [1.0, 0.99, 1.01, 1.0, 1.02])) == "tie"
    assert verdict(paired_ratio([1.0] * 5, [1.2] * 5)) == "slower"  # a wrong (unequal) pair never reads as a tie


def test_decode_step_ms_times_a_round_again_when_the_short_run_took_longer_and_gives_up_after_its_retries():
    waits = iter([0.05])  # the first one-token run stalls; later ones take no time

    def run(count: int) -> None:
        time.sleep(0.002 * count if count > 1 else next(waits, 0.0))

    assert decode_step_ms(run, 6, "cpu")() > 0  # the stalled round was measured again
    stalled = decode_step_ms(lambda count: time.sleep(0.01 if count == 1 else 0.0), 3, "cpu")
    with pytest.raises(RuntimeError, match=f"not measurable: 3 new tokens took no longer than 1 in {DECODE_RETRIES}"):
        stalled()


def test_compare_flags_a_measurable_ratio_closer_to_1_than_runs_differ_and_no_other():
    from helpers.timing import compare

    within = "smaller than the 10% by which separate runs moved"
    assert within in compare((1.01, 1.005, 1.02)) and within in compare((0.96, 0.95, 0.97))
    assert within not in compare((1.5, 1.3, 1.7)) and within not in compare((0.5, 0.4, 0.6))
    assert within not in compare((1.02, 0.97, 1.08))  # a tie says so already
