"""Prefill and decode of one model placed three ways: on one GPU, split layer by layer over GPUs, or tensor parallel.

Lesson 06 runs each placement twice and reads the JSON each run writes; you can run it the same way:

    python -m helpers.parallel_decode --model PATH --placement one-gpu --out one-gpu.json
    python -m helpers.parallel_decode --model PATH --placement pipeline --out pipeline.json
    torchrun --nproc-per-node 2 -m helpers.parallel_decode --model PATH --placement tensor-parallel --out tp.json

`load` holds the three `from_pretrained` calls that place the model; everything else measures: prefill, eager `generate`
at each batch, and batch-1 decode in the course's static-cache loop (`--loop-compile`; lesson 07 builds it).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from helpers.decoding import StaticGreedy, compile_events, step_split, weight_bytes_per_token
from helpers.timing import ALL_GPUS, benchmark, benchmark_generation, decode_step_ms, spread

__all__: list[str] = []  # a program (python or torchrun -m helpers.parallel_decode); lesson 06 shows its code

PLACEMENTS = ("one-gpu", "pipeline", "tensor-parallel")
LOOP_COMPILE = ("reduce-overhead", "default", "none")  # torch.compile modes for the static-cache loop; none: eager


def quartiles(times: list[float]) -> dict[str, Any]:
    """Return the median, quartiles and raw values of repeated measurements (as this script writes them)."""
    return {**dict(zip(("median", "q1", "q3"), spread(times), strict=True)), "times": times}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line (run with --help for the options)."""
    parser = argparse.ArgumentParser(prog="python -m helpers.parallel_decode", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a checkpoint folder (or Hub id) that from_pretrained loads")
    parser.add_argument("--placement", required=True, choices=PLACEMENTS)
    parser.add_argument("--out", required=True, type=Path, help="where to write the JSON results")
    parser.add_argument("--prompt-lens", type=int, nargs="+", default=[512, 2048, 8192], help="prefill lengths")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="decode batch sizes")
    parser.add_argument("--decode-prompt", type=int, default=128, help="prompt tokens before decoding")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per decode measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--loop-compile", default="reduce-overhead", choices=LOOP_COMPILE,
                        help="how the batch-1 static-cache loop (helpers.decoding.StaticGreedy) is compiled")
    args = parser.parse_args(argv)
    problem = placement_problem(args.placement, int(os.environ.get("WORLD_SIZE", "1")), torch.cuda.device_count())
    if problem:
        parser.error(problem)
    if min(args.prompt_lens + args.batches) < 1 or args.new_tokens < 2 or args.repeats < 1:
        parser.error("prompt lengths and batches must be positive, --new-tokens at least 2, --repeats at least 1")
    return args


def placement_problem(placement: str, world_size: int, gpus: int) -> str | None:
    """Return why this placement cannot run with these processes and GPUs, or None when it can."""
    if placement == "tensor-parallel":
        if world_size < 2:
            return ("tensor parallel runs one process per GPU: launch it with "
                    "`torchrun --nproc-per-node 2 -m helpers.parallel_decode ...` on a machine with at least 2 GPUs")
        if 0 < gpus < world_size:
            return f"torchrun started {world_size} processes but this machine has {gpus} GPU(s): one process per GPU"
        return None
    if world_size > 1:
        return f"--placement {placement} runs in one process: start it with python, not torchrun"
    if placement == "pipeline" and gpus < 2:
        return f"a pipeline split needs at least 2 GPUs; this machine has {gpus}"
    return None


