import pytest
import torch

from helpers.attention import (
    attention_flops,
    default_backend,
    probe_backends,
    refusal_reason,
    run_with_backend,
    sweep_prefill,
    sweep_sequence_lengths,
)
from helpers.models import load_causal_lm


def test_probe_reports_cpu_backends_and_refusals():
    q = torch.randn(1, 2, 32, 64)
    verdicts = probe_backends(q, q, q, is_causal=True)
    assert verdicts["math"].runs
    assert not verdicts["cudnn"].runs and verdicts["cudnn"].reasons  # a refusal always carries a reason
    assert default_backend(q, q, q, is_causal=True) in {name for name, v in verdicts.items() if v.runs}


def test_forced_backend_raises_and_unknown_name_is_rejected():
    q = torch.randn(1, 2, 32, 64)
    with pytest.raises(RuntimeError):
        run_with_backend("cudnn" if not torch.cuda.is_available() else "flash", q, q, q)
    with pytest.raises(ValueError, match="choose from"):
        run_with_backend("turbo", q, q, q)


def test_backends_agree_with_each_other():
    q, k, v = (torch.randn(1, 2, 64, 32) for _ in range(3))
    torch.testing.assert_close(
        run_with_backend("flash", q, k, v, is_causal=True),
        run_with_backend("math", q, k, v, is_causal=True),
        atol=1e-5,
        rtol=1e-4,
    )


def test_attention_flops():
    assert attention_flops(1, 1, 10, 8, causal=False) == 4 * 100 * 8
    assert attention_flops(1, 1, 10, 8, causal=True) == 2 * 100 * 8


def test_sweep_records_time_memory_and_refusals():
    result = sweep_sequence_lengths(
        ["math", "flash", "cudnn"],
        [64, 512],
        batch=1,
        heads=2,
        head_dim=32,
        dtype=torch.float32,
        device="cpu",
        warmup=0,
        repeats=1,
    )
    math_small, math_large = result["math"]
    assert math_large.peak_bytes > math_small.peak_bytes  # the N x N scores grow with seq squared
    assert result["flash"][1].peak_bytes < math_large.peak_bytes
    assert all(p.ms is None and p.error for p in result["cudnn"])


def test_prefill_sweep_on_a_real_shape():
    model, _ = load_causal_lm("llama-tiny-shape", attn_implementation="sdpa")
    result = sweep_prefill(
        {"sdpa": model}, [16, 64], vocab_size=model.config.vocab_size, device="cpu", warmup=0, repeats=1
    )
    assert [p.seq for p in result["sdpa"]] == [16, 64]
    assert all(p.ms > 0 for p in result["sdpa"])


def test_refusal_reason_keeps_the_reason_and_drops_headings():
    heading = "Flash attention kernel not used because: (Triggered internally at /x/sdp_utils.cpp:988.)"
    assert refusal_reason(heading) == ""
    reason = "Expected query, key and value to all be of dtype: {Half, BFloat16}. (Triggered internally at /x/y.h:91.)"
    assert refusal_reason(reason) == "Expected query, key and value to all be of dtype: {Half, BFloat16}."
