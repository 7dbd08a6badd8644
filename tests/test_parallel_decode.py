"""The placement script of lesson 06 (its argument checks) and the reading of its results (table, verdicts)."""

import subprocess
import sys

from coursetools.placements import decode_bound, explain, placements_table, stored_results
from helpers import parallel_decode as script
from helpers.models import pretrained_path
from helpers.timing import compare, tally, verdict


def test_placement_rules_say_what_to_do():
    assert script.placement_problem("one-gpu", 1, 0) is None
    assert script.placement_problem("tensor-parallel", 2, 2) is None
    assert "torchrun --nproc-per-node 2" in script.placement_problem("tensor-parallel", 1, 2)
    assert "has 1 GPU" in script.placement_problem("tensor-parallel", 2, 1)
    assert "at least 2 GPUs" in script.placement_problem("pipeline", 1, 1)
    assert "not torchrun" in script.placement_problem("pipeline", 2, 2)


def test_tensor_parallel_without_torchrun_is_a_clear_message_not_a_traceback(tmp_path):
    tiny = str(pretrained_path("llama-tiny-shape"))
    done = subprocess.run([sys.executable, "-m", "helpers.parallel_decode", "--model", tiny, "--placement", "tensor-parallel",
                           "--out", str(tmp_path / "x.json")], capture_output=True, text=True)
    assert done.returncode == 2
    assert "launch it with `torchrun --nproc-per-node 2 -m helpers.parallel_decode" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.json").exists()


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
    assert said["pipeline vs one GPU, prefill of 512 tokens"].startswith("1.50x slower (quartiles 1.38-1.63)")
    assert said["pipeline vs one GPU, prefill of 8192 tokens"].startswith("no measurable difference")
    assert said["tensor parallel vs one GPU, prefill of 512 tokens"].startswith("no measurable difference")
    assert said["tensor parallel vs one GPU, prefill of 8192 tokens"].startswith("2.00x faster (quartiles 1.97-2.03)")
    assert any(line.startswith("pipeline vs one GPU, decode with generate: 1.39x slower") for line in lines)


def test_multi_gpu_explain_says_a_faster_pipeline_prefill_as_measured():
    placements = multi_gpu_placements(
        pipe_prefill={"512": (10, 9.5, 10.5), "2048": (1, 1, 1), "8192": (200, 199, 201)},
        tp_prefill={"512": (20, 19, 21), "2048": (1, 1, 1), "8192": (250, 248, 252)},
    )
    text = explain(placements, 4.8e12, "NV18")
    assert "pipeline vs one GPU, prefill of 512 tokens: 2.00x faster (quartiles 1.81-2.21)" in text
    assert "pipeline vs one GPU, prefill of 8192 tokens: 1.25x faster" in text


def test_multi_gpu_tally_names_only_the_verdicts_that_occur():
    slower, tie, faster = (0.7, 0.6, 0.8), (1.0, 0.9, 1.1), (1.3, 1.2, 1.4)
    assert [verdict(r) for r in (slower, tie, faster)] == ["slower", "tie", "faster"]
    assert verdict((1.0, 1.0, 1.2)) == "tie"  # quartiles that touch 1 hold it, as compare says
    assert tally([slower] * 4) == "all 4 measurably slower"
    assert tally([slower]) == "1 measurably slower"
    assert tally([slower, slower, tie]) == "2 measurably slower, 1 tied (quartiles span 1)"
    assert tally([tie, faster]) == "1 tied (quartiles span 1), 1 measurably faster"
    assert tally([]) == "none measured"


def with_loops(placements, **loops):
    """Add a static-cache loop result per placement: (median, q1, q3) tok/s, or an error text."""
    events = {"graphs compiled": 0, "CUDA graphs recorded": 0, "CUDA graphs skipped": 0}
    for name, value in loops.items():
        failed = isinstance(value, str)
        placements[name.replace("_", "-")]["loop"] = {
            "compile_mode": "reduce-overhead", "error": value if failed else None, "warmup_s": None if failed else 42.0,
            "warmup": None if failed else {**events, "graphs compiled": 1, "CUDA graphs recorded": 1},
            "tok_s": None if failed else summary(*value), "events": None if failed else events,
            "eager_step": {"wall_ms": 20.0, "busy_ms": 5.0, "busy_what": "GPU kernels"}}
    return placements


