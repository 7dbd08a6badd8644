"""The placement script of lesson 06: its argument checks, a real run on the CPU, and the results it writes."""

import json
import subprocess
import sys

import pytest

import helpers.multi_gpu
from helpers.models import pretrained_path
from helpers.multi_gpu import (
    explain,
    launch,
    placement_script,
    placements_table,
    pooled_runs,
    run_placements,
    stored_results,
)
from helpers.timing import compare, tally, verdict

script = placement_script()
QUICK = ("--prompt-lens", "16", "32", "--batches", "1", "2", "--new-tokens", "3", "--warmup", "0", "--repeats", "2")


@pytest.fixture(scope="module")
def tiny():
    return str(pretrained_path("llama-tiny-shape"))


def test_placement_rules_say_what_to_do():
    assert script.placement_problem("one-gpu", 1, 0) is None
    assert script.placement_problem("tensor-parallel", 2, 2) is None
    assert "torchrun --nproc-per-node 2" in script.placement_problem("tensor-parallel", 1, 2)
    assert "has 1 GPU" in script.placement_problem("tensor-parallel", 2, 1)
    assert "at least 2 GPUs" in script.placement_problem("pipeline", 1, 1)
    assert "not torchrun" in script.placement_problem("pipeline", 2, 2)


def test_tensor_parallel_without_torchrun_is_a_clear_message_not_a_traceback(tmp_path, tiny):
    done = subprocess.run([sys.executable, "-m", "helpers.parallel_decode", "--model", tiny, "--placement", "tensor-parallel",
                           "--out", str(tmp_path / "x.json")], capture_output=True, text=True)
    assert done.returncode == 2
    assert "launch it with `torchrun --nproc-per-node 2 -m helpers.parallel_decode" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.json").exists()


