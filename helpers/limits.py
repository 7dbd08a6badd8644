"""The hardware's limits beside each measurement: memory bandwidth (decode bound) and peak 16-bit matrix FLOP/s."""

from __future__ import annotations

import torch

from helpers.memory import MiB
from helpers.timing import benchmark

__all__ = ["decode_bound_tokens_per_s", "measured_bandwidth", "memory_bandwidth", "peak_flops_16bit"]

# Vendor data sheets: (peak memory bandwidth in bytes/s, dense fp16/bf16 tensor-core FLOP/s without sparsity), keyed by
# torch.cuda.get_device_name() without its vendor prefix ("NVIDIA ", "Tesla "), matched exactly: "L4" must not match
# "L40S", nor "H200" "GH200".
DATA_SHEETS = {
    "H200": (4.8e12, 989e12), "H200 NVL": (4.8e12, 835e12),
    "H100 80GB HBM3": (3.35e12, 989e12), "H100 PCIe": (2.0e12, 756e12), "H100 NVL": (3.9e12, 835e12),
    "A100-SXM4-80GB": (2.039e12, 312e12), "A100-SXM4-40GB": (1.555e12, 312e12),
    "A100 80GB PCIe": (1.935e12, 312e12), "A100-PCIE-40GB": (1.555e12, 312e12),
    "L4": (3.0e11, 121e12), "L40S": (8.64e11, 362e12), "A10G": (6.0e11, 70e12), "A10": (6.0e11, 125e12),
    "T4": (3.2e11, 65e12), "V100-SXM2-16GB": (9.0e11, 125e12), "V100-SXM2-32GB": (9.0e11, 125e12),
    "V100-PCIE-16GB": (9.0e11, 112e12), "V100-PCIE-32GB": (9.0e11, 112e12),
}
BANDWIDTH, FLOPS_16BIT = 0, 1  # positions in a DATA_SHEETS entry
VENDOR_PREFIXES = ("NVIDIA ", "Tesla ")


def _lookup(position: int, device: str | torch.device) -> tuple[str, float] | None:
    """Return (name, figure at position) of the data sheet named exactly like this CUDA device, or None."""
    if torch.device(device).type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    key = next((name[len(prefix) :] for prefix in VENDOR_PREFIXES if name.startswith(prefix)), name)
    return (key, DATA_SHEETS[key][position]) if key in DATA_SHEETS else None


def measured_bandwidth(device: str | torch.device, megabytes: int = 256) -> float:
    """Measure memory bandwidth in bytes/s with a copy far larger than any cache (bytes read plus bytes written)."""
    source = torch.empty(megabytes * MiB, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    timing = benchmark(lambda: target.copy_(source), device=device, warmup=2, repeats=5)
    return 2 * source.numel() / (timing.median / 1e3)


def memory_bandwidth(device: str | torch.device) -> tuple[float, str]:
    """Return (peak bandwidth in bytes/s, where it came from): a data-sheet figure for known GPUs, else measured."""
    found = _lookup(BANDWIDTH, device)
    if found is not None:
        return found[1], f"data sheet of {found[0]}"
    return measured_bandwidth(device), "measured with a large copy"


def decode_bound_tokens_per_s(weight_bytes: int, bandwidth: float) -> float:
    """Return the most tokens/s batch-1 decoding can reach when every token reads all weights once."""
    return bandwidth / weight_bytes


def peak_flops_16bit(device: str | torch.device) -> tuple[float | None, str]:
    """Return (dense fp16/bf16 peak FLOP/s, where it came from), or None where no data-sheet figure is known."""
    found = _lookup(FLOPS_16BIT, device)
    if found is None:
        return None, "no data-sheet figure for this device"
    return found[1], f"data sheet of {found[0]}"
