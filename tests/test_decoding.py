"""Decoding at the bandwidth limit: the KV-cache formula against real caches, bytes per token, the static loop, the profiler split."""

from collections import Counter
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache, StaticCache

from coursetools.exercises import STRICT_ENV, check, is_right
from helpers import decoding
from helpers.decoding import (
    OVERHEAD_BOUND_SHARE,
    StaticGreedy,
    bound_share,
    cache_bytes,
    compile_events,
    counted,
    kv_cache_bytes,
    time_split,
    top_kernels,
    unwrap_quantized_weights,
    use_compiler_settings,
    weight_bytes_per_token,
)
from helpers.memory import model_footprint, stored_bytes
from helpers.models import build_synthetic, model_config, pretrained_path
from helpers.timing import decode_step_ms


@pytest.fixture(scope="module")
def smollm2():
    return AutoModelForCausalLM.from_pretrained(pretrained_path("smollm2-135m"), dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tiny():
    return build_synthetic("llama-tiny-shape", AutoModelForCausalLM, torch.float32, "cpu")


@pytest.mark.parametrize(("tokens", "batch"), [(16, 1), (40, 3)])
def test_kv_formula_matches_a_static_cache_the_model_filled(smollm2, tokens, batch):
    cache = StaticCache(config=smollm2.config, max_cache_len=tokens)
    with torch.inference_mode():
        smollm2(input_ids=torch.zeros(batch, 1, dtype=torch.long), past_key_values=cache, use_cache=True)
    assert cache_bytes(cache) == kv_cache_bytes(smollm2.config, tokens, batch, element_bytes=4)


def test_kv_formula_matches_a_dynamic_cache_after_a_prefill(tiny):
    cache = DynamicCache(config=tiny.config)
    with torch.inference_mode():
        tiny(input_ids=torch.randint(0, 100, (2, 23)), past_key_values=cache, use_cache=True)
    assert cache_bytes(cache) == kv_cache_bytes(tiny.config, 23, 2, element_bytes=4)


def test_grouped_query_attention_divides_the_cache_by_the_query_heads_per_kv_head():
    config = model_config("llama3-8b-shape")
    mha = config.__class__.from_dict({**config.to_dict(), "num_key_value_heads": config.num_attention_heads})
    assert kv_cache_bytes(mha, 1024) == 4 * kv_cache_bytes(config, 1024)
    assert kv_cache_bytes(config, 8192, 4) == 32 * 2 * 8 * 128 * 2 * 8192 * 4


def test_a_tied_embedding_is_read_once_as_the_head_and_an_untied_one_not_at_all(smollm2, tiny):
    assert smollm2.config.tie_word_embeddings
    assert weight_bytes_per_token(smollm2) == sum(stored_bytes(p) for p in smollm2.parameters())
    assert not tiny.config.tie_word_embeddings
    embedding = tiny.get_input_embeddings().weight
    assert weight_bytes_per_token(tiny) == model_footprint(tiny) - stored_bytes(embedding) - sum(
        stored_bytes(b) for b in tiny.buffers()
    )


def test_stored_bytes_counts_torchao_packed_weights_not_their_logical_size():
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    layer = torch.nn.Linear(256, 512, bias=False)
    quantize_(layer, Int8WeightOnlyConfig())
    assert type(layer.weight) is not torch.nn.Parameter  # a wrapper tensor subclass
    assert 256 * 512 <= stored_bytes(layer.weight) < 256 * 512 * 1.1  # one byte a weight, plus per-row scales


def test_static_loop_decodes_the_same_tokens_as_generate(smollm2):
    prompt = torch.randint(0, 1000, (1, 12))
    loop = StaticGreedy(smollm2, max_cache_len=24, compile_mode=None)
    expected = smollm2.generate(prompt, max_new_tokens=8, do_sample=False)[:, 12:]
    assert torch.equal(loop(prompt, 8), expected)
    assert torch.equal(loop(prompt, 8), expected)  # the reset cache gives the same tokens again
    with pytest.raises(ValueError, match="max_cache_len"):
        loop(prompt, 13)


def test_step_ms_needs_two_tokens_and_measures_the_extra_ones(tiny):
    with pytest.raises(ValueError, match="at least 2"):
        decode_step_ms(lambda n: None, 1, "cpu")
    loop = StaticGreedy(tiny, max_cache_len=16, compile_mode=None)
    prompt = torch.randint(0, 100, (1, 4))
    assert decode_step_ms(lambda n: loop(prompt, n), 6, "cpu")() > 0


def test_time_split_finds_operator_time_inside_the_wall_time():
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    split = time_split(lambda: [a @ b for _ in range(20)], "cpu")
    assert 0 < split.busy_ms <= split.wall_ms
    assert split.idle_ms == pytest.approx(split.wall_ms - split.busy_ms)
    assert "aten::mm" in top_kernels(lambda: a @ b, "cpu")


def test_top_kernels_lists_the_longest_operator_first_with_its_share():
    small, big = torch.randn(8, 8), torch.randn(512, 512)
    header, _, first, *_ = top_kernels(lambda: (small + small, big @ big), "cpu").splitlines()
    assert header.split()[0] == "operator" and first.startswith("aten::mm")
    assert 50 < float(first.split()[-2]) <= 100  # the product takes most of the profiled time


def test_kv_cache_exercise_hints_at_the_usual_mistakes(capsys, monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)
    config = model_config("llama3-8b-shape")
    right = kv_cache_bytes(config, 8192, 4)
    assert is_right("07", right, config=config, tokens=8192, batch=4)
    assert not is_right("07", right * 4, config=config, tokens=8192, batch=4)
    check("07", right * 4, config=config, tokens=8192, batch=4)
    assert "num_key_value_heads" in capsys.readouterr().out
    assert not is_right("07", right // 2, config=config, tokens=8192, batch=4)
    check("07", right // 2, config=config, tokens=8192, batch=4)
    assert "keys and values" in capsys.readouterr().out


def test_speedup_prediction_exercise_is_the_byte_ratio(capsys, monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)
    nbytes = {"bfloat16": 300, "int4": 100}
    assert is_right("08", 3.0, bytes_per_token=nbytes, base="bfloat16", variant="int4")
    assert not is_right("08", 1 / 3, bytes_per_token=nbytes, base="bfloat16", variant="int4")
    check("08", 1 / 3, bytes_per_token=nbytes, base="bfloat16", variant="int4")
    assert "upside down" in capsys.readouterr().out


def test_bound_share_reads_overhead_bound_below_a_fifth_and_refuses_bad_input():
    share, text = bound_share(10.0, 10**9, 100e9)  # 10 tok/s x 1 GB of a 100 GB/s bound: 10%
    assert share == pytest.approx(0.10) and "overhead-bound" in text
    share, text = bound_share(60.0, 10**9, 100e9)
    assert share == pytest.approx(0.60) and "overhead-bound" not in text
    assert "not a valid" in bound_share(200.0, 10**9, 100e9)[1]
    assert bound_share(0.04, 10**9, 100e9)[1].startswith("0.04% of")  # a small share keeps its digits, not "0.0%"
    assert bound_share(OVERHEAD_BOUND_SHARE * 100, 10**9, 100e9)[1].endswith("bound")
    with pytest.raises(ValueError):
        bound_share(0.0, 10**9, 100e9)



def test_counted_adds_each_calls_compilations_and_returns_the_measurement():
    torch._dynamo.reset()
    found = Counter()
    step = torch.compile(lambda x: x * 2 + 1, dynamic=False)
    first = counted(lambda: step(torch.ones(3)).sum().item(), found)
    assert first() == 9.0 and found["graphs compiled"] == 1
    assert first() == 9.0 and found["graphs compiled"] == 1  # the same shape reuses the graph
    assert counted(lambda: step(torch.ones(4)).sum().item(), found)() == 12.0
    assert found["graphs compiled"] == 2  # a new shape recompiles, and the count says so


def test_compile_events_say_which_graphs_came_from_the_compilers_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # an empty cache: the first compile cannot hit it
    for hits in (0, 1):  # compiled, then (after dynamo forgets the graph) loaded from the cache the first one wrote
        torch._dynamo.reset()
        with compile_events() as found:
            torch.compile(lambda x: x * 3 + 2, dynamic=False)(torch.ones(5))
        assert (found["graphs compiled"], found["of them from the cache"]) == (1, hits)


def test_unwrap_quantized_weights_unwraps_subclass_weights_but_keeps_tensor_parallel_dtensors(tmp_path):
    from torch.distributed.tensor import DTensor, Replicate, distribute_tensor, init_device_mesh
    from torch.testing._internal.two_tensor import TwoTensor

    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        sharded, packed = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
        mesh = init_device_mesh("cpu", (1,))
        sharded.weight = torch.nn.Parameter(distribute_tensor(sharded.weight.detach(), mesh, [Replicate()]))
        packed.weight = torch.nn.Parameter(TwoTensor(packed.weight.detach(), packed.weight.detach().clone()))
        unwrap_quantized_weights(torch.nn.Sequential(sharded, packed))
        assert isinstance(sharded.weight, DTensor) and not torch.nn.utils.parametrize.is_parametrized(sharded)
        assert torch.nn.utils.parametrize.is_parametrized(packed, "weight")  # the subclass weight became plain tensors
    finally:
        torch.distributed.destroy_process_group()


def test_use_compiler_settings_sets_nested_inductor_options_too():
    import torch._inductor.config as inductor_config

    with inductor_config.patch({}):  # restored afterwards: the settings do not leak into other tests
        settings = use_compiler_settings()
        assert inductor_config.triton.unique_kernel_names is False and inductor_config.coordinate_descent_tuning is True
        assert settings == {name: inductor_config.get_config_copy()[name] for name in settings}


def test_runtime_call_patterns_name_each_launch_once_across_cuda_versions():
    import re

    from helpers.decoding import RUNTIME_CALLS

    def kinds(name):
        return [kind for kind, pattern in RUNTIME_CALLS.items() if re.fullmatch(pattern, name)]

    for launch in ("cudaLaunchKernel", "cuLaunchKernelEx", "__cudaLaunchKernel", "cudaLaunchKernel_ptsz"):
        assert kinds(launch) == ["kernels launched outside graphs"], launch
    assert kinds("cudaGraphLaunch") == ["CUDA graph replays"]
    assert kinds("cudaStreamSynchronize") == ["waits for the GPU"]
    assert kinds("aten::mm") == [] and kinds("cudaLaunchKernelOther") == []


class FakeProfile:
    """A stand-in for torch.profiler.profile that returns the given events (GPU branches, tested on a CPU)."""

    def __init__(self, events):
        self.given = events

    def __call__(self, **kwargs):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def events(self):
        return self.given

    def key_averages(self):
        return self.given


def gpu_event(key, us, device=torch.autograd.DeviceType.CUDA, annotation=False):
    """One profiler event as the GPU branches read it."""
    return SimpleNamespace(key=key, count=1, device_type=device, is_user_annotation=annotation,
                           self_device_time_total=us, time_range=SimpleNamespace(elapsed_us=lambda: us))


def test_gpu_kernel_time_counts_each_kernel_once(monkeypatch):
    events = [gpu_event("gemm", 300), gpu_event("Torch-Compiled Region", 300, annotation=True),
              gpu_event("aten::mm", 300, device=torch.autograd.DeviceType.CPU)]  # an operator carries its kernel's time
    monkeypatch.setattr(torch.profiler, "profile", FakeProfile(events))
    monkeypatch.setattr(decoding, "synchronize", lambda device: None)
    assert time_split(lambda: None, "cuda").busy_ms == pytest.approx(0.3)
    header, _, first, *rest = top_kernels(lambda: None, "cuda").splitlines()
    assert header.startswith("kernel") and first.startswith("gemm") and float(first.split()[-2]) == 100 and not rest
