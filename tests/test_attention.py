import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModelForCausalLM

from helpers.attention import (
    allowed_backends,
    attention_flops,
    backends_run,
    default_backend,
    math_score_dtype,
    priority_order,
    probe_backends,
    reasons_by_backend,
    run_with_backend,
    sweep_prefill,
    sweep_sequence_lengths,
)
from helpers.models import pretrained_path

BACKEND_LIST = r"choose one of \['cudnn', 'efficient', 'flash', 'math'\]"


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
    # the math kernel against the default one (a fused kernel on a CPU too): equal up to float32 rounding
    expected = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert torch.allclose(run_with_backend("math", q, q, q), expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="unknown SDPA backend 'turbo'; " + BACKEND_LIST):
        run_with_backend("turbo", q, q, q)


def test_sweep_rejects_an_unknown_backend_listing_the_backends():
    sweep = {"seq_lens": [16], "batch": 1, "heads": 2, "head_dim": 8, "dtype": torch.float32, "device": "cpu",
             "warmup": 0, "repeats": 1}
    assert sweep_sequence_lengths(["math"], **sweep)["math"][0].ms is not None
    with pytest.raises(ValueError, match=BACKEND_LIST):
        sweep_sequence_lengths(["math", "turbo"], **sweep)


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


def tiny_decoder(attn_implementation: str) -> torch.nn.Module:
    """The course's tiny synthetic Llama, loaded the way lesson 02 loads its decoder."""
    return AutoModelForCausalLM.from_pretrained(
        pretrained_path("llama-tiny-shape"), dtype=torch.float32, attn_implementation=attn_implementation
    ).eval()


def test_prefill_sweep_on_a_real_shape():
    model = tiny_decoder("sdpa")
    result = sweep_prefill(
        {"sdpa": model}, [16, 64], vocab_size=model.config.vocab_size, device="cpu", warmup=0, repeats=1
    )
    assert [p.seq for p in result["sdpa"]] == [16, 64]
    assert all(p.ms > 0 for p in result["sdpa"])


def test_interleaved_decode_gives_one_speed_per_round_and_model():
    from helpers.evaluation import interleaved_decode

    ids = torch.randint(0, 100, (1, 8))
    runs = {impl: (tiny_decoder(impl), ids, {}) for impl in ("eager", "sdpa")}
    rounds = interleaved_decode(runs, new_tokens=3, warmup=0, rounds=2)
    assert set(rounds) == {"eager", "sdpa"} and all(len(v) == 2 and min(v) > 0 for v in rounds.values())
    with pytest.raises(ValueError, match="at least 2"):
        interleaved_decode(runs, new_tokens=1, warmup=0, rounds=1)


def test_set_priority_makes_the_list_order_the_priority_and_exit_restores_it():
    before_order, before_allowed = priority_order(), allowed_backends()
    wanted = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.FLASH_ATTENTION]
    with sdpa_kernel(wanted):
        assert allowed_backends() == [n for n in before_order if n in ("efficient", "flash")]  # order not changed
        assert priority_order() == before_order
    with sdpa_kernel(wanted, set_priority=True):
        assert allowed_backends() == ["efficient", "flash"]
        assert priority_order()[:2] == ["efficient", "flash"]
    assert (priority_order(), allowed_backends()) == (before_order, before_allowed)


def test_backends_run_names_the_backend_each_sdpa_call_ran_and_nothing_without_sdpa():
    q = torch.randn(1, 2, 32, 64)
    with sdpa_kernel(SDPBackend.MATH):
        assert backends_run(lambda: run_with_backend("math", q, q, q)) == {"math": 1}
    assert backends_run(lambda: [run_with_backend("flash", q, q, q) for _ in range(3)]) == {"flash": 3}  # the CPU's
    assert backends_run(lambda: q @ q.transpose(-1, -2)) == {}


def test_deprecated_sdp_kernel_still_allows_cudnn():
    with pytest.warns(FutureWarning, match="deprecated"):
        with torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=False, enable_mem_efficient=False):
            assert sorted(allowed_backends()) == ["cudnn", "flash"]


