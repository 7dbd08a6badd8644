"""The lesson table, pure data: one record per lesson, which the profiles, runner, publisher and tests all read.

A record holds the lesson's sizes per profile, its timing rounds and warm-ups (`rounds`/`warmup`, or
`<measurement>_rounds`/`<measurement>_warmup`; a lesson without one uses its profile's repeats and warm-up) and the
display names of what it records. Adding a lesson is a notebook `notebooks/NN_stem.ipynb` (with its paired `.py`
source), a `LessonRecord` in `SYLLABUS` below, the checks of its three exercises in `coursetools/checks/lessonNN.py`,
and solutions `workshop/solutions/NN.py`, `NN-call.py` and `NN-predict.py`; nothing else lists lessons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any

__all__ = ["LessonRecord", "Measure", "SYLLABUS", "lesson_record"]



@dataclass(frozen=True)
class Measure:
    """A recorded result's display name and unit; `key` may hold one `*`, which `name`'s `{}` repeats."""

    key: str
    name: str
    unit: str = ""

    def matches(self, key: str) -> bool:
        """Return whether a recorded key is this measure."""
        return fnmatch(key, self.key)

    def label(self, key: str) -> str:
        """Return the display name of a recorded key, the wildcard's text filled in."""
        if "*" not in self.key:
            return self.name
        prefix, suffix = self.key.split("*")
        return self.name.format(key[len(prefix) : len(key) - len(suffix)].replace("_", " "))


@dataclass(frozen=True)
class LessonRecord:
    """Everything the course knows about one lesson besides its notebook."""

    stem: str
    title: str
    measures_text: str
    cpu: dict[str, Any]
    gpu: dict[str, Any]
    recorded: tuple[Measure, ...] = ()
    t4: dict[str, Any] = field(default_factory=dict)  # where a T4 (16 GB, sm 7.5, no fast bf16) differs from gpu

    @property
    def id(self) -> str:
        """The lesson's two-digit number, e.g. "06"."""
        return self.stem[:2]

    def measure(self, key: str) -> Measure:
        """Return the display name and unit of a recorded key (the key itself when the record has none)."""
        return next((m for m in self.recorded if m.matches(key)), Measure(key, key))



