"""ONNX Runtime for lesson 01: one export into the cache, the same states as PyTorch on other shapes, nothing half-written."""

import pytest
import torch

from helpers.batches import padded_batch
from helpers.fast_path import agreement, hidden_states
from helpers.models import build_synthetic
from helpers.onnx_runtime import OrtEncoder, export_encoder
from helpers.timing import benchmark_interleaved


@pytest.fixture()
def tiny_bert():
    from transformers import AutoModel

    return build_synthetic("bert-tiny-shape", AutoModel, torch.float32, "cpu", attn_implementation="eager")


def test_export_runs_other_shapes_like_pytorch_and_is_written_once(tiny_bert, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    path = export_encoder("bert-tiny-shape", tiny_bert)
    written = path.stat().st_mtime_ns
    assert export_encoder("bert-tiny-shape", tiny_bert) == path and path.stat().st_mtime_ns == written
    assert not [p for p in path.parent.parent.iterdir() if ".partial-" in p.name]
    ids, mask = padded_batch(1000, 3, 17, 0.4)  # not the export's example shape (2 x 8)
    ort = OrtEncoder(path, "cpu")
    assert ort.provider == "CPUExecutionProvider" and ort.device == "cpu"
    result = agreement(hidden_states(ort, ids, mask), hidden_states(tiny_bert, ids, mask), mask)
    assert result["max_abs_diff"] < 1e-4


def test_a_failed_export_leaves_no_file_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    with pytest.raises(Exception):  # noqa: B017  (whatever the exporter raises for a model it cannot call)
        export_encoder("broken", torch.nn.Linear(2, 2))
    assert not (tmp_path / "onnx" / "broken-opset17").exists()
    assert not list((tmp_path / "onnx").glob("*partial*"))


def test_interleaved_benchmark_times_every_call_once_per_round():
    order = []
    timings = benchmark_interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, warmup=1, repeats=3)
    assert order == ["a", "b"] * 4
    assert [len(t.times_ms) for t in timings.values()] == [3, 3]
