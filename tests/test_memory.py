from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch

from helpers import limits, memory
from helpers.limits import decode_bound_tokens_per_s, memory_bandwidth, peak_flops_16bit
from helpers.memory import (
    PeakMemory,
    analytic_size,
    layer_transients,
    memory_in_use,
    model_footprint,
    parameter_count,
    peak_memory,
)


@pytest.mark.parametrize(("dtype", "bytes_per_weight"), [(torch.float32, 4), (torch.float16, 2), (torch.bfloat16, 2)])
def test_footprint_counts_bytes_of_the_dtype(dtype, bytes_per_weight):
    layer = torch.nn.Linear(100, 100).to(dtype)
    assert model_footprint(layer) == (100 * 100 + 100) * bytes_per_weight


def test_footprint_counts_buffers_and_shared_weights_once():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.BatchNorm1d(4))
    shared = torch.nn.ModuleList([model[0], model[0]])
    assert model_footprint(shared) == 10 * 4 * 4
    assert model_footprint(model) == (40 + 8) * 4 + (4 + 4) * 4 + 8  # weights, running stats, counter


@pytest.mark.parametrize("double_quant", [False, True])
def test_four_bit_footprint_and_logical_parameter_count(double_quant):
    layer = bnb.nn.Linear4bit(256, 256, bias=False, quant_type="nf4", compute_dtype=torch.float32)
    weight = torch.randn(256, 256)
    layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4", compress_statistics=double_quant)
    layer = layer.to("cpu")  # moving a Params4bit to a device quantizes it
    assert layer.weight.dtype == torch.uint8
    assert parameter_count(layer) == 256 * 256
    packed, blocks = 256 * 256 // 2, 256 * 256 // 64  # half a byte a weight, one absmax a block of 64
    # plain: fp32 absmax; double quantization: uint8 absmax plus one fp32 scale per 256 of them
    scales = blocks + blocks // 256 * 4 if double_quant else blocks * 4
    assert model_footprint(layer) == packed + scales


def test_analytic_size():
    assert analytic_size(1_000_000, 16) == 2_000_000
    assert analytic_size(1_000_000, 4) == 500_000


def allocate_200_mib() -> torch.Tensor:
    """Allocate 200 MiB, touch every byte, and free it again before returning."""
    block = torch.ones(200 * 2**20 // 4)
    return block.sum()


def saw_200_mib(peak: PeakMemory) -> bool:
    """Whether a measured peak shows the 200 MiB temporary allocation (and not much more)."""
    return 190 * 2**20 <= peak.added < 600 * 2**20


def without_linux_proc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Make /proc/self unreadable to helpers.memory, as on macOS and Windows."""
    monkeypatch.setattr(memory, "STATUS", tmp_path / "no-proc" / "status")
    monkeypatch.setattr(memory, "CLEAR_REFS", tmp_path / "no-proc" / "clear_refs")


def test_cpu_peak_sees_a_temporary_allocation():
    assert saw_200_mib(peak_memory(allocate_200_mib))


def test_cpu_peak_without_proc_samples_and_still_sees_it(monkeypatch, tmp_path):
    without_linux_proc(monkeypatch, tmp_path)
    peak = peak_memory(allocate_200_mib)
    assert peak.kind == "CPU resident set, sampled"
    assert saw_200_mib(peak), peak


def test_cpu_peak_check_fails_on_a_measurement_that_misses_the_allocation(monkeypatch, tmp_path):
    without_linux_proc(monkeypatch, tmp_path)
    monkeypatch.setattr(memory, "_resident_bytes", lambda: 300 * 2**20)  # a reading that never moves
    assert not saw_200_mib(peak_memory(allocate_200_mib))


class Wasteful(torch.nn.Linear):
    """A linear layer that makes and frees a 64 MiB buffer of its own in every call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        buffer = torch.ones(64 * 2**20, dtype=torch.uint8)
        return super().forward(x) + buffer[0]


def test_layer_transients_finds_the_buffer_a_layer_makes_and_frees_not_its_output():
    model = torch.nn.Sequential(torch.nn.Linear(256, 4096), Wasteful(4096, 256))
    x = torch.randn(64, 256)  # the first layer's output is 1 MiB: counted as output, not as a transient
    model(x)  # the first call of a CPU matrix product sets up the library's own memory: a warm-up, as in the lessons
    found = layer_transients(model, lambda: model(x), "cpu")
    assert set(found) == {"0", "1"}
    assert 60 * 2**20 < found["1"] < 70 * 2**20, found
    assert found["0"] < 2**20, found


def test_layer_transients_without_proc_says_so_instead_of_guessing(monkeypatch, tmp_path):
    without_linux_proc(monkeypatch, tmp_path)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8))
    with pytest.raises(OSError):
        layer_transients(model, lambda: model(torch.randn(2, 8)), "cpu")
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks  # the hooks are gone again


def test_memory_in_use_grows_by_a_held_tensor_and_is_none_without_glibc(monkeypatch):
    before = memory_in_use()
    held = torch.ones(64 * 2**20, dtype=torch.uint8)  # 64 MiB, written so that its pages are resident
    grown = memory_in_use() - before
    assert 60 * 2**20 < grown < 72 * 2**20, grown
    del held
    monkeypatch.setattr(memory, "GLIBC", None)
    assert memory_in_use() is None


def test_decode_bound_and_bandwidth():
    assert decode_bound_tokens_per_s(2 * 10**9, 2 * 10**12) == 1000
    bandwidth, source = memory_bandwidth("cpu")
    assert source.startswith("measured")
    assert 1e9 < bandwidth < 1e13


def test_peak_flops_is_unknown_on_cpu():
    assert peak_flops_16bit("cpu") == (None, "no data-sheet figure for this device")


@pytest.mark.parametrize(
    "device_name, key",
    [("NVIDIA H200", "H200"), ("NVIDIA GH200 480GB", None), ("NVIDIA L4", "L4"), ("NVIDIA L40S", "L40S"),
     ("NVIDIA L40", None), ("Tesla T4", "T4"), ("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB"), ("NVIDIA A10", "A10")],
)
def test_data_sheet_figures_match_gpu_names_exactly(monkeypatch, device_name, key):
    monkeypatch.setattr(limits.torch.cuda, "get_device_name", lambda device=None: device_name)
    found = limits._lookup(limits.BANDWIDTH, "cuda")
    assert (found[0] if found else None) == key