def test_one_device_and_tensor_parallel_runs_write_comparable_results(tmp_path, tiny):
    results = {}
    for placement in ("one-gpu", "tensor-parallel"):  # tensor parallel runs on two CPU processes (gloo) here
        out = tmp_path / f"{placement}.json"
        done = subprocess.run(launch(placement, tiny, out, options=QUICK), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        results[placement] = json.loads(out.read_text())
    one, tp = results["one-gpu"], results["tensor-parallel"]
    fields = {"placement", "model", "stamp", "world_size", "dtype", "load_s", "memory", "prefill_ms", "decode",
              "greedy_tokens", "allreduce"}
    assert fields <= set(one) and fields <= set(tp)
    assert (one["world_size"], tp["world_size"]) == (1, 2)
    assert list(one["prefill_ms"]) == ["16", "32"] and list(one["decode"]) == ["1", "2"]
    assert all(v["q1"] <= v["median"] <= v["q3"] for v in one["prefill_ms"].values())
    assert one["allreduce"] is None and tp["allreduce"]["per_token"] == 2 * 4  # two per layer, 4 layers
    assert len(one["greedy_tokens"]) == 8 == len(tp["greedy_tokens"])
    assert not list(tmp_path.glob("*.partial"))


def test_stored_two_gpu_results_read_and_explain_consistently():
    stored = stored_results()
    assert "2x " in stored["stamp"] and stored["link"].startswith("NV")
    assert set(stored["placements"]) == {"one-gpu", "pipeline", "tensor-parallel"}
    text = explain(stored["placements"], stored["bandwidth"], stored["link"])
    one, tp = (stored["placements"][p]["decode"]["1"]["median"] for p in ("one-gpu", "tensor-parallel"))
    assert (f"{one / tp:.2f}x slower" in text) == (tp < one) or "no measurable difference" in text
    assert "tensor parallel" in placements_table(stored["placements"])


def test_compare_calls_a_tie_only_when_the_interval_holds_one():
    assert compare((1.02, 0.97, 1.08)).startswith("no measurable difference")
    assert compare((1.5, 1.3, 1.7)).startswith("1.50x faster")
    assert compare((0.5, 0.4, 0.6)).startswith("2.00x slower")


def test_script_is_runnable_on_its_own():
    done = subprocess.run([sys.executable, "-m", "helpers.parallel_decode", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--placement" in done.stdout


def test_pooled_runs_pools_every_pass_timings_and_keeps_the_first_pass_tokens():
    def run(times, tokens):
        summary = {"median": 0, "q1": 0, "q3": 0, "times": times}
        return {"placement": "one-gpu", "greedy_tokens": tokens, "prefill_ms": {"512": summary}, "decode": {"1": summary}}

    merged = pooled_runs([run([1.0, 2.0, 3.0], [5]), run([10.0, 20.0, 30.0], [6])])
    assert merged["passes"] == 2 and merged["greedy_tokens"] == [5]
    assert merged["decode"]["1"]["times"] == [1.0, 2.0, 3.0, 10.0, 20.0, 30.0]
    assert merged["prefill_ms"]["512"]["median"] == 6.5


def summary(median, q1, q3):
    return {"median": median, "q1": q1, "q3": q3, "times": [q1, median, q3]}


def synthetic(placement, prefill, decode, gib=(15.0,)):
    """A placement's result as the script writes it: prefill ms and decode tok/s per key, as (median, q1, q3)."""
    return {"placement": placement, "prefill_ms": {n: summary(*v) for n, v in prefill.items()},
            "decode": {"1": summary(*decode)}, "memory": [{"gpu": i, "allocated_gib": g, "peak_gib": g} for i, g in enumerate(gib)],
            "allreduce": {"per_token": 64, "decode": {"us": 30.0, "bytes": 8192}} if placement == "tensor-parallel" else None}


def multi_gpu_placements(pipe_prefill, tp_prefill):
    one = synthetic("one-gpu", {"512": (20, 19, 21), "2048": (60, 59, 61), "8192": (250, 248, 252)}, (50, 49, 51))
    pipe = synthetic("pipeline", pipe_prefill, (36, 35, 37), (7.0, 8.0))
    tp = synthetic("tensor-parallel", tp_prefill, (30, 29, 31), (8.0, 8.0))
    return {"one-gpu": one, "pipeline": pipe, "tensor-parallel": tp}


def test_multi_gpu_explain_gives_the_pipeline_prefill_verdicts_from_the_quartiles():
    placements = multi_gpu_placements(
        pipe_prefill={"512": (30, 29, 31), "2048": (1, 1, 1), "8192": (251, 240, 260)},  # slower, (not shown), tie
        tp_prefill={"512": (20.5, 19.5, 21.5), "2048": (1, 1, 1), "8192": (125, 124, 126)},  # tie, (not shown), faster
    )
    lines = explain(placements, 4.8e12, "NV18").splitlines()
    said = {line.split(": ")[0]: line.split(": ", 1)[1] for line in lines if "prefill" in line}
    assert list(said) == [f"{p} vs one GPU, prefill of {n} tokens" for p in ("pipeline", "tensor parallel") for n in ("512", "8192")]
    assert said["pipeline vs one GPU, prefill of 512 tokens"].startswith("1.50x slower (interval 1.38-1.63)")
    assert said["pipeline vs one GPU, prefill of 8192 tokens"].startswith("no measurable difference")
    assert said["tensor parallel vs one GPU, prefill of 512 tokens"].startswith("no measurable difference")
    assert said["tensor parallel vs one GPU, prefill of 8192 tokens"].startswith("2.00x faster (interval 1.97-2.03)")
    assert any(line.startswith("pipeline vs one GPU, decode: 1.39x slower") for line in lines)


def test_multi_gpu_explain_says_a_faster_pipeline_prefill_as_measured():
    placements = multi_gpu_placements(
        pipe_prefill={"512": (10, 9.5, 10.5), "2048": (1, 1, 1), "8192": (200, 199, 201)},
        tp_prefill={"512": (20, 19, 21), "2048": (1, 1, 1), "8192": (250, 248, 252)},
    )
    text = explain(placements, 4.8e12, "NV18")
    assert "pipeline vs one GPU, prefill of 512 tokens: 2.00x faster (interval 1.81-2.21)" in text
    assert "pipeline vs one GPU, prefill of 8192 tokens: 1.25x faster" in text


def test_multi_gpu_tally_names_only_the_verdicts_that_occur():
    slower, tie, faster = (0.7, 0.6, 0.8), (1.0, 0.9, 1.1), (1.3, 1.2, 1.4)
    assert [verdict(r) for r in (slower, tie, faster)] == ["slower", "tie", "faster"]
    assert verdict((1.0, 1.0, 1.2)) == "tie"  # an interval that touches 1 holds it, as compare says
    assert tally([slower] * 4) == "all 4 measurably slower"
    assert tally([slower]) == "1 measurably slower"
    assert tally([slower, slower, tie]) == "2 measurably slower, 1 tied (interval spans 1)"
    assert tally([tie, faster]) == "1 tied (interval spans 1), 1 measurably faster"
    assert tally([]) == "none measured"


def test_run_placements_rejects_an_unknown_placement_listing_the_placements(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(helpers.multi_gpu, "run_placement", lambda name, *_: ran.append(name) or {"prefill_ms": {}, "decode": {}})
    run_placements(["one-gpu", "pipeline"], "model", tmp_path)
    assert ran == ["one-gpu", "pipeline", "pipeline", "one-gpu"]
    with pytest.raises(ValueError, match=r"unknown placement 'tp'; choose one of \['one-gpu', 'pipeline', 'tensor-parallel'\]"):
        run_placements(["one-gpu", "tp"], "model", tmp_path)
    assert len(ran) == 4  # rejected before running any