class ScoreDtypes(TorchDispatchMode):
    """Record the dtype of every (…, n, n) tensor an operation returns: the attention scores and weights."""

    def __init__(self, seq: int) -> None:
        super().__init__()
        self.seq, self.dtypes = seq, set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and out.shape[-2:] == (self.seq, self.seq) and out.dim() == 4:
            self.dtypes.add((func.__name__.split(".")[0], out.dtype))
        return out


@pytest.fixture
def half_reduction():
    """Allow half-precision reduction in the math backend for one test, then restore the switch."""
    before = torch.backends.cuda.fp16_bf16_reduction_math_sdp_allowed()
    torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(True)
    yield
    torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(before)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_math_score_dtype_upcasts_half_inputs_and_is_the_dtype_of_the_scores(dtype):
    assert math_score_dtype(dtype) == torch.float32  # the default: half inputs are computed in float32
    q = torch.randn(1, 2, 32, 16, dtype=dtype)
    mode = ScoreDtypes(32)
    with sdpa_kernel([SDPBackend.MATH]), mode:
        torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
    computed = {d for name, d in mode.dtypes if name != "_to_copy"}  # _to_copy: the weights cast back to the inputs'
    assert computed == {math_score_dtype(dtype)}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_math_score_dtype_sees_half_precision_where_half_reduction_is_allowed(dtype, half_reduction):
    assert math_score_dtype(dtype) == dtype


def test_each_backend_keeps_only_the_reasons_under_its_own_heading():
    where = " (Triggered internally at /x/sdp_utils.cpp:9.)"
    dtype_reason = "Expected query, key and value to all be of dtype: {Half, BFloat16}. Got Query dtype: float."
    messages = [  # the order and wording of torch 2.11's warnings when only flash is allowed, on float32 inputs
        "Memory efficient kernel not used because:" + where,
        "Memory Efficient attention has been runtime disabled." + where,
        "Flash attention kernel not used because:" + where,
        dtype_reason + where,
        "cuDNN attention kernel not used because:" + where,
        "cuDNN attention has been runtime disabled." + where,
    ]
    assert reasons_by_backend(messages) == {
        "efficient": ("Memory Efficient attention has been runtime disabled.",),
        "flash": (dtype_reason,),
        "cudnn": ("cuDNN attention has been runtime disabled.",),
    }
    assert reasons_by_backend(["an unrelated warning" + where]) == {}


def packed_sdpa(query, key, value, starts_q, starts_k, longest_q, longest_k):
    """What varlen_attn computes, on a CPU: each packed sequence on its own through scaled_dot_product_attention."""
    out = torch.empty_like(query)
    for begin, end in zip(starts_q[:-1].tolist(), starts_q[1:].tolist(), strict=True):
        heads_first = (t[begin:end].transpose(0, 1) for t in (query, key, value))
        out[begin:end] = torch.nn.functional.scaled_dot_product_attention(*heads_first).transpose(0, 1)
    return out


def test_unpadded_attention_gives_transformers_the_states_of_sdpa(monkeypatch):
    from transformers import AutoModel, BertConfig

    from helpers.attention import register_unpadded_attention
    from helpers.batches import padded_batch

    monkeypatch.setattr("torch.nn.attention.varlen.varlen_attn", packed_sdpa)  # the flash kernel needs a GPU
    config = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=500)
    torch.manual_seed(0)
    sdpa = AutoModel.from_config(config, attn_implementation="sdpa").eval()
    unpadded = AutoModel.from_config(config, attn_implementation=register_unpadded_attention()).eval()
    unpadded.load_state_dict(sdpa.state_dict())
    assert unpadded.config._attn_implementation == "torch_varlen"
    for ids, mask in (padded_batch(500, 4, 12, 0.5), padded_batch(500, 3, 9, 0.0)):  # with padding, and with none
        with torch.inference_mode():
            expected, got = (m(input_ids=ids, attention_mask=mask).last_hidden_state for m in (sdpa, unpadded))
        torch.testing.assert_close(got[mask.bool()], expected[mask.bool()], atol=1e-5, rtol=1e-4)


def test_what_stops_varlen_attention_is_said_from_a_real_try():
    from coursetools.compat import varlen_unusable

    reason = varlen_unusable("cpu", torch.bfloat16)
    assert reason.startswith("NotImplementedError: Could not run 'aten::_flash_attention_forward'") and "CPU" in reason