SYLLABUS: tuple[LessonRecord, ...] = (
    LessonRecord(
        stem="00_tour",
        title="the course tools",
        measures_text=(
            "stamp, profile, model sources (the 2023 guide's torch_dtype call and today's dtype), timing, footprint "
            "against the memory a load takes (16-bit and nf4), decode speed against its bandwidth bound, perplexity"
        ),
        cpu={"eval_tokens": 256, "new_tokens": 16, "prompt_tokens": 64},
        gpu={"eval_tokens": 4096, "new_tokens": 64, "prompt_tokens": 512},
        t4={"eval_tokens": 2048},
        recorded=(
            Measure("decode_bound_tok_s", "decode bound (weights / bandwidth)", "tok/s"),
            Measure("decode_pct_of_bound", "decode, share of its bandwidth bound", "%"),
            Measure("decode_tok_s", "decode, batch 1", "tok/s"),
            Measure("footprint_mib", "weights", "MiB"),
            Measure("forward_ms", "forward pass", "ms"),
            Measure("nf4_decode_pct_of_bound", "decode, nf4 weights, share of its bandwidth bound", "%"),
            Measure("nf4_decode_tok_s", "decode, batch 1, nf4 weights", "tok/s"),
            Measure("nf4_vs_base_footprint", "nf4 weights vs the profile's dtype", "x"),
            Measure("perplexity", "perplexity, SmolLM2 from its Q4_1 GGUF"),
            Measure("prefill_ms", "prefill", "ms"),
            Measure("prompt_vs_one_token_pass", "forward pass over the prompt vs over one token", "x"),
        ),
    ),
    LessonRecord(
        stem="01_encoder_fast_path",
        title="what BetterTransformer did, today",
        measures_text=(
            "padding waste; HF eager vs sdpa vs PyTorch fast path (nested tensors; dense on unpadded batches) vs unpadded varlen attention: time, agreement per dtype against tolerances, what makes float32 differ (TF32, kernels, CPU vs GPU), speed-up vs padding; ONNX Runtime against PyTorch on its own device; reverse + save round trip"
        ),
        cpu={
            "batch": 16,
            "length": 64,
            "paddings": [0.0, 0.25, 0.5, 0.75],
            "dtypes": ["float32", "bfloat16"],
            "large_shape": None,
            "warmup": 1,
            "rounds": 5,
            "large_rounds": None,
            "ort_warmup": 1,
            "ort_rounds": 5,
        },
        gpu={
            "batch": 64,
            "length": 512,
            "paddings": [0.0, 0.25, 0.5, 0.75],
            "dtypes": ["float32", "float16", "bfloat16"],
            "large_shape": "bert-base-shape",
            "warmup": 5,
            "rounds": 20,
            "large_rounds": 30,
            "ort_warmup": 1,  # ONNX Runtime runs on the CPU where onnxruntime-gpu is missing: about a second a call
            "ort_rounds": 5,
        },
        t4={"batch": 32, "dtypes": ["float32", "float16"]},
        recorded=(
            Measure("bert_base_fast_vs_sdpa", "BERT-base shape: fast path vs HF sdpa", "x"),
            Measure("minilm_half_fast_vs_sdpa", "MiniLM, 16-bit, half padding, rows down to 1 token: fast path vs HF sdpa", "x"),
            Measure("minilm_half_fast_vs_compiled", "MiniLM, 16-bit, half padding, rows down to 1 token: fast path vs HF sdpa compiled", "x"),
            Measure("minilm_half_fast_vs_sdpa_quarter_rows", "MiniLM, 16-bit, half padding, rows of at least 1/4 width: fast path vs HF sdpa", "x"),
            Measure("minilm_half_fast_vs_compiled_quarter_rows", "MiniLM, 16-bit, half padding, rows of at least 1/4 width: fast path vs HF sdpa compiled", "x"),
            Measure("minilm_half_dense_vs_sdpa_unpadded", "MiniLM, 16-bit, batch without padding: dense fast path vs HF sdpa", "x"),
            Measure("minilm_fast_vs_eager", "MiniLM, float32: fast path vs HF eager", "x"),
            Measure("minilm_fast_vs_sdpa", "MiniLM, float32: fast path vs HF sdpa", "x"),
            Measure("minilm_fast_float32_agrees_to", "MiniLM: tolerance the float32 fast path meets against HF eager"),
            Measure("minilm_dense_vs_sdpa_unpadded", "MiniLM, float32, batch without padding: dense fast path vs HF sdpa", "x"),
            Measure("minilm_varlen_vs_sdpa", "MiniLM, 16-bit, half padding: the course's torch varlen wrapper vs HF sdpa", "x"),
            Measure("minilm_ort_vs_sdpa_on_*", "MiniLM: ONNX Runtime vs HF sdpa, both on the {}", "x"),
        ),
    ),
    LessonRecord(
        stem="02_decoder_attention",
        title="SDPA and its kernels",
        measures_text=(
            'attention from scratch; math / efficient / flash / cuDNN time, memory and TFLOP/s vs sequence length; "No available kernel" explained; eager vs sdpa prefill, decode, same answers'
        ),
        cpu={
            "batch": 1,
            "heads": 8,
            "head_dim": 64,
            "seq_lens": [256, 512, 1024, 2048],
            "dtype": "float32",
            "headline_seq": 1024,
            "decoder": "smollm2-135m",
            "prompt_lens": [128, 256, 512],
            "new_tokens": 16,
        },
        gpu={
            "batch": 4,
            "heads": 16,
            "head_dim": 64,
            "seq_lens": [512, 1024, 2048, 4096, 8192, 16384, 32768],
            "dtype": "float16",
            "headline_seq": 4096,
            "decoder": "llama-1b-shape",
            "prompt_lens": [512, 1024, 2048, 4096, 8192],
            "new_tokens": 64,
        },
        t4={"seq_lens": [512, 1024, 2048, 4096, 8192, 16384], "prompt_lens": [512, 1024, 2048, 4096]},
        recorded=(
            Measure("decode_eager_tok_s", "decode, eager attention", "tok/s"),
            Measure("decode_sdpa_tok_s", "decode, sdpa", "tok/s"),
            Measure("fused_vs_math_at_headline", "fused kernel vs math kernel at the headline length", "x"),
            Measure("prefill_sdpa_vs_eager", "prefill: sdpa vs eager", "x"),
        ),
    ),
    LessonRecord(
        stem="03_four_bit_weights",
        title="FP4 and NF4 with bitsandbytes",
        measures_text=(
            "code books, blockwise round trip from scratch vs bitsandbytes; footprint (predicted and measured), perplexity, answers and interleaved decode per variant; what stays unquantized; which GPU fits an 8B model"
        ),
        cpu={"eval_tokens": 256, "prompt_tokens": 64, "new_tokens": 8, "half": "bfloat16", "large_shape": None, "rounds": 5, "warmup": 1},
        gpu={
            "eval_tokens": 4096,
            "prompt_tokens": 512,
            "new_tokens": 32,
            "half": "bfloat16",
            "large_shape": "llama3-8b-shape",
            "rounds": 5,
            "warmup": 1,
        },
        t4={"eval_tokens": 2048, "half": "float16", "large_shape": "llama-1b-shape"},
        recorded=(
            Measure("large_nf4_vs_half_footprint", "large shape: nf4 weights vs 16-bit", "x"),
            Measure("large_nf4_vs_half_decode", "large shape: nf4 decode tok/s vs 16-bit", "x"),
            Measure("nf4_vs_half_footprint", "SmolLM2: nf4 weights vs 16-bit", "x"),
            Measure("nf4_vs_half_decode", "SmolLM2: nf4 decode tok/s vs 16-bit", "x"),
            Measure("*_ppl", "perplexity, SmolLM2 from its Q4_1 GGUF as {}"),
        ),
    ),
    LessonRecord(
        stem="04_llm_int8",
        title="LLM.int8()",
        measures_text=(
            "outlier features of a real model (residual stream, linear-layer inputs, the paper's criteria); the decomposition from scratch vs bitsandbytes; footprint, perplexity (with the text's noise) and speed against the threshold; skip modules; batch size and the bandwidth bound; generate vs pipeline"
        ),
        cpu={
            "capture_tokens": 256,
            "eval_tokens": 256,
            "prompt_tokens": 64,
            "new_tokens": 8,
            "thresholds": [0.0, 1.0, 3.0, 6.0, 10.0],
            "large_shape": None,
            "batches": [1],
            "report_warmup": 1,
            "report_rounds": 3,
            "decode_warmup": 1,
            "decode_rounds": 5,
        },
        gpu={
            "capture_tokens": 1024,
            "eval_tokens": 4096,
            "prompt_tokens": 512,
            "new_tokens": 16,
            "thresholds": [0.0, 1.0, 3.0, 6.0, 10.0],
            "large_shape": "llama-1b-shape",
            "batches": [1, 16],
            "report_warmup": 1,
            "report_rounds": 3,
            "decode_warmup": 1,
            "decode_rounds": 5,
        },
        t4={"eval_tokens": 2048},
        recorded=(
            Measure("int8_vs_fp16_decode_batch1", "decode at batch 1: int8 vs fp16", "x"),
            Measure("decode_*_pct_of_bound", "decode at batch 1, {} weights (timed model), share of the bandwidth bound", "%"),
            Measure("outlier_dims_max_layer", "outlier columns in the worst layer"),
            Measure("ppl_*", "perplexity, SmolLM2 from its Q4_1 GGUF as {}"),
        ),
    ),
    LessonRecord(
        stem="05_four_bit_with_flash",
        title="4-bit + flash attention",
        measures_text=(
            "the seed's recipe as written and the dtype it gets; weights {16-bit, nf4, int8} × attention {eager, flash, cuDNN}: footprint, peak memory and what the quantized layers hold beyond it, interleaved prefill and decode against the bandwidth bound; a decision table with ties; model dtype × compute dtype; generate vs an own compiled loop (nf4 uncompiled)"
        ),
        cpu={
            "half": "float32",
            "model": "smollm2-135m",
            "prompt_tokens": 16,
            "probe_tokens": 2,
            "contexts": [64, 192],
            "new_tokens": 4,
            "batch": 2,
            "eval_tokens": 256,
            "compile_mode": None,
            "matrix_warmup": 1,
            "matrix_rounds": 3,
            "static_warmup": 3,
            "static_rounds": 3,
            "static_nf4_warmup": 1,
            "static_nf4_rounds": 3,
        },
        gpu={
            "half": "bfloat16",
            "model": "llama-1b-shape",
            "prompt_tokens": 32,
            "probe_tokens": 4,
            "contexts": [512, 4096],
            "new_tokens": 64,
            "batch": 16,
            "eval_tokens": 4096,
            "compile_mode": "reduce-overhead",
            "matrix_warmup": 1,
            "matrix_rounds": 5,
            "static_warmup": 3,
            "static_rounds": 20,
            "static_nf4_warmup": 1,
            "static_nf4_rounds": 5,
        },
        t4={"half": "float16", "eval_tokens": 2048},
        recorded=(
            Measure("compiled_static_vs_dynamic_decode", "decode: compiled static cache vs plain generate (dynamic cache)", "x"),
            Measure("own_loop_vs_dynamic_decode", "decode: own compiled loop (StaticGreedy) vs plain generate (dynamic cache)", "x"),
            Measure("own_loop_*_pct_of_bound", "decode in the own loop, {} weights, share of the bandwidth bound", "%"),
            Measure("decode_*_pct_of_bound", "decode, {} weights, share of the bandwidth bound", "%"),
            Measure("ppl_*", "perplexity, SmolLM2 from its Q4_1 GGUF as {}"),
        ),
    ),
    LessonRecord(
        stem="06_device_map",
        title="device_map and max_memory",
        measures_text=(
            "planning on the meta device with transformers' planner (the guide's BLOOM-3B at 600MB/1GB and 1GB/2GB, a 70B shape on 2 x 80 GiB); strategies, balanced_low_0; no_split_module_classes; budget errors; the guide's budgets loaded for real (refused, spilled to disk, what fits) with plans checked against the loads; max_memory as a weights budget against the peak; GPU/CPU/disk offload and its cost against the host link; 4-bit and 8-bit recipes over two GPUs; pipeline split vs tensor parallel vs one GPU"
        ),
        cpu={
            "dispatch_model": "smollm2-135m",
            "cpu_budget": "150MB",
            "gpu_budget": None,
            "new_tokens": 8,
            "parallel_model": None,  # two GPUs only: other machines show the stored two-GPU run
            "parallel_options": [],
            "offload_rounds": 3,
            "bloom_model": "bloom-tiny-shape",  # BLOOM's vocabulary, 4 narrow layers: the guide's budgets scaled to it
            "bloom_new_tokens": 4,
            "bloom_warmup": 1,
            "bloom_rounds": 3,
            "recipe_rounds": 5,
        },
        gpu={
            "dispatch_model": "llama-1b-shape",
            "cpu_budget": "40GiB",
            "gpu_budget": "1GiB",
            "new_tokens": 16,
            "parallel_model": "llama3-8b-shape",
            "parallel_options": [
                "--prompt-lens",
                "512",
                "2048",
                "8192",
                "--batches",
                "1",
                "16",
                "--new-tokens",
                "32",
                "--warmup",
                "3",
                "--repeats",
                "5",
            ],
            "offload_rounds": 5,
            "bloom_model": "bloom-3b-shape",  # the guide's bigscience/bloom-3b, first named bloom-2b5
            "bloom_new_tokens": 4,  # a spilled load computes on the CPU from disk: seconds per token
            "bloom_warmup": 1,
            "bloom_rounds": 3,
            "recipe_rounds": 5,
        },
        t4={"cpu_budget": "20GiB"},
        recorded=(
            Measure("offload_slowdown", "decode slowdown when offloading to the CPU", "x"),
            Measure("split_devices", "devices of the offloaded model"),
        ),
    ),
    LessonRecord(
        stem="07_decode_bandwidth",
        title="decoding at the memory-bandwidth limit",
        measures_text=(
            "bytes read per token and the bound; generate with a dynamic or static cache vs an own loop with a static cache and a compiled step (CUDA graphs); where a step's time goes (profiler: kernels vs the rest, nf4 too); KV cache predicted vs measured, grouped-query attention, what fits"
        ),
        cpu={
            "models": ["smollm2-135m"],
            "profile_model": "smollm2-135m",
            "dtype": "float32",
            "prompt_tokens": 32,
            "new_tokens": 16,
            "rounds": 3,
            "compile_mode": None,
            "copy_mib": 256,  # a copy far larger than the CPU caches (64 MiB can stay in a large L3)
            "answer_tokens": 8,
            "profile_rounds": 3,
            "profile_tokens": 8,  # profiling a token on a CPU costs several times decoding it
            "kv_contexts": [512, 2048],
            "kv_batches": [1, 4],
            "fit_contexts": [4096, 32768, 131072],
        },
        gpu={
            "models": ["llama-1b-shape", "llama3-8b-shape"],
            "profile_model": "llama-1b-shape",
            "dtype": "bfloat16",
            "prompt_tokens": 128,
            "new_tokens": 128,
            "rounds": 10,
            "compile_mode": "reduce-overhead",
            "copy_mib": 4096,
            "answer_tokens": 32,
            "profile_rounds": 5,
            "profile_tokens": 16,
            "kv_contexts": [4096, 32768],
            "kv_batches": [1, 8],
            "fit_contexts": [4096, 32768, 131072],
        },
        t4={"models": ["llama-1b-shape"], "dtype": "float16", "kv_contexts": [4096, 16384]},
        recorded=(
            Measure("*_pct_of_practical_bound", "decode, {}, share of the practical bound (a large copy)", "%"),
            Measure("*_pct_of_bound", "decode, {}, share of the bandwidth bound", "%"),
            Measure("*_own_loop_tok_s", "decode, {}, own loop", "tok/s"),
            Measure("practical_bandwidth_pct_of_data_sheet", "a large on-device copy, share of the data-sheet bandwidth", "%"),
            Measure("busy_share_*_pct", "share of a decode step in kernels, {}", "%"),
        ),
    ),
    LessonRecord(
        stem="08_fast_four_bit",
        title="can 4-bit weights decode faster than 16-bit?",
        measures_text=(
            "TorchAoConfig int4 (output head quantized and not), int8 and float8 weight-only, bitsandbytes nf4 and 16-bit in one compiled static-cache loop with one set of compiler settings: footprint, bytes per token, decode speed against each bound and against 16-bit; where a slower format's step time goes; one layer's kernel with a cold L2 cache; whether generate compiles each; perplexity"
        ),
        cpu={
            "shapes": ["smollm2-135m"],
            "dtype": "float32",
            "variants": ["int8", "nf4"],
            "group_size": 64,
            "prompt_tokens": 32,
            "new_tokens": 16,
            "rounds": 3,
            "profile_rounds": 3,
            "profile_tokens": 8,  # profiling a token on a CPU costs several times decoding it
            "layer_calls": 5,
            "layer_warmup": 1,
            "compile_mode": None,
            "eval_tokens": 256,
        },
        gpu={
            "shapes": ["llama3-8b-shape"],
            "dtype": "bfloat16",
            "variants": ["int4", "int4+head", "int8", "fp8", "nf4"],
            "group_size": 64,
            "prompt_tokens": 128,
            "new_tokens": 128,
            "rounds": 10,
            "profile_rounds": 5,
            "profile_tokens": 32,
            "layer_calls": 20,
            "layer_warmup": 3,
            "compile_mode": "reduce-overhead",
            "eval_tokens": 4096,
        },
        t4={"shapes": ["llama-1b-shape"], "dtype": "float16", "eval_tokens": 2048},
        recorded=(
            Measure("*_decode", "decode speed, {}", "x"),
            Measure("*_tok_s", "decode, {}", "tok/s"),
            Measure("*_pct_of_bound", "decode, {}, share of its bandwidth bound", "%"),
            Measure("ppl_*", "perplexity, SmolLM2 from its Q4_1 GGUF as {}"),
        ),
    ),
)


def lesson_record(lesson_id: str) -> LessonRecord:
    """Return a lesson's record by its number ("06") or stem, with an error listing the lessons there are."""
    for record in SYLLABUS:
        if lesson_id in (record.id, record.stem):
            return record
    known = sorted(r.id for r in SYLLABUS)
    raise ValueError(f"no lesson {lesson_id!r} in the syllabus; use a lesson's number (or its stem): {known}")
