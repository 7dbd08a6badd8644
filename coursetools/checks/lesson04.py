"""Lesson 04's exercises: count outlier columns, write the int8 BitsAndBytesConfig that skips modules, predict int8's speed."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from coursetools.checks import Call, Prediction
from helpers.outliers import outlier_features, relative_error
from helpers.timing import RUN_TO_RUN, paired_ratio, spread, verdict

__all__ = ["EXERCISES"]

MLP_LINEARS = ("gate_proj", "up_proj", "down_proj")
Spread = tuple[float, float, float]  # median and quartiles, as helpers.timing.spread returns them


def decomposition_problem(ours: torch.Tensor, reference: torch.Tensor, others: dict[str, torch.Tensor],
                          margin: float = 0.5) -> str | None:
    """Return why `ours` is not clearly the closest to `reference`: each of `others` must differ by over 1/margin times as much."""
    agreement = relative_error(ours, reference)
    for name, other in others.items():
        if agreement >= margin * relative_error(other, reference):
            return (f"ours differs from the reference by {agreement:.4f}, {name} by {relative_error(other, reference):.4f}: "
                    f"ours is not closer by a factor of {1 / margin:g}, so the comparison cannot tell them apart")
    return None


def step_change(rates: dict[int, dict[str, list[float]]]) -> dict[str, tuple[str, Spread, Spread, Spread]]:
    """Say per variant whether a step over the most rows took 'less' or 'more' time than over the fewest, or 'flat'."""
    # rates: batch -> variant -> each round's tok/s over all rows, every batch size timed in the same rounds (round i
    # of one is round i of the others); a step is rows / (rows/s). Each round's step-time ratio, most rows over fewest,
    # is read with the course's rule (helpers.timing.verdict): 'flat' where the ratios' quartiles hold 1
    fewest, most = min(rates), max(rates)
    reading = {"faster": "more", "slower": "less", "tie": "flat"}  # verdict of (ms over most rows) / (ms over fewest)
    changes: dict[str, tuple[str, Spread, Spread, Spread]] = {}
    for label in rates[fewest]:
        few, many = ([1000 * batch / rate for rate in rates[batch][label]] for batch in (fewest, most))
        ratio = paired_ratio(many, few)
        changes[label] = (reading[verdict(ratio)], ratio, spread(few), spread(many))
    return changes  # variant: (change, per-round ratio most/fewest, ms per step over the fewest rows, over the most)


def kept_in_16_bit(model: nn.Module, skip_modules: list[str] | None) -> set[str]:
    """Return the linear layers that transformers' own rule (the one `from_pretrained` applies) leaves unconverted."""
    from transformers.quantizers.quantizers_utils import should_convert_module

    from helpers.quantization import unconverted_modules

    skipped = unconverted_modules(model, skip_modules)
    return {name for name, module in model.named_modules() if isinstance(module, nn.Linear)
            and not should_convert_module(name, skipped)}


def check_call(answer: Any, model: nn.Module) -> str | None:
    """An int8 config with threshold 6.0 that keeps lm_head and every linear layer of the last layer's MLP in 16-bit."""
    from transformers import BitsAndBytesConfig

    if not isinstance(answer, BitsAndBytesConfig):
        return "write a transformers.BitsAndBytesConfig(...) with load_in_8bit=True"
    if not answer.load_in_8bit:
        return "set load_in_8bit=True: LLM.int8() is the 8-bit method (load_in_4bit is lesson 03's)"
    if answer.llm_int8_threshold != 6.0:
        return f"llm_int8_threshold is {answer.llm_int8_threshold}; the exercise asks for 6.0"
    skip = answer.llm_int8_skip_modules
    if skip is None:
        return "llm_int8_skip_modules is None, so transformers keeps only its default list (here lm_head): name the modules"
    if not all(isinstance(pattern, str) for pattern in skip):
        return "llm_int8_skip_modules is a list of module names (strings)"
    last = f"model.layers.{model.config.num_hidden_layers - 1}.mlp"
    output = next(name for name, module in model.named_modules() if module is model.get_output_embeddings())
    wanted = {output} | {f"{last}.{linear}" for linear in MLP_LINEARS}
    kept = kept_in_16_bit(model, skip)
    if output not in kept:
        return (f"{output} would be quantized: a list in llm_int8_skip_modules replaces transformers' default list "
                f"(which holds {output}), so name it too")
    extra = sorted(kept - wanted)
    if extra:
        culprits = [p for p in skip if kept_in_16_bit(model, [p]) & set(extra)]
        return (f"{len(extra)} other linear layers would stay 16-bit too (e.g. {extra[0]}): {culprits} matches them "
                f"(a name matches a module from the start of its name, or as the end of it)")
    missing = sorted(wanted - kept)
    if missing:
        idle = [p for p in skip if not kept_in_16_bit(model, [p]) - {output}]
        return (f"{', '.join(missing)} would still be int8; {idle} matches no linear layer besides {output}: write the "
                f"full name from the start ('{last}' keeps its three linear layers) or a name's end")
    return None


def compare_predict(answer: float, ratio: tuple[float, float, float], base_share: float,
                    byte_ratio: float) -> tuple[bool, str]:
    """Compare a predicted int8/float16 batch-1 decode-rate ratio with the rounds' ratios, widened as the lesson records them."""
    from helpers.decoding import OVERHEAD_BOUND_SHARE

    median, low, high = ratio
    lowest, highest = low / (1 + RUN_TO_RUN), high * (1 + RUN_TO_RUN)
    measured = (f"int8 decoded at {median:.2f}x float16's rate (quartiles of the rounds {low:.2f}-{high:.2f}; "
                f"{lowest:.2f}-{highest:.2f} with the run-to-run margin the lesson records), where reading its weight "
                f"bytes alone would allow up to {byte_ratio:.2f}x")
    if base_share < OVERHEAD_BOUND_SHARE:
        # helpers.decoding.bound_share's reading: other work than reading weights, around the kernels or in them
        measured += (f"; float16 ran at {base_share:.1%} of its bandwidth bound, overhead-bound: reading the weights is "
                     "a small part of a step, so the ratio is the cost of this whole path (generate() with int8 layers "
                     "against float16 ones), not the bytes read, with no cause read from it")
    else:
        measured += f"; float16 ran at {base_share:.0%} of its bandwidth bound, close enough for the bytes read to count"
    return lowest <= answer <= highest, measured


def check_answer(answer: Any, x: Any) -> str | None:
    """Count of input columns LLM.int8() sends through the 16-bit product at threshold 3.0."""
    expected = len(outlier_features(x, 3.0))
    if isinstance(answer, int) and not isinstance(answer, bool) and answer == expected:
        return None
    return "a column is an outlier when any token's |value| in it reaches the threshold; count such columns of x"


EXERCISES = {
    "04": Call(check_answer),
    "04-call": Call(check_call),
    "04-predict": Prediction("int8 (threshold 6.0) decode speed at batch 1 as a fraction of float16's on this machine "
                             "(int8 tok/s / float16 tok/s), a number", compare_predict, choices=()),
}