def load(model: str, placement: str, dtype: torch.dtype) -> Any:
    """Load the model placed as asked: these three calls are what the lesson teaches."""
    from transformers import AutoModelForCausalLM, DistributedConfig

    if placement == "one-gpu":
        device = 0 if torch.cuda.is_available() else "cpu"
        return AutoModelForCausalLM.from_pretrained(model, dtype=dtype, device_map={"": device})
    if placement == "pipeline":
        # whole layers on each GPU, balanced; a token runs through GPU 0's layers, then GPU 1's
        return AutoModelForCausalLM.from_pretrained(model, dtype=dtype, device_map="auto")
    # every layer's matrices split over all GPUs (one process each); two all-reduces per layer join the halves
    return AutoModelForCausalLM.from_pretrained(model, dtype=dtype, distributed_config=DistributedConfig(tp_plan="auto"))


def every_rank(value: Any, world_size: int) -> list[Any]:
    """Return every process's value, in rank order (all_gather_object under torchrun; one process: [value])."""
    if world_size == 1:
        return [value]
    gathered: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(gathered, value)
    return gathered


def memory_report(world_size: int) -> list[dict[str, float]]:
    """Return the weights (allocated after loading) and peak memory of every GPU this run used, in GiB."""
    if not torch.cuda.is_available():
        return []

    def gpu(i: int) -> dict[str, float]:
        return {"gpu": i, "allocated_gib": torch.cuda.memory_allocated(i) / 2**30,
                "peak_gib": torch.cuda.max_memory_allocated(i) / 2**30}

    if world_size > 1:
        return every_rank(gpu(torch.cuda.current_device()), world_size)
    return [gpu(i) for i in range(torch.cuda.device_count())]