def test_placements_explain_reads_the_static_cache_loop_or_says_the_run_has_none():
    base = {"512": (20, 19, 21), "2048": (1, 1, 1), "8192": (250, 248, 252)}
    assert "static-cache loop: not in this run" in explain(multi_gpu_placements(base, base), 4.8e12, "NV18")
    placements = with_loops(multi_gpu_placements(base, base), one_gpu=(100, 98, 102), pipeline=(90, 89, 91),
                            tensor_parallel=(160, 150, 170))
    text = explain(placements, 4.8e12, "NV18")
    assert "tensor parallel vs one GPU, static-cache loop: 1.60x faster (quartiles 1.47-1.73)" in text
    assert "pipeline split (device_map) vs one GPU, static-cache loop: 1.11x slower" in text
    assert ("one GPU, static-cache loop, compiled (reduce-overhead): 100.0 tok/s = 34% of its bandwidth bound 298 tok/s; "
            "warm-up 42 s: 1 graphs compiled, 1 CUDA graphs recorded, 0 skipped") in text
    assert "one GPU, static-cache loop, one eager step (profiled): 20.0 ms, 5.0 ms of it in GPU kernels (25%)" in text
    assert "a loop step takes 6.25 ms tensor parallel vs 10.00 ms on one GPU; its 64 all-reduces" in text
    assert "160" in placements_table(placements)
    failed = with_loops(multi_gpu_placements(base, base), one_gpu=(100, 98, 102), pipeline=(90, 89, 91),
                        tensor_parallel="RuntimeError: no")
    text = explain(failed, 4.8e12, "NV18")
    assert "tensor parallel, static-cache loop, compiled (reduce-overhead): did not compile whole: RuntimeError: no" in text
    assert "tensor parallel vs one GPU, static-cache loop" not in text  # no verdict without both speeds
    assert "a loop step takes" not in text


def test_the_bound_counts_the_bytes_a_step_reads_where_the_run_recorded_them():
    one = multi_gpu_placements({"512": (1, 1, 1)}, {"512": (1, 1, 1)})["one-gpu"]  # 15 GiB allocated
    assert decode_bound(one, 15 * 2**30) == 1.0  # an older run: the memory allocated
    assert decode_bound({**one, "read_bytes": [10 * 2**30]}, 15 * 2**30) == 1.5  # the untied embedding left out
    tp = {**one, "placement": "tensor-parallel", "read_bytes": [5 * 2**30, 6 * 2**30]}
    assert decode_bound(tp, 12 * 2**30) == 2.0  # the busier process's share decides


def test_a_compile_failure_reads_as_its_first_line_and_torchs_explanation():
    error = RuntimeError("Skip calling `torch.compiler.disable()`d function\n  Explanation: a hook is disabled\n  more")
    assert script.failure(error) == ("RuntimeError: Skip calling `torch.compiler.disable()`d function "
                                     "(Explanation: a hook is disabled)")
    assert script.failure(ValueError("")) == "ValueError: "


def test_a_loop_that_does_not_compile_reports_its_error_and_still_profiles_one_eager_step(monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM

    def refuse(*args, **kwargs):
        raise RuntimeError("cannot compile this placement\nsecond line")

    model = AutoModelForCausalLM.from_pretrained(pretrained_path("llama-tiny-shape"), dtype=torch.float32).eval()
    args = script.parse_args(["--model", "m", "--placement", "one-gpu", "--out", "x", "--decode-prompt", "8",
                              "--new-tokens", "3", "--repeats", "1", "--loop-compile", "none"])
    prompt = torch.zeros(1, 16, dtype=torch.long)
    ran = script.loop_decode(model, args, "cpu", prompt, world_size=1)  # the prompt is longer than the cache's own
    assert ran["error"] is None and len(ran["tokens"]) == 8 and ran["tok_s"]["median"] > 0
    monkeypatch.setattr(torch, "compile", refuse)
    args.loop_compile = "default"
    report = script.loop_decode(model, args, "cpu", prompt, world_size=1)
    assert report["error"] == "RuntimeError: cannot compile this placement" and report["tok_s"] is None
    assert report["eager_step"]["busy_what"] == "CPU operators (aten)"  # its times: a difference of two runs, noisy here
    assert report["eager_step"]["wall_ms"] != 0  # the lesson divides by it
