"""ONNX Runtime for lesson 01: one export into the cache, the same states as PyTorch on other shapes, nothing half-written."""

import importlib.util

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
    path, how = export_encoder("bert-tiny-shape", tiny_bert)
    if importlib.util.find_spec("onnxscript"):  # pinned, so the current exporter runs
        assert how.startswith("torch.onnx.export(..., dynamo=True)") and path.parent.name == "bert-tiny-shape-dynamo-opset18"
    else:  # an environment without it: the deprecated exporter, and why
        assert how.endswith("No module named 'onnxscript'") and path.parent.name == "bert-tiny-shape-torchscript-opset17"
    written = path.stat().st_mtime_ns
    assert export_encoder("bert-tiny-shape", tiny_bert) == (path, how) and path.stat().st_mtime_ns == written
    assert not [p for p in path.parent.parent.iterdir() if ".partial-" in p.name]
    ort = OrtEncoder(path, "cpu")
    assert ort.provider == "CPUExecutionProvider" and ort.device == "cpu"
    for shape in ((3, 17, 0.4), (1, 1, 0.0)):  # not the export's example shape (2 x 8)
        ids, mask = padded_batch(1000, *shape)
        result = agreement(hidden_states(ort, ids, mask), hidden_states(tiny_bert, ids, mask), mask)
        assert result["max_abs_diff"] < 1e-4


def test_where_the_current_exporter_fails_the_torchscript_one_runs_and_the_reason_is_given(tiny_bert, tmp_path,
                                                                                            monkeypatch):
    from helpers import onnx_runtime

    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    export_once = onnx_runtime.export_once

    def without_onnxscript(name, model, exporter):
        if exporter == "dynamo":
            raise ModuleNotFoundError("No module named 'onnxscript'")
        return export_once(name, model, exporter)

    monkeypatch.setattr(onnx_runtime, "export_once", without_onnxscript)
    path, how = export_encoder("bert-tiny-shape", tiny_bert)
    assert path.parent.name == "bert-tiny-shape-torchscript-opset17"
    assert how.endswith("dynamo=True failed here with ModuleNotFoundError: No module named 'onnxscript'")
    ids, mask = padded_batch(1000, 3, 17, 0.4)
    result = agreement(hidden_states(OrtEncoder(path, "cpu"), ids, mask), hidden_states(tiny_bert, ids, mask), mask)
    assert result["max_abs_diff"] < 1e-4


def test_a_failed_export_leaves_no_file_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    with pytest.raises(Exception):  # noqa: B017  (whatever the exporter raises for a model it cannot call)
        export_encoder("broken", torch.nn.Linear(2, 2))
    assert not [p for p in (tmp_path / "onnx").iterdir() if p.name.startswith("broken-")]
    assert not list((tmp_path / "onnx").glob("*partial*"))


def test_interleaved_benchmark_times_every_call_once_per_round():
    order = []
    timings = benchmark_interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, warmup=1, repeats=3)
    assert order == ["a", "b"] * 4
    assert [len(t.times_ms) for t in timings.values()] == [3, 3]