def allreduce_cost(model: Any, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """Time one all-reduce of a decode step's and of the longest prefill's activations (tensor parallel only)."""
    hidden = model.config.hidden_size
    report: dict[str, Any] = {"per_token": 2 * model.config.num_hidden_layers}
    for name, tokens in (("decode", 1), ("prefill", max(args.prompt_lens))):
        tensor = torch.ones(tokens, hidden, dtype=model.dtype, device=device)
        timing = benchmark(lambda t=tensor: torch.distributed.all_reduce(t), device=device, warmup=3, repeats=20)
        report[name] = {"bytes": tensor.numel() * tensor.element_size(), "us": timing.median * 1e3}
    return report


def failure(error: Exception) -> str:
    """Return an exception's type, first line and (torch.compile's) explanation line, short enough for a table."""
    lines = [line.strip() for line in str(error).strip().splitlines()] or [""]
    why = next((line for line in lines[1:] if line.startswith("Explanation:")), "")
    return f"{type(error).__name__}: {lines[0][:200]}" + (f" ({why[:200]})" if why else "")


def loop_decode(model: Any, args: argparse.Namespace, clock: str | torch.device, greedy_prompt: torch.Tensor,
                world_size: int) -> dict[str, Any]:
    """Profile one eager step of the static-cache loop, then time the loop compiled as asked (or say why it does not compile)."""
    first = model.get_input_embeddings().weight.device
    prompt = torch.randint(0, model.config.vocab_size, (1, args.decode_prompt)).to(first)
    cache_len = max(args.decode_prompt, greedy_prompt.shape[1] + 8) + args.new_tokens  # room for both prompts' decoding
    eager = StaticGreedy(model, max_cache_len=cache_len, compile_mode=None)
    split = step_split(lambda n: eager(prompt, n), args.new_tokens, clock)
    report: dict[str, Any] = {"compile_mode": args.loop_compile, "error": None, "warmup_s": None, "warmup": None,
                              "events": None, "tokens": None, "tok_s": None,
                              "eager_step": {"wall_ms": split.wall_ms, "busy_ms": split.busy_ms, "busy_what": split.busy_what}}
    began, error = time.perf_counter(), None
    try:
        with compile_events() as warmup:  # compiling and CUDA-graph recording happen here, in the warm-up
            loop = eager if args.loop_compile == "none" else StaticGreedy(model, cache_len, args.loop_compile)
            loop(prompt, args.new_tokens), loop(prompt, 1)
    except Exception as err:  # noqa: BLE001  (whatever stops compiling the placement is the reason given)
        error = failure(err)
    # every rank takes the same path: a rank timing all-reduces its peer never joins would hang
    error = next((e for e in every_rank(error, world_size) if e), None)
    if error:
        return {**report, "error": error}
    report |= {"warmup_s": time.perf_counter() - began, "warmup": dict(warmup)}
    step_ms = decode_step_ms(lambda n: loop(prompt, n), args.new_tokens, clock)
    with compile_events() as events:  # in the timed rounds: recompiles or re-recordings would be counted here
        times = [1e3 / step_ms() for _ in range(args.repeats)]
    return {**report, "events": dict(events), "tokens": loop(greedy_prompt, 8)[0].tolist(), "tok_s": quartiles(times)}


def measure(model: Any, args: argparse.Namespace, world_size: int) -> dict[str, Any]:
    """Time prefill per prompt length, `generate`'s decode per batch and the static-cache loop's; return them with tokens."""
    first = model.get_input_embeddings().weight.device
    clock = ALL_GPUS if args.placement == "pipeline" else first
    vocab = model.config.vocab_size
    torch.manual_seed(0)  # the same token ids in every process of a tensor-parallel run
    with torch.inference_mode():  # first calls pick kernels and allocate: keep them out of every length's timing
        for length in args.prompt_lens:
            model(input_ids=torch.zeros(1, length, dtype=torch.long, device=first), logits_to_keep=1)
    prefill = {}
    for length in args.prompt_lens:
        ids = torch.randint(0, vocab, (1, length)).to(first)
        timing = benchmark(lambda ids=ids: model(input_ids=ids, logits_to_keep=1), device=clock,
                           warmup=args.warmup, repeats=args.repeats)
        prefill[str(length)] = quartiles(list(timing.times_ms))
    decode = {}
    for batch in args.batches:
        ids = torch.randint(0, vocab, (batch, args.decode_prompt)).to(first)
        run = benchmark_generation(model, ids, new_tokens=args.new_tokens, warmup=args.warmup, repeats=args.repeats,
                                   device=clock)
        per_round = [1e3 / ms for ms in run.decode.times_ms]
        decode[str(batch)] = {"tok_s": run.decode_tokens_per_s, **quartiles(per_round)}
    prompt = torch.randint(0, vocab, (1, 16)).to(first)
    with torch.inference_mode():
        greedy = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False,
                                pad_token_id=0)
    result = {"prefill_ms": prefill, "decode": decode, "greedy_tokens": greedy[0, 16:].tolist(), "allreduce": None,
              "read_bytes": every_rank(weight_bytes_per_token(model), world_size),  # a DTensor counts its local shard
              "loop": loop_decode(model, args, clock, prompt, world_size)}
    if world_size > 1:
        result["allreduce"] = allreduce_cost(model, first, args)
    return result


def main(argv: list[str] | None = None) -> int:
    """Load the model with the chosen placement, measure it, and write the JSON results (rank 0 only)."""
    args = parse_args(argv)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world_size > 1 and torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # one GPU per process, before any collective
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    began = time.perf_counter()
    model = load(args.model, args.placement, getattr(torch, args.dtype)).eval()
    load_s = time.perf_counter() - began
    result = {
        "placement": args.placement, "model": str(args.model), "world_size": world_size, "dtype": args.dtype,
        "load_s": load_s, "new_tokens": args.new_tokens, "decode_prompt": args.decode_prompt,
        "device_map": {k: str(v) for k, v in getattr(model, "hf_device_map", {}).items()},
        **measure(model, args, world_size), "memory": memory_report(world_size),
    }
    if rank == 0:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        partial = args.out.with_suffix(".partial")
        partial.write_text(json.dumps(result, indent=1))
        partial.replace(args.out)
        print(f"{args.placement}: wrote {args.out}")
    if world_size > 1:  # every collective done on both ranks, then free the model's device mesh (its own process
        torch.distributed.barrier()  # groups) before the default group: left to the exit, gloo's threads can abort it
        del model
        gc.collect()
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
