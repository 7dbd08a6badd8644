import torch

from coursetools.environment import environment_report, hub_status, runnable_sdpa_backends


def test_report_on_this_machine():
    report = environment_report(probe_hub=False)
    assert "MATH" in report.sdpa_backends
    assert report.bitsandbytes == "works"
    assert report.versions["torch"] == torch.__version__
    assert report.device == ("cuda" if torch.cuda.is_available() else "cpu")
    stamp = report.stamp("cpu")
    assert torch.__version__ in stamp and "profile cpu" in stamp
    assert "sdpa_backends" in report.as_text()


def test_cpu_has_no_gpu_only_backends():
    ran = runnable_sdpa_backends("cpu", torch.float32)
    assert "MATH" in ran
    assert "CUDNN_ATTENTION" not in ran and "EFFICIENT_ATTENTION" not in ran


def test_hub_status_offline_does_not_touch_the_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_status().startswith("offline")


def test_doctor_command(capsys):
    from coursetools.__main__ import main

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "stamp:" in out and "bitsandbytes" in out


def test_gpu_link_reads_nvidia_smi_topology_with_escape_codes():
    from coursetools.environment import gpu_link

    topo = "\t\x1b[4mGPU0\tGPU1\tCPU Affinity\x1b[0m\nGPU0\t X \tNV18\t0-31\nGPU1\tNV18\t X \t0-31\n"
    assert gpu_link(topo) == "NV18 (NVLink, 18 links)"
    assert gpu_link(topo.replace("NV18", "PHB")) == "PHB (PCIe, through the CPU)"
    assert gpu_link("no GPUs here").startswith("unknown")
