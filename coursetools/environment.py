"""What this machine is and can do: the report behind each notebook's stamp and `./course doctor`."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import socket
import subprocess
import warnings
from dataclasses import asdict, dataclass, field
from datetime import date

import psutil
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from helpers.models import hub_offline

SDPA_BACKENDS = ("MATH", "EFFICIENT_ATTENTION", "FLASH_ATTENTION", "CUDNN_ATTENTION")
LIBRARIES = ("torch", "transformers", "accelerate", "bitsandbytes", "torchao", "gguf", "numpy")
HUB_HOST = "huggingface.co"
LINK_KINDS = {"NV": "NVLink", "PIX": "PCIe, one switch", "PXB": "PCIe, several switches", "PHB": "PCIe, through the CPU",
              "NODE": "PCIe, across a NUMA node", "SYS": "PCIe, across CPU sockets"}


def library_versions() -> dict[str, str]:
    """Return the installed version of each library the course relies on ("missing" when absent)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    versions["torch"] = torch.__version__
    return versions


def runnable_sdpa_backends(device: str, dtype: torch.dtype) -> list[str]:
    """Return the SDPA backends that really ran a small causal attention call on this device and dtype."""
    q = torch.randn(1, 2, 32, 64, device=device, dtype=dtype)
    ran = []
    for name in SDPA_BACKENDS:
        try:
            with warnings.catch_warnings(), sdpa_kernel([getattr(SDPBackend, name)]):
                warnings.simplefilter("ignore")
                F.scaled_dot_product_attention(q, q, q, is_causal=True)
            ran.append(name)
        except RuntimeError:
            pass
    return ran


def bitsandbytes_status(device: str) -> str:
    """Return "works" when a 4-bit round trip and an int8 matmul run on the device, else the reason they do not."""
    try:
        import bitsandbytes as bnb
        import bitsandbytes.functional as bnbf
    except ImportError as err:
        return f"not installed ({err})"
    try:
        weight = torch.randn(128, 128, device=device, dtype=torch.float16)
        packed, state = bnbf.quantize_4bit(weight, quant_type="nf4")
        error = (bnbf.dequantize_4bit(packed, state) - weight).abs().mean().item()
        layer = bnb.nn.Linear8bitLt(128, 128, has_fp16_weights=False).to(device).eval()
        layer(torch.randn(4, 128, device=device, dtype=torch.float16))
    except Exception as err:  # noqa: BLE001 - any failure here means "not usable", reported verbatim
        return f"fails: {type(err).__name__}: {err}"
    return "works" if error < 0.2 else f"fails: nf4 round-trip error {error:.3f}"


def hub_status() -> str:
    """Return whether the model hub is reachable, without touching the network when HF_HUB_OFFLINE is set."""
    if hub_offline():
        return "offline (HF_HUB_OFFLINE is set)"
    try:
        socket.create_connection((HUB_HOST, 443), timeout=3).close()
    except OSError as err:
        return f"unreachable ({type(err).__name__})"
    return "reachable"


def gpu_link(topology: str | None = None) -> str:
    """Return how GPU 0 and GPU 1 are connected, read from `nvidia-smi topo -m` (e.g. "NV18 (NVLink, 18 links)")."""
    if topology is None:
        if torch.cuda.device_count() < 2:
            return "one GPU or none: no link between GPUs"
        if shutil.which("nvidia-smi") is None:
            return "unknown (nvidia-smi not found)"
        topology = subprocess.run(["nvidia-smi", "topo", "-m"], capture_output=True, text=True, check=False).stdout
    topology = re.sub(r"\x1b\[[0-9;]*m", "", topology)  # nvidia-smi underlines the header with escape codes
    rows = [line.split() for line in topology.splitlines() if line.strip()]
    header = next((i for i, row in enumerate(rows) if row[:2] == ["GPU0", "GPU1"]), None)
    gpu0 = next((row for row in rows[(header or 0) + 1 :] if row[0] == "GPU0"), None)
    if header is None or gpu0 is None:
        return "unknown (nvidia-smi topo -m gave no GPU matrix)"
    entry = gpu0[2]  # the row reads: GPU0, X (itself), then its link to GPU1
    if entry.startswith("NV"):
        return f"{entry} (NVLink, {entry[2:]} links)"
    return f"{entry} ({LINK_KINDS.get(entry, 'see nvidia-smi topo -m')})"


@dataclass
class EnvironmentReport:
    """Hardware and software facts of this machine, as the course needs them."""

    device: str
    device_name: str
    compute_capability: str
    memory_gib: float
    bf16: bool
    gpu_count: int
    cpu_count: int
    sdpa_backends: list[str]
    bitsandbytes: str
    hub: str
    versions: dict[str, str] = field(default_factory=dict)
    gpu_link: str = ""

    def stamp(self, profile: str = "") -> str:
        """Return the one-line stamp a notebook prints first, so stored results say where they came from."""
        hardware = f"{self.device_name} (sm {self.compute_capability})" if self.device == "cuda" else self.device_name
        if self.gpu_count > 1:
            hardware = f"{self.gpu_count}x {hardware}"
        parts = [
            hardware,
            f"{self.memory_gib:.0f} GiB",
            f"torch {self.versions['torch']}",
            f"transformers {self.versions['transformers']}",
            f"bitsandbytes {self.versions['bitsandbytes']}",
            f"torchao {self.versions['torchao']}",
        ]
        if profile:
            parts.append(f"profile {profile}")
        parts.append(date.today().isoformat())
        return " | ".join(parts)

    def as_text(self) -> str:
        """Return the full report, one fact a line, as `doctor` prints it (facts that do not apply here left out)."""
        lines = [f"{key:<20} {value}" for key, value in asdict(self).items() if key != "versions" and value != ""]
        lines += [f"{name:<20} {version}" for name, version in self.versions.items()]
        return "\n".join(lines)


def cpu_memory_gib() -> float:
    """Return the machine's total memory in GiB."""
    return psutil.virtual_memory().total / 2**30  # os.sysconf has no such names on Windows


def environment_report(probe_hub: bool = True) -> EnvironmentReport:
    """Probe this machine: GPU, bf16, which SDPA backends run, whether bitsandbytes works, library versions."""
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        device, name = "cuda", props.name
        capability = f"{props.major}.{props.minor}"
        memory = props.total_memory / 2**30
        bf16 = torch.cuda.is_bf16_supported()
        probe_dtype = torch.float16
    else:
        device, name = "cpu", f"CPU {platform.machine()}, {os.cpu_count()} cores"
        capability, memory, bf16, probe_dtype = "-", cpu_memory_gib(), True, torch.float32
    return EnvironmentReport(
        device=device,
        device_name=name,
        compute_capability=capability,
        memory_gib=round(memory, 1),
        bf16=bf16,
        gpu_count=torch.cuda.device_count(),
        cpu_count=os.cpu_count() or 1,
        sdpa_backends=runnable_sdpa_backends(device, probe_dtype),
        bitsandbytes=bitsandbytes_status(device),
        hub=hub_status() if probe_hub else "not probed",
        versions=library_versions(),
        gpu_link=gpu_link() if torch.cuda.device_count() > 1 else "",
    )
