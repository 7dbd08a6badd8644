"""Lesson 07's exercises: the `generate` keywords for a static, pre-sized, compiled decode, and own loop against generate."""

from __future__ import annotations

from typing import Any

import torch

from coursetools.checks import Call, Prediction, close
from helpers.decoding import kv_cache_bytes
from helpers.timing import compare

__all__ = ["EXERCISES"]

THRESHOLD = 2.0  # the prediction: the own loop decodes more than twice as fast as generate with its dynamic cache
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes that record CUDA graphs


def cache_size_problem(predicted: int, held: int, taken: int | None, slack: float = 0.02) -> str | None:
    """Return why a cache's tensors (`held`) or the GPU memory it took (`taken`, None off a GPU) disagree with `predicted`."""
    if held != predicted:
        return f"the cache's tensors hold {held} bytes, the formula predicts {predicted}"
    if taken is not None and not predicted <= taken <= predicted * (1 + slack) + 2**21:
        return f"making the cache took {taken} bytes of GPU memory, the formula predicts {predicted} (+{slack:.0%} + 2 MiB)"
    return None


def keyword_problem(answer: Any, new_tokens: int, cache_len: int) -> str | None:
    """Return what is wrong with the keywords themselves, or None."""
    from transformers import CompileConfig

    if not isinstance(answer, dict):
        return "write a dict of generate's keywords: dict(max_new_tokens=..., cache_implementation=..., ...)"
    if "past_key_values" in answer:
        return ("past_key_values= hands generate a cache you made (as StaticGreedy does); here let generate make it: "
                "cache_implementation='static'")
    implementation = answer.get("cache_implementation")
    if implementation is None:
        return ("cache_implementation is missing: its default None gives the model's default DynamicCache, which grows "
                "every step, and generate compiles only with a static cache: set cache_implementation='static'")
    if implementation != "static":
        if str(implementation).lower() == "static":
            return f"cache_implementation={implementation!r}: generate knows the lower-case name 'static'"
        if implementation == "offloaded_static":
            return "'offloaded_static' keeps the cache's layers on the CPU between uses: write 'static'"
        return f"cache_implementation={implementation!r}: the static cache generate compiles with is 'static'"
    if answer.get("max_cache_len") is None:
        return (f"max_cache_len is missing (default None: the cache is sized to this call's prompt + max_new_tokens, "
                f"and a longer later call makes a new one and compiles again): set max_cache_len={cache_len}")
    if answer["max_cache_len"] != cache_len:
        return f"max_cache_len is {answer['max_cache_len']}: size the cache once for {cache_len} tokens"
    if "max_length" in answer:
        return "max_length counts the prompt's tokens too: write max_new_tokens=, the tokens to decode"
    if answer.get("max_new_tokens") != new_tokens:
        return f"max_new_tokens is {answer.get('max_new_tokens')}: decode new_tokens = {new_tokens} tokens"
    if answer.get("do_sample"):
        return "do_sample=True samples: greedy decoding is do_sample=False (GenerationConfig's default)"
    if answer.get("disable_compile"):
        return ("disable_compile=True switches off generate's own compilation (default None: it compiles on a GPU "
                "with a static cache): leave it out")
    config = answer.get("compile_config")
    if config is not None and not isinstance(config, CompileConfig):
        return f"compile_config must be a transformers.CompileConfig(...), not a {type(config).__name__}"
    if config is not None and config.mode not in CUDA_GRAPH_MODES:
        return (f"CompileConfig(mode={config.mode!r}) records no CUDA graphs: use mode='reduce-overhead' "
                "(CompileConfig's default), or leave compile_config out")
    return None


def check_call(answer: Any, new_tokens: int, cache_len: int) -> str | None:
    """Check generate's keywords for a static cache of `cache_len` tokens, compiled; then decode with them on a tiny model."""
    problem = keyword_problem(answer, new_tokens, cache_len)
    if problem:
        return problem
    from transformers import LlamaConfig, LlamaForCausalLM, StaticCache
    from transformers.utils import logging as transformers_logging

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, bos_token_id=None, eos_token_id=None)
    tiny = LlamaForCausalLM(config).eval()
    prompt = torch.randint(0, config.vocab_size, (1, 4))
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # the tiny model runs on the CPU: generate would say it cannot compile
    try:
        out = tiny.generate(prompt, attention_mask=torch.ones_like(prompt), pad_token_id=0,
                            return_dict_in_generate=True, **answer)
    except (TypeError, ValueError) as err:
        return f"generate refused these keywords: {str(err).splitlines()[0]}"
    finally:
        transformers_logging.set_verbosity(verbosity)
    cache = out.past_key_values
    if not isinstance(cache, StaticCache):
        return f"generate ran, but decoded with {type(cache).__name__}, not a StaticCache: keep use_cache at its default"
    decoded = out.sequences.shape[1] - prompt.shape[1]
    if decoded != new_tokens:
        return f"generate decoded {decoded} new tokens, not {new_tokens}: a keyword stopped it early or changed its length"
    return None


def compare_speedup(answer: bool, ratio: tuple[float, float, float], compiled: bool, model: str) -> tuple[bool, str]:
    """Compare 'the own loop decodes more than twice as fast as generate's dynamic cache' with the per-round ratio."""
    loop = "the own loop (static cache, compiled step)" if compiled else "the own loop (static cache, uncompiled here)"
    measured = f"on {model}, {loop} against generate with its dynamic cache: {compare(ratio)}"
    low, high = ratio[1], ratio[2]
    if low <= THRESHOLD <= high:
        return True, f"{measured}: the rounds fall on both sides of {THRESHOLD:g}x, a tie, so either answer stands"
    more = low > THRESHOLD
    if more:
        why = ("the static cache and the compiled step together more than halve generate's step; the profiler split "
               "above shows, on the model it profiles, how much of each step lies outside kernels")
    elif compiled:
        why = ("the static cache and the compiled step together do not halve generate's step here; the profiler split "
               "above shows how much of a step lies outside kernels on the model it profiles")
    else:
        why = "without compilation the own loop saves only generate's bookkeeping, not the launch of every operator"
    return answer == more, f"{measured}, {'more' if more else 'less'} than {THRESHOLD:g}x: {why}"


def check_answer(answer: Any, config: Any, tokens: int, batch: int) -> str | None:
    """Bytes of a bfloat16 KV cache of `tokens` positions for `batch` sequences of a model with this config."""
    if close(answer, kv_cache_bytes(config, tokens, batch)):
        return None
    if close(answer, kv_cache_bytes(config, tokens, batch) * config.num_attention_heads / config.num_key_value_heads):
        return "grouped-query attention: the cache holds num_key_value_heads heads, not num_attention_heads"
    if close(answer, kv_cache_bytes(config, tokens, batch) / 2):
        return "the cache holds keys and values: two tensors per layer"
    return "layers x 2 (keys, values) x KV heads x head_dim x 2 bytes (bfloat16) x tokens x batch, in bytes"


EXERCISES = {
    "07": Call(check_answer),
    "07-call": Call(check_call),
    "07-predict": Prediction(
        "On the largest model measured here, does the own loop (StaticGreedy, as this machine runs it) decode more than "
        "twice as fast as generate with its default dynamic cache? True or False",
        compare_speedup,
    ),
}
